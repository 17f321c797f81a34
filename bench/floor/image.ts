// The floor: what booting Consul costs on this machine with nothing of Resin around it.
// The same kernel as Resin's consul-server image (the same bytes), and an initramfs
// holding only busybox (a few applets), the Consul binary with the glibc files it
// loads, the virtio NIC modules and a static Consul config. Its /init
// (bench/floor/init) gives the NICs their addresses from the kernel command line and
// execs Consul: no runit, no metadata, no disks, no TLS, no ACLs.
//
// Every file comes from the .debs Resin's image was built from, out of Resin's
// artifact cache (by the sha256 in the image manifest), and the archive is written by
// Resin's own cpio writer, so equal inputs give equal bytes.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { unpackedDeb } from "../../cli/artifacts/cache.js";
import { writeCpio } from "../../cli/image/cpio.js";
import { readElfDeps } from "../../cli/image/elf.js";
import { kernelFiles } from "../../cli/image/kernel.js";
import { readInside } from "../../cli/image/package-files.js";
import { Rootfs, type ManifestFile } from "../../cli/image/rootfs.js";
import { canonicalJson, sha256 } from "../../cli/util/hash.js";
import { cacheHome } from "../../cli/util/paths.js";
import { repoRoot } from "../util.js";

/**
 * Loaded in this order by /init (their dependencies through modules.dep): the PCI
 * transport, the NICs, and the host's entropy source, without which Consul's first
 * crypto/rand read may wait for the kernel's pool (Resin loads it for the same reason).
 */
export const FLOOR_MODULES = ["virtio_pci", "virtio_net", "virtio_rng"];

/** The busybox applets /init uses, where Debian's busybox puts them (checked against `busybox --list-full`). */
export const FLOOR_APPLETS = ["bin/cat", "bin/mkdir", "bin/mount", "bin/sh", "bin/sleep", "sbin/ip", "sbin/modprobe", "sbin/poweroff"];

/** Where a dynamic linker finds libraries without an ld.so.cache (as cli/image/build.ts searches). */
const LIBRARY_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"];

/** Consul's HTTP API, plain, on every address (the host reaches it through a forward). */
export const FLOOR_HTTP_PORT = 8500;

/** A .deb as an image manifest (or resin.lock.json) names it. */
export interface FloorDeb {
  package: string;
  version: string;
  sha256: string;
}

export interface FloorDebs {
  kernel: FloorDeb;
  busybox: FloorDeb;
  consul: FloorDeb;
  libc: FloorDeb;
}

/** The four .debs the floor is made of, picked from Resin's image manifest's package list. */
export function floorDebs(packages: FloorDeb[]): FloorDebs {
  const pick = (what: string, match: (p: string) => boolean): FloorDeb => {
    const found = packages.filter((p) => match(p.package));
    if (found.length !== 1) throw new Error(`the floor needs exactly one ${what} package in Resin's image, found ${found.length} (have: ${packages.map((p) => p.package).join(", ")})`);
    return found[0]!;
  };
  return {
    kernel: pick("kernel", (p) => /^linux-image-\d/.test(p)),
    busybox: pick("busybox-static", (p) => p === "busybox-static"),
    consul: pick("consul", (p) => p === "consul"),
    libc: pick("libc6", (p) => p === "libc6"),
  };
}

/** Raft's timing as Resin's role sets it: a property of Consul's tuning, not of the image, so both sides share it. */
export interface FloorRaft {
  raftMultiplier: number;
  serverStabilizationSeconds: number;
}

/**
 * What every floor node shares: a server expecting three, its data in RAM, the HTTP API
 * in plain text on 8500, and Resin's raft timing. The node's name, addresses and peers
 * come from its kernel command line (/init writes them to /run/consul/node.json).
 */
export function floorConsulConfig(raft: FloorRaft, expect = 3): string {
  return (
    canonicalJson({
      server: true,
      bootstrap_expect: expect,
      datacenter: "dc1",
      data_dir: "/var/lib/consul",
      client_addr: "0.0.0.0",
      ports: { http: FLOOR_HTTP_PORT },
      disable_update_check: true,
      log_level: "INFO",
      performance: { raft_multiplier: raft.raftMultiplier },
      autopilot: { server_stabilization_time: `${raft.serverStabilizationSeconds}s` },
    }) + "\n"
  );
}

export interface FloorInitramfs {
  /** The newc archive, uncompressed (see buildFloorImage for why). */
  cpio: Buffer;
  vmlinuz: Buffer;
  kernelVersion: string;
  /** Every module in the archive (FLOOR_MODULES and their dependencies). */
  modules: string[];
  /** Every entry with its origin, as an image manifest lists them. */
  files: ManifestFile[];
}

/** The floor's /init, as it sits in the repository (the bench runs from dist/, which has no copy). */
export const FLOOR_INIT = join(repoRoot, "bench", "floor", "init");

