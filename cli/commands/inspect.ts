// `resin inspect`: an image's manifest — what it is made of, file by file; with
// --verify, whether the image's files are still what the manifest says.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { imagesDir, readManifest, type ImageManifest } from "../image/manifest.js";
import type { Channel } from "../spec/schema.js";
import { ResinError } from "../util/errors.js";
import { formatMismatch, verifyImage } from "../image/verify.js";
import { DEFAULT_ARCH, type Arch } from "../spec/arch.js";

/** An image directory, given as a path or as a role name built on `channel`. */
export async function findImage(project: string, image: string, channel: Channel, arch: Arch = DEFAULT_ARCH): Promise<{ dir: string; manifest: ImageManifest }> {
  const candidates = [resolve(image), join(imagesDir(project, channel, arch), image)];
  for (const dir of candidates) {
    if (!existsSync(join(dir, "manifest.json"))) continue;
    const manifest = await readManifest(dir);
    if (manifest) return { dir, manifest };
  }
  throw new ResinError(`no image '${image}' (looked in ${candidates.join(" and ")})`, `build it with: resin build ${image} --channel ${channel}${arch === DEFAULT_ARCH ? "" : ` --arch ${arch}`}`);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export function formatManifest(dir: string, m: ImageManifest): string {
  const lines = [
    `image     ${m.role} (${m.channel}, ${m.arch ?? DEFAULT_ARCH}) ${m.digest}`,
    `directory ${dir}`,
    `kernel    ${m.kernel.file} ${m.kernel.version} ${mb(m.kernel.size)} sha256:${m.kernel.sha256}`,
    `initrd    ${m.initrd.file} ${mb(m.initrd.size)} sha256:${m.initrd.sha256}`,
    `rootfs    ${m.rootfs.file} ${mb(m.rootfs.size)} sha256:${m.rootfs.sha256}`,
    ...(m.verity
      ? [
          `verity    ${m.verity.file} ${mb(m.verity.size)} sha256:${m.verity.sha256} (dm-verity: every boot opens the root only through it)`,
          `          root hash ${m.verity.rootHash}, salt ${m.verity.salt}, ${m.verity.hashAlgorithm}, ${m.verity.dataBlocks} data blocks of ${m.verity.dataBlockSize} bytes`,
        ]
      : []),
    ...(m.disk
      ? [
          `disk      ${m.disk.raw.file} ${mb(m.disk.raw.size)} sha256:${m.disk.raw.sha256} (UEFI, GPT: ${m.disk.partitions.map((p) => p.name).join(" + ")})`,
          `          ${m.disk.qcow2.file} ${mb(m.disk.qcow2.size)} sha256:${m.disk.qcow2.sha256}`,
          `          ${m.disk.iso.file} ${mb(m.disk.iso.size)} sha256:${m.disk.iso.sha256} (UEFI El Torito, and a GPT for USB sticks; label ${m.disk.iso.volumeId})`,
          `          kernel command line: ${m.disk.cmdline}`,
        ]
      : []),
    `services  ${m.services.map((s) => `${s.name}${s.version ? ` ${s.version}` : ""}`).join(", ")}`,
    "",
    "packages and releases:",
    ...m.packages.map((p) => `  deb     ${p.package} ${p.version} (${p.suite}) sha256:${p.sha256}`),
    ...m.releases.map((r) => `  release ${r.product} ${r.version} ${r.file} sha256:${r.sha256} signed by ${r.signer}`),
    "",
    ...(m.checks?.length ? ["build checks (passed when it was built, or why they did not run):", ...m.checks.map((c) => `  ${c.service}: ${c.command} (${c.skipped ? `skipped: ${c.skipped}` : `exit ${c.exitCode}`})`), ""] : []),
    "root filesystem:",
  ];
  const rows = m.files.map((f) => [
    f.type === "dir" ? "d" : f.type === "symlink" ? "l" : "-",
    f.mode ?? "",
    f.size !== undefined ? String(f.size) : "",
    f.type === "symlink" ? `${f.path} -> ${f.target}` : f.path,
    f.sha256 ? f.sha256.slice(0, 12) : "",
    f.from,
  ]);
  const widths = [1, 4, Math.max(...rows.map((r) => r[2]!.length)), Math.max(...rows.map((r) => r[3]!.length)), 12];
  for (const r of rows) lines.push(`  ${r.slice(0, 5).map((c, i) => c.padEnd(widths[i]!)).join("  ")}  ${r[5]}`.trimEnd());
  return lines.join("\n");
}

/**
 * `resin inspect --verify`: recompute the image's file hashes, digest and verity root
 * hash. Returns what was checked; throws naming every part that differs, one per line.
 */
export async function verifyCommand(dir: string, m: ImageManifest): Promise<string> {
  const { mismatches, skipped } = await verifyImage(dir, m);
  if (mismatches.length) {
    throw new ResinError(
      mismatches.map((x) => `image ${dir}: ${formatMismatch(x)}`).join("\nresin: "),
      "the image was changed after it was built: rebuild it (resin build), or take it from a source you trust",
    );
  }
  const files = [m.kernel, m.initrd, m.rootfs, m.verity!, m.disk.raw, m.disk.qcow2, m.disk.iso].map((f) => f.file).filter((f) => !skipped.includes(f));
  return [
    `verified  ${m.role} (${m.channel}) ${m.digest} in ${dir}`,
    `          sha256 and size of ${files.join(", ")}`,
    `          verity root hash ${m.verity!.rootHash}, recomputed from ${m.rootfs.file}`,
    ...(skipped.length ? [`          not present, not checked: ${skipped.join(", ")}`] : []),
  ].join("\n");
}
