// One QEMU process per node. The command line is built by a pure function so that
// tests can read it; starting and stopping go by the pid QEMU writes itself.
import { existsSync } from "node:fs";
import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../../util/errors.js";
import { printable } from "../../util/text.js";
import { requireTools, type HostTool } from "../../util/tools.js";
import { MAC_PATTERN } from "../../state/state.js";
import { accelArgs, type Accel } from "./accel.js";
import { ARCH, DEFAULT_ARCH, type Arch } from "../../spec/arch.js";
import { isOurs, readPid, stopProcess, waitForExit } from "./process.js";
import { ctrlAltDelete } from "./qmp.js";
import { verityCmdline, type VerityParams } from "../../image/verity.js";

export interface VmSpec {
  name: string;
  dir: string;
  kernel: string;
  initrd: string;
  /** The image's read-only root filesystem, shared by every node that boots the image. */
  rootDisk: string;
  /** Its dm-verity hash tree (rootfs.verity), a second read-only disk; absent for an image built before it had one. */
  hashDisk?: string;
  append: string;
  memoryMib: number;
  cpus: number;
  /** The image's architecture: the emulator, machine type and CPU (amd64 when absent). */
  arch?: Arch;
  accel: Accel;
  switchSocket: string;
  clusterMac: string;
  hostMac: string;
  /** Guest TCP ports reachable from the host, each on its own 127.0.0.1 port. */
  forwards: { hostPort: number; guestPort: number }[];
  /** The node's metadata on an ISO; absent when it comes from a metadata service. */
  configDrive?: string;
  /** A cloud-like metadata network: guest addresses the host serves on loopback. */
  metadataService?: MetadataService;
  persistDisk: string;
  /** A virtio memory balloon the host inflates over QMP (`balloon`): the e2e suite's way to take memory from a running node. */
  balloon?: boolean;
  /** Boot the image's signed disk under UEFI firmware instead of -kernel/-initrd (resin up --secure-boot). */
  uefi?: UefiBoot;
}

/**
 * A node booted by UEFI firmware from the image's disk (disk.qcow2: ESP with the UKI,
 * root and hash-tree partitions), read-only and shared like the squashfs disk. With
 * `secureBoot` the firmware is a Secure Boot build (SMM, its variables writable only
 * from SMM) and its variable store, the node's own copy, has the signing certificate
 * enrolled: it runs only a UKI signed for it.
 */
export interface UefiBoot {
  code: string;
  /** The node's own copy of the variable store. */
  vars: string;
  disk: string;
  secureBoot: boolean;
}

/** Debian's ovmf: Secure Boot firmware for q35, and a variable store with its test key pair (PkKek-1-snakeoil) enrolled as PK, KEK and db. */
export const OVMF_SECURE_BOOT = {
  code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
  vars: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd",
  cert: "/usr/share/ovmf/PkKek-1-snakeoil.pem",
} as const;

/**
 * A user-mode NIC on 169.254.0.0/16, the link-local network clouds serve metadata on:
 * DHCP gives the guest an address there, and each forward connects one guest address
 * and port to a server on the host's loopback (through busybox nc, one process per
 * connection). restrict=on: nothing else leaves it.
 */
export interface MetadataService {
  forwards: { guestAddress: string; guestPort: number; hostPort: number }[];
}

export const METADATA_NETWORK = "169.254.0.0/16";

export function vmPaths(dir: string) {
  return {
    pidFile: join(dir, "qemu.pid"),
    console: join(dir, "console.log"),
    qmp: join(dir, "qmp.sock"),
    stderr: join(dir, "qemu.log"),
  };
}

/** QEMU splits option values at commas; a literal comma in a path is written twice. */
const q = (path: string) => path.replaceAll(",", ",,");

const isPort = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;

