// Checking an image directory against its manifest: every file's size and sha256, the
// digest its files give, and the dm-verity tree recomputed from rootfs.squashfs with the
// manifest's salt (so a changed block of the root filesystem shows as a different root
// hash, as `veritysetup verify` would say). Used by `resin inspect --verify` and before an
// image is installed into a cluster.
import { createHash } from "node:crypto";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { sha256File } from "../util/hash.js";
import { digestParts, manifestDigest, type ImageFile, type ImageManifest } from "./manifest.js";
import { verityHashDevice, veritySalt } from "./verity.js";

/** One part of an image that is not what its manifest says. */
export interface Mismatch {
  /** The file it concerns, in the image directory. */
  file: string;
  /** What differs: "sha256", "size", "verity root hash", … */
  what: string;
  expected: string;
  actual: string;
}

/** Pure: a mismatch as one line of a report. */
export function formatMismatch(m: Mismatch): string {
  return `${m.file}: ${m.what} is ${m.actual}, the manifest says ${m.expected}`;
}

async function regularFile(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isFile() ?? false;
}

/** A listed file's size and sha256 against the manifest's. */
async function checkFile(dir: string, part: ImageFile): Promise<Mismatch[]> {
  const path = join(dir, part.file);
  if (!(await regularFile(path))) return [{ file: part.file, what: "the file", expected: "a regular file", actual: "missing" }];
  const [size, hash] = [(await lstat(path)).size, await sha256File(path)];
  const found: Mismatch[] = [];
  if (size !== part.size) found.push({ file: part.file, what: "size", expected: String(part.size), actual: String(size) });
  if (hash !== part.sha256) found.push({ file: part.file, what: "sha256", expected: part.sha256, actual: hash });
  return found;
}

/**
 * The verity tree recomputed from the directory's rootfs.squashfs with the manifest's salt
 * and UUID, against the manifest's root hash and the directory's rootfs.verity.
 */
export async function verityMismatches(dir: string, manifest: ImageManifest): Promise<Mismatch[]> {
  const v = manifest.verity;
  if (!v) return [{ file: "rootfs.verity", what: "the verity hash tree", expected: "one (rootfs.verity)", actual: "none in the manifest (built before Resin wrote one)" }];
  const found: Mismatch[] = [];
  const data = join(dir, manifest.rootfs.file);
  if (await regularFile(data)) {
    const device = await verityHashDevice(data, { salt: v.salt, uuid: v.uuid }).catch((e: Error) => e);
    if (device instanceof Error) {
      found.push({ file: manifest.rootfs.file, what: "size in verity blocks", expected: "a whole number of 4096-byte blocks", actual: device.message });
    } else {
      const { params, bytes } = device;
      if (params.rootHash !== v.rootHash) found.push({ file: manifest.rootfs.file, what: "verity root hash", expected: v.rootHash, actual: params.rootHash });
      if (params.dataBlocks !== v.dataBlocks) found.push({ file: manifest.rootfs.file, what: "verity data blocks", expected: String(v.dataBlocks), actual: String(params.dataBlocks) });
      const tree = bytes.reduce((h, b) => h.update(b), createHash("sha256")).digest("hex");
      if (tree !== v.sha256) found.push({ file: v.file, what: "sha256 of the hash tree recomputed from rootfs.squashfs", expected: v.sha256, actual: tree });
    }
  }
  // Resin's builds salt from the squashfs's sha256 (as the manifest records it); any other salt was not written by one.
  const derived = veritySalt(manifest.rootfs.sha256);
  if (v.salt !== derived) found.push({ file: v.file, what: "verity salt derived from rootfs.squashfs's sha256 in the manifest", expected: v.salt, actual: derived });
  return found;
}

/**
 * Everything about the image in `dir` that differs from its manifest. The disk images
 * are checked when present (a cluster's copy holds them only once `resin plan` asked).
 */
export async function verifyImage(dir: string, manifest: ImageManifest): Promise<{ mismatches: Mismatch[]; skipped: string[] }> {
  const mismatches: Mismatch[] = [];
  for (const part of digestParts(manifest)) mismatches.push(...(await checkFile(dir, part)));
  const recomputed = manifestDigest(manifest);
  if (recomputed !== manifest.digest) mismatches.push({ file: "manifest.json", what: "digest of the files it lists", expected: manifest.digest, actual: recomputed });
  mismatches.push(...(await verityMismatches(dir, manifest)));
  const skipped: string[] = [];
  for (const part of [manifest.disk.raw, manifest.disk.qcow2, manifest.disk.iso]) {
    if (await regularFile(join(dir, part.file))) mismatches.push(...(await checkFile(dir, part)));
    else skipped.push(part.file);
  }
  return { mismatches, skipped };
}
