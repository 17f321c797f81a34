// An image's manifest.json: what the image is (role, channel, digest), the files
// Resin's VMs boot with their hashes, the services and ports it serves, and its bill of
// materials. It is read through a schema, because an image set can come from anywhere
// (--image-set DIR): its digest becomes a directory name, its ports reach QEMU's
// command line and its file names are joined to paths.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import type { LockedDeb } from "../artifacts/lock.js";
import type { ReleaseIndex } from "../artifacts/official.js";
import { CHANNELS, PortSchema, type Channel } from "../spec/schema.js";
import { fromOutside, parseOutsideJson } from "../util/text.js";
import { DIGEST_PATTERN, sha256 } from "../util/hash.js";
import type { DiskManifest } from "./disk.js";
import type { ManifestFile } from "./rootfs.js";
import { VERITY_BLOCK, type VerityParams } from "./verity.js";
import { ArchSchema, DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export interface ImageFile {
  file: string;
  sha256: string;
  size: number;
}

export interface ServiceVersion {
  name: string;
  version?: string;
  ports: Record<string, number>;
  /** The Consul services it registers (`consul.services`): what the node's agent token may write. */
  registers?: string[];
}

/** What made an image besides its inputs: the builder's code and the host programs it ran. */
export interface ImageBuilder {
  /** sha256 over the builder's modules (cli/image/build.ts and all it imports). */
  code: string;
  /** Versions of the host programs whose output is in the image (mksquashfs, depmod, qemu-img, dpkg-deb). */
  tools: Record<string, string>;
}

export interface ImageManifest {
  role: string;
  channel: Channel;
  /** The architecture it runs on; absent in manifests from before arm64 (amd64). */
  arch?: Arch;
  inputDigest: string;
  /** Absent in manifests written before it was recorded. */
  builder?: ImageBuilder;
  /** Identity of the image: a digest over its kernel, initramfs and root filesystem. */
  digest: string;
  kernel: ImageFile & { version: string; modules: string[] };
  /** Small: busybox, the modules to reach the root disk, and /init. */
  initrd: ImageFile;
  /** The whole root filesystem, read-only squashfs, attached as a disk. */
  rootfs: ImageFile;
  /**
   * The dm-verity hash device over rootfs (rootfs.verity, veritysetup's default layout with
   * its superblock), and what opening it needs: root hash, salt, block sizes. Part of
   * `digest`. Absent in manifests written before Resin wrote one. Not yet checked at boot.
   */
  verity?: ImageFile & VerityParams;
  /**
   * The same image as one UEFI-bootable GPT disk (raw and qcow2) for other hypervisors
   * and clouds. Not part of `digest`, which names what Resin's own VMs boot.
   */
  disk: DiskManifest;
  services: ServiceVersion[];
  packages: LockedDeb[];
  releases: ReleaseIndex[];
  /** Every file of the root filesystem with its sha256 and origin. */
  files: ManifestFile[];
  initramfsFiles: ManifestFile[];
  /** The services' build checks and what each said (absent in manifests from before them). */
  checks?: BuildCheckResult[];
}

/** One build check (a service's `checks.build` command) as it ran against the image. */
export interface BuildCheckResult {
  service: string;
  command: string;
  exitCode: number;
  /** What it printed (stdout and stderr, the last 4 KiB), made printable. */
  output: string;
  /** Why it did not run (an image of another architecture than the build host's); exitCode is then -1. */
  skipped?: string;
}

/**
 * Where `resin build` writes a channel's images: out/images/<channel> for amd64 (where
 * they always were), out/images/<channel>-<arch> for another architecture.
 */
export function imagesDir(project: string, channel: Channel, arch: Arch = DEFAULT_ARCH): string {
  return join(project, "out", "images", arch === DEFAULT_ARCH ? channel : `${channel}-${arch}`);
}

/** What the digest covers, in order: kernel, initramfs, root filesystem and (when it has one) its verity hash tree. */
export function digestParts(m: { kernel: ImageFile; initrd: ImageFile; rootfs: ImageFile; verity?: ImageFile }): ImageFile[] {
  return [m.kernel, m.initrd, m.rootfs, ...(m.verity ? [m.verity] : [])];
}

/**
 * The image's identity, from what Resin's VMs boot: its kernel, initramfs and root
 * filesystem (and its verity hash tree), and the architecture they are for (absent in
 * manifests from before Resin built for more than one: their digests stay as they were).
 */
export function imageDigest(parts: ImageFile[], arch?: Arch): string {
  return `sha256:${sha256(parts.map((p) => `${p.sha256} ${p.file}\n`).join("") + (arch ? `arch ${arch}\n` : ""))}`;
}

/** The digest a manifest's own files and architecture give: what its `digest` must be. */
export function manifestDigest(m: Pick<ImageManifest, "kernel" | "initrd" | "rootfs" | "verity" | "arch">): string {
  return imageDigest(digestParts(m), m.arch);
}

/** Every Consul service the image's agent registers, with the image's service that declares it. */
export function registrations(manifest: Pick<ImageManifest, "services">): { name: string; service: string }[] {
  return manifest.services.flatMap((s) => (s.registers ?? []).map((name) => ({ name, service: s.name }))).sort((a, b) => a.name.localeCompare(b.name));
}

/** The guest ports an image's services serve, named "<service>.<port>" (e.g. "consul.https"). */
export function servicePorts(manifest: Pick<ImageManifest, "services">): Record<string, number> {
  return Object.fromEntries(manifest.services.flatMap((s) => Object.entries(s.ports).map(([k, p]) => [`${s.name}.${k}`, p])));
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits");
const fileName = (expected: string) =>
  z
    .string()
    .refine((n) => n.length > 0 && !n.includes("/") && !n.includes("..") && !n.includes("\0"), "must be a plain file name, without '/' or '..'")
    .refine((n) => n === expected, `must be ${expected}`);
const imageFile = (name: string) => z.object({ file: fileName(name), sha256: hex64, size: z.number().int().nonnegative() }).passthrough();
const name = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "must be lower-case letters, digits and '-'");

export const ImageManifestSchema = z
  .object({
    role: name,
    channel: z.enum(CHANNELS),
    /** Absent in manifests from before arm64: amd64. */
    arch: ArchSchema.optional(),
    inputDigest: z.string(),
    builder: z.object({ code: z.string(), tools: z.record(z.string(), z.string()) }).passthrough().optional(),
    digest: z.string().regex(DIGEST_PATTERN, "must be sha256: and 64 lower-case hex digits"),
    kernel: imageFile("vmlinuz").extend({ version: z.string(), modules: z.array(z.string()) }),
    initrd: imageFile("initrd.img"),
    rootfs: imageFile("rootfs.squashfs"),
    verity: imageFile("rootfs.verity")
      .extend({
        hashType: z.literal(1),
        hashAlgorithm: z.literal("sha256"),
        dataBlockSize: z.literal(VERITY_BLOCK),
        hashBlockSize: z.literal(VERITY_BLOCK),
        dataBlocks: z.number().int().positive(),
        hashOffset: z.literal(0),
        salt: hex64,
        uuid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "must be a lower-case UUID"),
        rootHash: hex64,
      })
      .optional(),
    disk: z
      .object({ raw: imageFile("disk.raw"), qcow2: imageFile("disk.qcow2"), iso: imageFile("disk.iso") })
      .passthrough(),
    services: z.array(z.object({ name, version: z.string().optional(), ports: z.record(name, PortSchema), registers: z.array(name).optional() }).passthrough()),
    packages: z.array(z.object({ package: z.string() }).passthrough()),
    releases: z.array(z.object({}).passthrough()),
    files: z.array(z.object({ path: z.string() }).passthrough()),
    initramfsFiles: z.array(z.object({ path: z.string() }).passthrough()),
    checks: z.array(z.object({ service: name, command: z.string(), exitCode: z.number().int(), output: z.string(), skipped: z.string().optional() }).strict()).optional(),
  })
  .passthrough();

/** The manifest of the image in `dir`, checked by its schema; undefined when there is none. */
export async function readManifest(dir: string): Promise<ImageManifest | undefined> {
  const path = join(dir, "manifest.json");
  if (!existsSync(path)) return undefined;
  return parseManifest(await readFile(path, "utf8"), path);
}

/** Pure: a manifest's text (read from `path`, named in errors), checked against its schema (fromOutside: its strings printable). */
export function parseManifest(text: string, path: string): ImageManifest {
  const hint = "rebuild the image (resin build), or take it from an image set you trust";
  const data = parseOutsideJson(text, `image manifest ${path}`, hint);
  return fromOutside(ImageManifestSchema, data, `image manifest ${path}`, hint) as unknown as ImageManifest;
}