export function qemuArgs(spec: VmSpec): string[] {
  const paths = vmPaths(spec.dir);
  // Ports are joined into QEMU's option syntax: anything but a port number could add options.
  for (const f of [...spec.forwards, ...(spec.metadataService?.forwards ?? [])]) {
    if (!isPort(f.hostPort) || !isPort(f.guestPort)) throw new ResinError(`node ${spec.name}: forward ${String(f.hostPort)} → ${String(f.guestPort)} is not a pair of TCP ports (1 to 65535)`);
  }
  // So are MACs (cluster.json is checked on read; this is the last place before QEMU).
  for (const mac of [spec.clusterMac, spec.hostMac]) {
    if (!MAC_PATTERN.test(mac)) throw new ResinError(`node ${spec.name}: ${JSON.stringify(mac)} is not a MAC address`, "a MAC is six pairs of lower-case hex digits joined by ':'; correct it in the cluster's cluster.json");
  }
  const forwards = spec.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join("");
  const arch = spec.arch ?? DEFAULT_ARCH;
  return [
    "-name", spec.name,
    ...accelArgs(spec.accel, arch),
    // q35 on amd64 (with SMM for Secure Boot firmware), virt on arm64: both have PCIe, so the devices below are the same.
    "-machine", spec.uefi?.secureBoot ? `${ARCH[arch].qemuMachine},smm=on` : ARCH[arch].qemuMachine,
    "-m", String(spec.memoryMib),
    "-smp", String(spec.cpus),
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    ...(spec.uefi ? uefiArgs(spec.uefi) : directBootArgs(spec)),
    "-serial", `file:${q(paths.console)}`,
    "-device", "virtio-rng-pci",
    ...ARCH[arch].qemuDevices.flatMap((d) => ["-device", d]),
    ...(spec.configDrive
      ? ["-drive", `if=none,id=cidata,file=${q(spec.configDrive)},format=raw,readonly=on`, "-device", "virtio-blk-pci,drive=cidata,serial=cidata"]
      : []),
    "-drive", `if=none,id=persist,file=${q(spec.persistDisk)},format=qcow2`,
    "-device", "virtio-blk-pci,drive=persist,serial=persist",
    // The cluster segment: a private L2 switch shared by the cluster's VMs only.
    "-netdev", `vde,id=cluster,sock=${q(spec.switchSocket)}`,
    "-device", `virtio-net-pci,netdev=cluster,mac=${spec.clusterMac}`,
    // The host's way in: user-mode NIC, no route out (restrict=on), forwards on loopback only.
    "-netdev", `user,id=host,restrict=on${forwards}`,
    "-device", `virtio-net-pci,netdev=host,mac=${spec.hostMac}`,
    ...(spec.metadataService ? metadataNicArgs(spec.metadataService) : []),
    // deflate-on-oom: a guest out of memory takes pages back from the balloon before it kills a process.
    ...(spec.balloon ? ["-device", "virtio-balloon-pci,deflate-on-oom=on"] : []),
    "-qmp", `unix:${q(paths.qmp)},server=on,wait=off`,
    "-pidfile", paths.pidFile,
    "-daemonize",
  ];
}

/** The kernel, initramfs and command line from the image directory, and the root and its hash tree as their own disks. */
function directBootArgs(spec: VmSpec): string[] {
  return [
    "-kernel", spec.kernel,
    "-initrd", spec.initrd,
    "-append", spec.append,
    // Disks are told apart in the guest by their serial, not by probe order.
    "-drive", `if=none,id=root,file=${q(spec.rootDisk)},format=raw,readonly=on`,
    "-device", "virtio-blk-pci,drive=root,serial=root",
    ...(spec.hashDisk
      ? ["-drive", `if=none,id=verity,file=${q(spec.hashDisk)},format=raw,readonly=on`, "-device", "virtio-blk-pci,drive=verity,serial=verity"]
      : []),
  ];
}

/** Firmware (code read-only, the node's variable store) and the disk it boots; the UKI on it carries the command line. */
export function uefiArgs(uefi: UefiBoot): string[] {
  return [
    // Secure Boot firmware keeps its variables writable only from SMM: without this, the OS could rewrite db.
    ...(uefi.secureBoot ? ["-global", "driver=cfi.pflash01,property=secure,value=on"] : []),
    "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${q(uefi.code)}`,
    "-drive", `if=pflash,format=raw,unit=1,file=${q(uefi.vars)}`,
    "-drive", `if=none,id=disk,file=${q(uefi.disk)},format=qcow2,readonly=on`,
    "-device", "virtio-blk-pci,drive=disk,bootindex=0",
  ];
}

