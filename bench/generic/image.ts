// The generic-distro image the bench compares Resin against: a Debian bookworm minbase
// root from mmdebstrap with systemd, the same kernel package and the same Consul .deb
// Resin's image was built from (both taken from Resin's verified cache by the sha256
// in its manifest), and a systemd unit that applies the same config drive. Packed as an
// ext4 disk; booted with the kernel and initrd from its own /boot.
import { existsSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findDebianMirror, renderSourcesList, type AptSourceFile } from "../../cli/artifacts/apt-sources.js";
import { hostCodename } from "../../cli/artifacts/apt.js";
import { verifiedBlob } from "../../cli/artifacts/cache.js";
import type { ImageManifest } from "../../cli/image/manifest.js";
import { cacheHome } from "../../cli/util/paths.js";
import { log, repoRoot, run, treeBytes } from "../util.js";

export interface GenericImage {
  kernel: string;
  initrd: string;
  /** Raw ext4 disk made from the tree; each node boots a qcow2 overlay of it. */
  rootDisk: string;
  kernelSha256: string;
  /** mmdebstrap + configuration + mkfs.ext4: what it takes to produce the bootable disk. */
  buildSeconds: number;
  packages: number;
  /** .debs found in the bench's package cache before the build, and after it. */
  cachedDebs: { before: number; after: number };
  sizes: {
    kernelBytes: number;
    initrdBytes: number;
    /** Regular files of the root filesystem, /boot excluded (kernel and initrd are counted on their own). */
    rootfsUncompressedBytes: number;
    /** The same tree as squashfs with Resin's compression (zstd), for a like-for-like number. */
    rootfsSquashfsBytes: number;
    /** The ext4 disk as shipped: blocks allocated in the sparse image (includes /boot). */
    diskAllocatedBytes: number;
    consulBinaryBytes: number;
  };
}

/** The machine's own apt sources (as cli/artifacts/apt.ts reads them). */
async function hostSources(): Promise<AptSourceFile[]> {
  const files: AptSourceFile[] = [];
  if (existsSync("/etc/apt/sources.list")) files.push({ path: "/etc/apt/sources.list", text: await readFile("/etc/apt/sources.list", "utf8") });
  const dir = "/etc/apt/sources.list.d";
  if (existsSync(dir)) {
    for (const name of (await readdir(dir)).sort()) {
      if (name.endsWith(".list") || name.endsWith(".sources")) files.push({ path: join(dir, name), text: await readFile(join(dir, name), "utf8") });
    }
  }
  return files;
}

/** A locked .deb from Resin's cache (re-hashed), under a name apt accepts as a local package. */
async function lockedDeb(manifest: ImageManifest, match: (pkg: string) => boolean, dir: string): Promise<string> {
  const deb = manifest.packages.find((p) => match(p.package));
  if (!deb) throw new Error(`the Resin image's manifest names no such package (have: ${manifest.packages.map((p) => p.package).join(", ")})`);
  const path = join(dir, `${deb.package}_${deb.version.replace(/^\d+:/, "")}_amd64.deb`);
  await copyFile(await verifiedBlob(deb.sha256, `${deb.package} ${deb.version}`), path);
  await chmod(path, 0o644);
  return path;
}

const countDebs = async (dir: string) => (existsSync(dir) ? (await readdir(dir)).filter((f) => f.endsWith(".deb")).length : 0);