/** Assemble the floor's initramfs from the cached .debs (unpacked on first use). */
export async function floorInitramfs(debs: FloorDebs, raft: FloorRaft, opts: { cacheRoot?: string; init?: string } = {}): Promise<FloorInitramfs> {
  const cacheRoot = opts.cacheRoot ?? cacheHome();
  const root = async (d: FloorDeb) => unpackedDeb(d.sha256, `${d.package} ${d.version}`, cacheRoot);
  const label = (d: FloorDeb) => ({ kind: "deb", source: `${d.package} ${d.version}` });
  const tree = new Rootfs();
  for (const d of ["dev", "proc", "sys", "run", "var/lib"]) tree.dir(d);
  tree.dir("tmp", 0o1777);

  const kernel = await kernelFiles(await root(debs.kernel), FLOOR_MODULES);
  for (const [path, data] of kernel.files) tree.file(path, data, 0o644, label(debs.kernel));
  tree.file("etc/modules", Buffer.from(FLOOR_MODULES.join("\n") + "\n"), 0o644, { kind: "bench", source: "floor" });

  const busyboxRoot = await root(debs.busybox);
  const busybox = await readInside(busyboxRoot, "bin/busybox");
  if (!busybox) throw new Error(`${debs.busybox.package} has no bin/busybox`);
  tree.file("bin/busybox", busybox, 0o755, label(debs.busybox));
  const applets = new Set((await execa(join(busyboxRoot, "bin/busybox"), ["--list-full"])).stdout.split("\n"));
  for (const applet of FLOOR_APPLETS) {
    if (!applets.has(applet)) throw new Error(`busybox from ${debs.busybox.package} ${debs.busybox.version} has no applet ${applet}`);
    tree.symlink(applet, "/bin/busybox", { kind: "applet", source: "bin/busybox" });
  }

  const consul = await readInside(await root(debs.consul), "usr/bin/consul");
  if (!consul) throw new Error(`${debs.consul.package} has no usr/bin/consul`);
  tree.file("usr/bin/consul", consul, 0o755, label(debs.consul));
  // Consul's program interpreter and shared libraries, and theirs, from libc6.
  const libcRoot = await root(debs.libc);
  const queue = ["usr/bin/consul"];
  while (queue.length) {
    const entry = tree.get(queue.shift()!);
    const deps = entry?.type === "file" ? readElfDeps(entry.data) : undefined;
    if (!deps) continue;
    const wanted = [...(deps.interpreter ? [[deps.interpreter.replace(/^\/+/, "")]] : []), ...deps.needed.map((soname) => LIBRARY_DIRS.map((d) => `${d}/${soname}`))];
    for (const candidates of wanted) {
      if (candidates.some((c) => tree.has(c))) continue;
      let found = false;
      for (const candidate of candidates) {
        const data = await readInside(libcRoot, candidate);
        if (!data) continue;
        tree.file(candidate, data, 0o755, label(debs.libc));
        queue.push(candidate);
        found = true;
        break;
      }
      if (!found) throw new Error(`consul needs ${candidates[0]!.split("/").pop()}, which ${debs.libc.package} does not ship`);
    }
  }

  tree.file("etc/consul.d/floor.json", Buffer.from(floorConsulConfig(raft)), 0o644, { kind: "bench", source: "floor" });
  tree.file("init", await readFile(opts.init ?? FLOOR_INIT), 0o755, { kind: "bench", source: "floor/init" });
  return { cpio: writeCpio(tree.list()), vmlinuz: kernel.vmlinuz, kernelVersion: kernel.version, modules: kernel.modules, files: tree.manifest() };
}

export interface FloorImage {
  kernel: string;
  initrd: string;
  kernelSha256: string;
  initrdSha256: string;
  kernelVersion: string;
  modules: string[];
  files: ManifestFile[];
  buildSeconds: number;
  sizes: {
    kernelBytes: number;
    /** The initramfs as booted (uncompressed newc). */
    initramfsBytes: number;
    consulBinaryBytes: number;
    /** Everything in the initramfs but the consul binary. */
    overheadBytes: number;
  };
}

/**
 * Write the floor's kernel and initramfs into `dir`. The kernel must be byte for byte
 * the one in Resin's image (`kernelSha256`, from its manifest). The initramfs is not
 * compressed: the kernel only copies it into RAM at boot. Gzipped (-9, 21 MB instead of
 * 73 MB) the kernel must first inflate some 70 MB on the emulated CPU: under TCG on the
 * 2-core bench machine /init then started at 14.7 s of uptime instead of 3.6–6.2 s.
 * The floor takes the fastest way.
 */
export async function buildFloorImage(opts: { dir: string; packages: FloorDeb[]; kernelSha256: string; raft: FloorRaft }): Promise<FloorImage> {
  const started = process.hrtime.bigint();
  const built = await floorInitramfs(floorDebs(opts.packages), opts.raft);
  const kernelSha256 = sha256(built.vmlinuz);
  if (kernelSha256 !== opts.kernelSha256) {
    throw new Error(`the floor's kernel (from ${floorDebs(opts.packages).kernel.package}) has sha256 ${kernelSha256}, Resin's image ${opts.kernelSha256}: not the same kernel`);
  }
  await mkdir(opts.dir, { recursive: true });
  const kernel = join(opts.dir, "vmlinuz");
  const initrd = join(opts.dir, "initrd.img");
  await writeFile(kernel, built.vmlinuz);
  await writeFile(initrd, built.cpio);
  const buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const consulBinaryBytes = built.files.find((f) => f.path === "usr/bin/consul")?.size ?? 0;
  return {
    kernel,
    initrd,
    kernelSha256,
    initrdSha256: sha256(built.cpio),
    kernelVersion: built.kernelVersion,
    modules: built.modules,
    files: built.files,
    buildSeconds,
    sizes: { kernelBytes: built.vmlinuz.length, initramfsBytes: built.cpio.length, consulBinaryBytes, overheadBytes: built.cpio.length - consulBinaryBytes },
  };
}