function metadataNicArgs(service: MetadataService): string[] {
  const forwards = service.forwards.map((f) => `,guestfwd=tcp:${f.guestAddress}:${f.guestPort}-cmd:busybox nc 127.0.0.1 ${f.hostPort}`).join("");
  return ["-netdev", `user,id=metadata,restrict=on,net=${METADATA_NETWORK}${forwards}`, "-device", "virtio-net-pci,netdev=metadata"];
}

/** The fixed words of a local boot's command line: the serial console is the architecture's (ttyS0, ttyAMA0). */
export function kernelBase(arch: Arch = DEFAULT_ARCH): string {
  return `console=${ARCH[arch].console} panic=-1 loglevel=4`;
}

export const KERNEL_APPEND = kernelBase("amd64");

/**
 * The command line of a local boot: the fixed words, the image's root hash, salt and
 * block count for /init's dm-verity (none for an image built before it had a tree),
 * then `extra`.
 */
export function kernelAppend(verity?: Pick<VerityParams, "rootHash" | "salt" | "dataBlocks">, extra?: string, arch: Arch = DEFAULT_ARCH): string {
  return [kernelBase(arch), ...(verity ? [verityCmdline(verity)] : []), ...(extra ? [extra] : [])].join(" ");
}

export async function createPersistDisk(path: string, gib: number): Promise<boolean> {
  if (existsSync(path)) return false; // never replace a node's data
  await execa("qemu-img", ["create", "-q", "-f", "qcow2", path, `${gib}G`]);
  return true;
}

/** Start QEMU; it daemonises only after the devices and forwards are set up, so errors surface here. */
export async function startVm(spec: VmSpec): Promise<number> {
  const paths = vmPaths(spec.dir);
  await rm(paths.pidFile, { force: true });
  await rm(paths.console, { force: true });
  const qemu = ARCH[spec.arch ?? DEFAULT_ARCH].qemu;
  requireTools([qemu as HostTool]); // an upgrade may bring a node of an architecture the cluster did not have
  const result = await execa(qemu, qemuArgs(spec), { reject: false, stdin: "ignore" });
  const pid = await readPid(paths.pidFile);
  if (result.exitCode !== 0 || !pid) {
    const message = (result.stderr || result.stdout || "").trim() || `exit ${result.exitCode}`;
    throw new ResinError(`QEMU did not start node ${spec.name}: ${message}`);
  }
  return pid;
}

export async function vmPid(dir: string): Promise<number | undefined> {
  const paths = vmPaths(dir);
  const pid = await readPid(paths.pidFile);
  return isOurs(pid, paths.pidFile) ? pid : undefined;
}

/** Ask the guest to shut down (ctrl-alt-del → runit stage 3), then make sure QEMU is gone. */
export async function stopVm(dir: string, opts: { graceMs?: number } = {}): Promise<void> {
  const paths = vmPaths(dir);
  const pid = await vmPid(dir);
  if (!pid) return;
  const grace = opts.graceMs ?? 15_000;
  if (grace > 0) {
    try {
      await ctrlAltDelete(paths.qmp);
      if (await waitForExit(pid, paths.pidFile, grace)) return;
    } catch {
      // No QMP answer: fall through to signals.
    }
  }
  await stopProcess(pid, paths.pidFile, 5000);
}

/** The last `lines` lines of a node's console log, made printable. */
export async function consoleTail(dir: string, lines = 15): Promise<string> {
  const text = await readFile(vmPaths(dir).console, "utf8").catch(() => "");
  return printable(text.replace(/\n$/, "")).split("\n").slice(-lines).join("\n");
}

/** Bytes the node's console has printed since its VM started (QEMU starts the file anew). */
export async function consoleBytes(dir: string): Promise<number> {
  return stat(vmPaths(dir).console).then((s) => s.size, () => 0);
}
