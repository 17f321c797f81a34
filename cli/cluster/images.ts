// Images a cluster's nodes boot are copied into the cluster's state directory, by
// digest: a later build never changes what a running node boots, and the image a node
// ran before an upgrade stays there until the upgrade is complete.
import { runBuildChecks } from "../bootstrap/build-checks.js";
import { existsSync } from "node:fs";
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { digestParts, manifestDigest, parseManifest, readManifest, type ImageFile, type ImageManifest } from "../image/manifest.js";
import { debianTestKey } from "../image/sign.js";
import { buildRoles, type BuildOptions } from "../image/roles.js";
import { ARCHES, archOf, type Arch } from "../spec/arch.js";
import { formatMismatch, verityMismatches } from "../image/verify.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { sha256File } from "../util/hash.js";
import type { ClusterHandle, ClusterState } from "../state/state.js";

const DISK_FILES = ["disk.raw", "disk.qcow2", "disk.iso"];

/** Disk image files (disk.raw, disk.qcow2, disk.iso) the cluster's copy of an image lacks. */
export function missingDiskImages(cluster: ClusterHandle, digest: string): string[] {
  return DISK_FILES.filter((f) => !existsSync(join(cluster.imageDir(digest), f)));
}

/**
 * Copy a built image into the cluster, by digest. What a local VM boots: kernel,
 * initramfs, squashfs root, its dm-verity hash tree (rootfs.verity), manifest. The disk
 * images (disk.raw, disk.qcow2, disk.iso) are for other hypervisors and clouds: copied
 * only when asked (`resin plan`), never replaced. Nothing is trusted on the word of its
 * manifest: the manifest must pass its schema, every copied file must have the size and
 * sha256 it lists, the digest must be the one its files give, and the copied root
 * filesystem must give the verity root hash it records; otherwise nothing is installed.
 * The manifest installed is the bytes that were checked (read once, never copied again).
 * The digest covers the kernel, initrd, root filesystem and its verity tree only: once
 * the cluster holds a digest, its installed manifest is what disk images from any later
 * image set must match.
 */