export async function buildGenericImage(opts: { work: string; resinImageDir: string; manifest: ImageManifest }): Promise<GenericImage> {
  if (process.getuid?.() !== 0) throw new Error("the generic image is built with mmdebstrap --mode=root: run the bench as root");
  const { work, manifest } = opts;
  const tree = join(work, "tree");
  const debs = join(work, "debs");
  await mkdir(debs, { recursive: true });

  // The machine's own Debian mirror, found the way Resin finds it; only bookworm is
  // needed, since Consul comes from the .deb Resin locked (bullseye's 1.8.7).
  const codename = await hostCodename();
  const mirror = findDebianMirror(await hostSources(), codename);
  if (!mirror) throw new Error(`this machine's apt sources have no Debian '${codename}' entry with main: cannot build the generic image`);
  const sources = renderSourcesList(mirror, [codename]).trim().split("\n");

  const kernelDeb = await lockedDeb(manifest, (p) => /^linux-image-\d/.test(p), debs);
  const consulDeb = await lockedDeb(manifest, (p) => p === "consul", debs);
  // Packages the bench downloaded before, kept between runs like Resin's own cache.
  const debCache = join(cacheHome(), "bench", "generic-debs");
  await mkdir(debCache, { recursive: true });
  const before = await countDebs(debCache);

  const started = process.hrtime.bigint();
  log(`generic image: mmdebstrap ${codename} minbase + systemd + kernel + consul (${before} .debs cached)`);
  await run(
    "mmdebstrap",
    [
      "--mode=root",
      "--variant=minbase",
      "--skip=essential/unlink",
      "--include=systemd-sysv,udev,iproute2,e2fsprogs,initramfs-tools",
      `--include=${kernelDeb}`,
      `--include=${consulDeb}`,
      "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
      '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
      `--setup-hook=sync-in ${debCache} /var/cache/apt/archives/`,
      `--customize-hook=sync-out /var/cache/apt/archives ${debCache}`,
      codename,
      tree,
      ...sources,
    ],
    { what: "mmdebstrap (the generic image)" },
  );

  // What a node needs beyond the packages: the config-drive reader and the Consul
  // drop-in (bench/generic/rootfs), Resin's metadata.awk, and the role's image-time
  // Consul config exactly as Resin rendered it into its image.
  await cp(join(repoRoot, "bench", "generic", "rootfs"), tree, { recursive: true });
  for (const script of ["apply-config", "consul-config"]) await chmod(join(tree, "usr/lib/resin-generic", script), 0o755);
  await copyFile(join(repoRoot, "services", "base", "metadata.awk"), join(tree, "usr/lib/resin-generic/metadata.awk"));
  const roleHcl = await run("unsquashfs", ["-cat", join(opts.resinImageDir, "rootfs.squashfs"), "etc/consul.d/00-role.hcl"], { what: "unsquashfs (Resin's 00-role.hcl)" });
  await writeFile(join(tree, "etc/consul.d/00-role.hcl"), roleHcl.stdout, { mode: 0o644 });
  await rm(join(tree, "etc/consul.d/00-log_level.hcl"), { force: true }); // the package's default; 00-role.hcl sets log_level
  await run("systemctl", [`--root=${tree}`, "enable", "resin-config.service", "consul.service"], { what: "systemctl enable (generic image)" });
  await writeFile(join(tree, "etc/fstab"), "/dev/vda / ext4 defaults 0 1\n");
  await writeFile(join(tree, "etc/hostname"), "localhost\n");
  await writeFile(join(tree, "etc/resolv.conf"), "");
  // Answers systemd-firstboot would otherwise ask for on the console at first boot.
  await writeFile(join(tree, "etc/locale.conf"), "LANG=C.UTF-8\n");

  const bootFiles = await readdir(join(tree, "boot"));
  const vmlinuz = bootFiles.find((f) => f.startsWith("vmlinuz-"));
  const initrdName = bootFiles.find((f) => f.startsWith("initrd.img-"));
  if (!vmlinuz || !initrdName) throw new Error(`the generic root's /boot has no kernel or initrd (${bootFiles.join(", ")})`);
  const kernel = join(work, "vmlinuz");
  const initrd = join(work, "initrd.img");
  await copyFile(join(tree, "boot", vmlinuz), kernel);
  await copyFile(join(tree, "boot", initrdName), initrd);

  const rootfsUncompressedBytes = await treeBytes(tree, (rel) => rel === "boot");
  const rootDisk = join(work, "root.ext4");
  const diskBytes = Math.max(2 * 2 ** 30, Math.ceil((rootfsUncompressedBytes * 1.5) / 2 ** 20) * 2 ** 20);
  await run("mkfs.ext4", ["-q", "-F", "-L", "generic-root", "-d", tree, rootDisk, `${Math.round(diskBytes / 2 ** 20)}M`], { what: "mkfs.ext4 (the generic root disk)" });
  const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;

  // Measurements only (not part of the build time).
  const squashfs = join(work, "rootfs-measure.squashfs");
  await run("mksquashfs", [tree, squashfs, "-noappend", "-quiet", "-no-progress", "-comp", "zstd", "-all-root", "-no-xattrs", "-e", "boot"], { what: "mksquashfs (measuring the generic root)" });
  const rootfsSquashfsBytes = (await stat(squashfs)).size;
  await rm(squashfs, { force: true });
  const packages = (await run("dpkg-query", [`--admindir=${join(tree, "var/lib/dpkg")}`, "-W", "-f", "${Package}\n"])).stdout.split("\n").filter(Boolean).length;
  const sha = (await run("sha256sum", [kernel])).stdout.split(" ")[0]!;
  const sizes = {
    kernelBytes: (await stat(kernel)).size,
    initrdBytes: (await stat(initrd)).size,
    rootfsUncompressedBytes,
    rootfsSquashfsBytes,
    diskAllocatedBytes: (await stat(rootDisk)).blocks * 512,
    consulBinaryBytes: (await stat(join(tree, "usr/bin/consul"))).size,
  };
  await rm(tree, { recursive: true, force: true });
  await rm(debs, { recursive: true, force: true });
  log(`generic image: built in ${buildSeconds.toFixed(0)}s, ${packages} packages`);
  return { kernel, initrd, rootDisk, kernelSha256: sha, buildSeconds, packages, cachedDebs: { before, after: await countDebs(debCache) }, sizes };
}