export async function installImage(cluster: ClusterHandle, builtDir: string, digest: string, opts: { disks?: boolean } = {}): Promise<void> {
  const manifestPath = join(builtDir, "manifest.json");
  const manifestText = await readFile(manifestPath, "utf8").catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") throw new ResinError(`${builtDir} has no image: no ${manifestPath}`, "build it with `resin build`, or point at an image set's role directory");
    throw e;
  });
  const manifest = parseManifest(manifestText, manifestPath);
  const parts = digestParts(manifest);
  const recomputed = manifestDigest(manifest);
  if (recomputed !== manifest.digest || manifest.digest !== digest) {
    throw new ResinError(
      `image ${builtDir}: its manifest's digest ${manifest.digest} is not the digest of the files it lists (${recomputed})`,
      "the image set was changed after it was built: rebuild it, or take it from a source you trust",
    );
  }
  const dir = cluster.imageDir(digest);
  if (!existsSync(dir)) {
    await cluster.ensureDir();
    await mkdir(cluster.images, { recursive: true, mode: 0o700 });
    const tmp = `${dir}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    try {
      for (const part of parts) await copyChecked(builtDir, tmp, part);
      // The copied root filesystem must give the root hash its manifest records.
      if (manifest.verity) {
        const wrong = await verityMismatches(tmp, manifest);
        if (wrong.length) {
          throw new ResinError(
            `image ${builtDir}: its root filesystem does not match its dm-verity hash tree: ${wrong.map(formatMismatch).join("; ")}`,
            "the image set was changed after it was built: rebuild it, or take it from a source you trust (resin inspect --verify DIR says what differs)",
          );
        }
      }
      await writeFile(join(tmp, "manifest.json"), manifestText, { flag: "wx" });
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    await rename(tmp, dir);
  }
  if (!opts.disks) return;
  // What the cluster installed for this digest, not what this image set says.
  const installed = await readManifest(dir);
  if (!installed || installed.digest !== digest) {
    throw new ResinError(`cluster '${cluster.name}': image ${digest} in ${dir} has no manifest of its own`, "the cluster's state directory was changed by hand; restore it or recreate the cluster");
  }
  const disks = { "disk.raw": installed.disk.raw, "disk.qcow2": installed.disk.qcow2, "disk.iso": installed.disk.iso };
  const missing = missingDiskImages(cluster, digest);
  const claimed = { "disk.raw": manifest.disk.raw, "disk.qcow2": manifest.disk.qcow2, "disk.iso": manifest.disk.iso };
  for (const file of missing) {
    const [ours, theirs] = [disks[file as keyof typeof disks], claimed[file as keyof typeof claimed]];
    if (ours.sha256 !== theirs.sha256 || ours.size !== theirs.size) {
      throw new ResinError(
        `image ${builtDir}: its manifest lists a ${file} (sha256 ${theirs.sha256}) that is not the one cluster '${cluster.name}' installed with image ${digest} (sha256 ${ours.sha256})`,
        "the digest covers kernel, initrd, root filesystem and its verity tree only, and the disk images stay those of the first install: take the disk images from that image set, or rebuild the image",
      );
    }
  }
  // All or nothing: every missing disk image is copied and checked before any is put in place.
  try {
    for (const file of missing) await copyChecked(builtDir, dir, disks[file as keyof typeof disks], `${file}.tmp`);
  } catch (e) {
    for (const file of missing) await rm(join(dir, `${file}.tmp`), { force: true });
    throw e;
  }
  for (const file of missing) await rename(join(dir, `${file}.tmp`), join(dir, file));
}

/** Copy one file an image lists (following nothing but the file itself) and check the copy's size and sha256. */
async function copyChecked(from: string, to: string, part: ImageFile, as = part.file): Promise<void> {
  const source = join(from, part.file);
  const info = await lstat(source).catch(() => undefined);
  if (!info?.isFile()) throw new ResinError(`image ${from}: ${part.file} is missing or not a regular file`, "rebuild the image, or take it from a source you trust");
  const copy = join(to, as);
  await copyFile(source, copy);
  const [size, hash] = [(await stat(copy)).size, await sha256File(copy)];
  if (size !== part.size || hash !== part.sha256) {
    await rm(copy, { force: true });
    throw new ResinError(
      `image ${from}: ${part.file} does not match its manifest (sha256 ${hash}, ${size} bytes; the manifest says ${part.sha256}, ${part.size} bytes)`,
      "the image set was changed after it was built: rebuild it, or take it from a source you trust",
    );
  }
}

/** Delete images no node boots and no unfinished upgrade may roll back to. */
export async function pruneImages(cluster: ClusterHandle, state: ClusterState): Promise<string[]> {
  const keep = new Set(
    [...state.nodes.map((n) => n.image), ...Object.values(state.upgrade?.previous ?? {}), ...(state.upgrade?.replacing ? [state.upgrade.replacing.image] : [])].map((d) => d.replace(/^sha256:/, "")),
  );
  const dir = cluster.images;
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (keep.has(name)) continue;
    await rm(`${dir}/${name}`, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Why `manifest` cannot boot on `state`'s nodes under Secure Boot (resin up --secure-boot),
 * or undefined when it can (or the cluster does not boot that way): its disk images must be
 * signed for the certificate the nodes' firmware has enrolled. Pure.
 */
export function secureBootRefusal(state: ClusterState, manifest: ImageManifest, dir: string): ResinError | undefined {
  const trusted = state.secureBoot?.certSha256;
  if (!trusted) return undefined;
  const signed = manifest.disk.signature?.certSha256;
  if (signed === trusted) return undefined;
  return new ResinError(
    `image ${dir} ${signed ? `is signed for the certificate ${signed}` : "is not signed"}; cluster '${state.name}' boots under Secure Boot and its firmware trusts only ${trusted}`,
    "build the image set signed for that certificate (resin build --sign KEY,CERT) and upgrade with --image-set; nothing was installed",
  );
}

/**
 * Each role's new image, copied into the cluster (with its disk images when `disks`, for
 * provisioners, and always for a cluster that boots under Secure Boot, whose nodes boot
 * disk.qcow2). Every image set is checked before any image is installed.
 */
export async function newImages(
  cluster: ClusterHandle,
  state: ClusterState,
  opts: { project: string; imageSet?: string; offline?: boolean; log: Log; disks?: boolean },
): Promise<Record<string, string>> {
  const roles = [...new Set(state.nodes.map((n) => n.role))];
  const disks = opts.disks || !!state.secureBoot;
  // A build makes each role's image for the architecture its nodes have (an image set
  // brings its own: moving a cluster to another architecture is an upgrade like any other).
  const found: { role: string; dir: string; manifest: ImageManifest }[] = [];
  if (opts.imageSet) {
    for (const role of roles) {
      const dir = join(opts.imageSet, role);
      const manifest = await readManifest(dir);
      if (!manifest) throw new ResinError(`image set ${opts.imageSet} has no image for role ${role} (no ${join(dir, "manifest.json")})`);
      if (manifest.channel !== state.channel) throw new ResinError(`image ${dir} is for the ${manifest.channel} channel; cluster '${state.name}' runs ${state.channel}`);
      found.push({ role, dir, manifest });
    }
  } else {
    // A cluster under Secure Boot gets its new images signed with the key its firmware has
    // enrolled: locally that is Debian's test pair (resin up --secure-boot).
    const scratch = state.secureBoot ? await mkdtemp(join(tmpdir(), "resin-upgrade-sign-")) : undefined;
    try {
      const sign = scratch ? await debianTestKey(scratch) : undefined;
      if (sign && sign.certSha256 !== state.secureBoot!.certSha256) {
        throw new ResinError(
          `cluster '${state.name}' boots under Secure Boot with the certificate ${state.secureBoot!.certSha256}, not Debian's test one: resin cannot sign a build for it`,
          "build the image set yourself with resin build --sign KEY,CERT and upgrade with --image-set",
        );
      }
      for (const arch of ARCHES) {
        const these = roles.filter((r) => archOf(state.nodes.find((n) => n.role === r)) === arch);
        if (!these.length) continue;
        const build: BuildOptions & { arch: Arch } = { project: opts.project, roles: these, arch, channel: state.channel, offline: opts.offline, log: opts.log, check: runBuildChecks, ...(sign ? { sign } : {}) };
        for (const image of await buildRoles(build)) found.push({ role: image.manifest.role, dir: image.dir, manifest: image.manifest });
      }
    } finally {
      if (scratch) await rm(scratch, { recursive: true, force: true });
    }
  }
  for (const f of found) {
    const refused = secureBootRefusal(state, f.manifest, f.dir);
    if (refused) throw refused;
  }
  const target: Record<string, string> = {};
  for (const f of found) {
    await installImage(cluster, f.dir, f.manifest.digest, { disks });
    target[f.role] = f.manifest.digest;
  }
  return target;
}

/** The architecture of an image the cluster holds (its manifest's; absent: amd64). */
export async function installedImageArch(cluster: ClusterHandle, digest: string): Promise<Arch> {
  return archOf(await readManifest(cluster.imageDir(digest)));
}
