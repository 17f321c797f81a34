// The local QEMU provider: a cluster recorded in a state directory runs as one vde
// switch and one VM per node. Nodes start and stop together or one at a time, and a
// VM that ended without resin stopping it is reported as crashed, with the reason.
import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterHandle, ClusterState, NodeState } from "../../state/state.js";
import { readManifest, servicePorts, type ImageManifest } from "../../image/manifest.js";
import { certFingerprint } from "../../image/sign.js";
import { ResinError } from "../../util/errors.js";
import type { Log } from "../../util/log.js";
import { chooseAccel, forgetAccel, type Accel } from "./accel.js";
import { archOf, type Arch } from "../../spec/arch.js";
import { assignPorts } from "./ports.js";
import { startSwitch, stopSwitch, switchPaths, switchRunning } from "./vde.js";
import { consoleTail, kernelAppend, OVMF_SECURE_BOOT, startVm, stopVm, vmPaths, vmPid, type MetadataService, type UefiBoot, type VmSpec } from "./vm.js";

export type VmState = "running" | "stopped" | "crashed";

/** Guest ports to forward, named "<service>.<port>", from the node's image manifest. */
async function guestPorts(cluster: ClusterHandle, node: NodeState): Promise<Record<string, number>> {
  const manifest = await readManifest(cluster.imageDir(node.image));
  if (!manifest) throw new ResinError(`node ${node.name}: its image ${node.image} is missing from the cluster's state directory`);
  return servicePorts(manifest);
}

/**
 * The architecture a node boots as: its image's, from the manifest (absent: amd64). The
 * image decides, not cluster.json, so that an upgrade to an image set of another
 * architecture boots it as what it is.
 */
export async function nodeImageArch(cluster: ClusterHandle, node: NodeState): Promise<Arch> {
  return archOf(await readManifest(cluster.imageDir(node.image)));
}

async function ensureSwitch(cluster: ClusterHandle): Promise<void> {
  const sw = switchPaths(await cluster.ensureDir());
  if (!(await switchRunning(sw))) await startSwitch(sw);
}

export interface BootOptions {
  /** Serve the node's metadata from a metadata network instead of its config drive (the e2e suite's cloud and metal doubles). */
  metadataService?: MetadataService;
  /** More kernel command line, e.g. resin.metadata=URL. */
  append?: string;
  /** A virtio memory balloon (see VmSpec): the e2e suite squeezes a running node's page cache with it. */
  balloon?: boolean;
}

/**
 * Give every node that lacks one a host port for each forward, keep the ports nodes
 * have, and move a port another program holds now. The caller saves the state.
 */
export async function assignClusterPorts(cluster: ClusterHandle, state: ClusterState, nodes: NodeState[] = state.nodes, log?: Log): Promise<void> {
  for (const node of nodes) {
    const reserved = new Set(state.nodes.filter((n) => n !== node).flatMap((n) => Object.values(n.ports)));
    const { ports, moved } = await assignPorts(Object.keys(await guestPorts(cluster, node)), node.ports, reserved);
    for (const m of moved) log?.(`  ${node.name}: host port ${m.from} for ${m.key} is taken by another program; it is now ${m.to}`);
    node.ports = ports;
  }
}

/** Boot one node on the host ports recorded for it (chosen now when it has none; see assignClusterPorts). */
export async function startNode(cluster: ClusterHandle, state: ClusterState, node: NodeState, accel: Accel, log: Log, boot: BootOptions = {}): Promise<number> {
  await ensureSwitch(cluster);
  const files = cluster.node(node.name);
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const image = cluster.imageDir(node.image);
  const guest = await guestPorts(cluster, node);
  // The root hash reaches /init on the command line, the hash tree as its own disk: the
  // node opens its root only through dm-verity (an image built before verity has neither).
  const manifest = await readManifest(image);
  const verity = manifest?.verity;
  const arch = archOf(manifest);
  const append = kernelAppend(verity, boot.append, arch);
  const uefi = state.secureBoot ? await secureBootFor(state, node, image, manifest, files.dir) : undefined;
  await assignClusterPorts(cluster, state, [node], log);
  await rm(files.stoppedMarker, { force: true });
  const spec = (): VmSpec => ({
    name: node.name,
    dir: files.dir,
    kernel: join(image, "vmlinuz"),
    initrd: join(image, "initrd.img"),
    rootDisk: join(image, "rootfs.squashfs"),
    ...(verity ? { hashDisk: join(image, verity.file) } : {}),
    append,
    memoryMib: node.memoryMib,
    cpus: node.cpus,
    arch,
    accel,
    switchSocket: switchPaths(cluster.dir).socket,
    clusterMac: node.clusterMac,
    hostMac: node.hostMac,
    forwards: Object.entries(guest).map(([key, guestPort]) => ({ hostPort: node.ports[key]!, guestPort })),
    configDrive: boot.metadataService ? undefined : files.configDrive,
    metadataService: boot.metadataService,
    persistDisk: files.persistDisk,
    balloon: boot.balloon,
    ...(uefi ? { uefi } : {}),
  });
  let pid: number;
  try {
    pid = await startVm(spec());
  } catch (e) {
    // Another program took a port between our check and QEMU's bind: move that one, once.
    const taken = /host forwarding rule 'tcp:127\.0\.0\.1:(\d+)-/.exec((e as Error).message);
    if (!taken) throw accel === "kvm" ? await kvmStartFailure(state, node, e) : e;
    const key = Object.keys(node.ports).find((k) => node.ports[k] === Number(taken[1]));
    if (!key) throw e;
    delete node.ports[key];
    await assignClusterPorts(cluster, state, [node], log);
    log(`  ${node.name}: host port ${taken[1]} for ${key} was taken as QEMU started; it is now ${node.ports[key]}`);
    pid = await startVm(spec());
  }
  await writeFile(files.startedMarker, `${pid}\n`);
  log(`  started ${node.name} (${node.address}${arch === "amd64" ? "" : `, ${arch}`}, pid ${pid}, ${Object.entries(node.ports).map(([k, p]) => `${k} → 127.0.0.1:${p}`).join(", ")})`);
  return pid;
}

/** A Secure Boot node's own variable store, in its directory. */
const SECURE_BOOT_VARS = "OVMF_VARS.fd";

/**
 * A Secure Boot node's firmware and disk: the image's signed disk.qcow2, and the node's
 * own variable store, made once from Debian's with the test certificate enrolled and
 * kept across boots, as a machine keeps its NVRAM. The image must be signed for the
 * certificate the cluster was created with, which must be the enrolled one.
 */
async function secureBootFor(state: ClusterState, node: NodeState, image: string, manifest: ImageManifest | undefined, dir: string): Promise<UefiBoot> {
  const signature = manifest?.disk.signature;
  if (!signature) {
    throw new ResinError(
      `node ${node.name}: its image ${node.image} is not signed, and cluster '${state.name}' boots only under Secure Boot`,
      "build its images with resin build --sign KEY,CERT (the cluster's certificate) and upgrade with --image-set, or use a cluster without --secure-boot",
    );
  }
  const enrolled = certFingerprint(await readFile(OVMF_SECURE_BOOT.cert, "utf8"));
  if (signature.certSha256 !== state.secureBoot!.certSha256 || signature.certSha256 !== enrolled) {
    throw new ResinError(
      `node ${node.name}: its image ${node.image} is signed for the certificate ${signature.certSha256}; the firmware's variable store has ${enrolled} (Debian's test certificate) enrolled`,
      "resin up --secure-boot enrols only Debian's test certificate (ovmf's PkKek-1-snakeoil); see the README's Security section for enrolling your own on a real machine",
    );
  }
  const vars = join(dir, SECURE_BOOT_VARS);
  if (!existsSync(vars)) await copyFile(OVMF_SECURE_BOOT.vars, vars);
  return { code: OVMF_SECURE_BOOT.code, vars, disk: join(image, manifest.disk.qcow2.file), secureBoot: true };
}

/**
 * QEMU exited as it started under KVM (seen on AMD hosts whose KVM cannot set an MSR):
 * name the accelerator, why it was used, QEMU's own words and the fix, as a silent
 * console does. A probed choice is forgotten, so the next run probes again.
 */
async function kvmStartFailure(state: ClusterState, node: NodeState, e: unknown): Promise<unknown> {
  if (!(e instanceof ResinError)) return e;
  const forced = process.env.RESIN_ACCEL === "kvm";
  if (!forced) await forgetAccel();
  return kvmStartError(state.name, node.name, e.message.replace(/^QEMU did not start node [^:]+: /, ""), forced);
}

/** The error for a QEMU that exited at start under KVM: its first line in the message, the rest and the fix in the hint. */
export function kvmStartError(cluster: string, node: string, qemuSaid: string, forced: boolean): ResinError {
  const said = qemuSaid.split("\n").map((l) => l.trim()).filter(Boolean);
  return new ResinError(
    `QEMU exited as node ${node} started under accelerator kvm (${forced ? "forced by RESIN_ACCEL" : "it passed its probe"}): ${said[0] ?? "no message"}`,
    [...said.slice(1).map((l) => `QEMU: ${l}`), `the likely cause is KVM on this host; use TCG:   RESIN_ACCEL=tcg resin up --name ${cluster}`].join("\n"),
  );
}

/** Stop one node on purpose: cleanly when graceMs > 0, and remember that it was resin. */
export async function stopNode(cluster: ClusterHandle, node: NodeState, opts: { graceMs?: number } = {}): Promise<void> {
  const files = cluster.node(node.name);
  if (existsSync(files.dir)) await writeFile(files.stoppedMarker, "stopped by resin\n");
  await stopVm(files.dir, opts);
}

/**
 * Start the cluster's nodes that are not running (all of them by default) and leave
 * running ones alone; on a failure, stop the ones this call started. Returns the
 * accelerator used (tcg when any node is emulated: the slower one sets the patience)
 * and the nodes started. The accelerator is chosen once per architecture among them.
 */
export async function startCluster(cluster: ClusterHandle, state: ClusterState, log: Log, nodes: NodeState[] = state.nodes): Promise<{ accel: Accel; started: NodeState[] }> {
  const archOfNode = new Map<NodeState, Arch>();
  for (const node of nodes.length ? nodes : [state.nodes[0]!]) archOfNode.set(node, await nodeImageArch(cluster, node));
  const accelOf = new Map<Arch, Accel>();
  for (const [node, arch] of archOfNode) {
    if (accelOf.has(arch)) continue;
    accelOf.set(arch, await chooseAccel(cluster.imageDir(node.image), log, undefined, arch));
  }
  const several = accelOf.size > 1;
  log(`  accelerator: ${[...accelOf].map(([arch, a]) => (several ? `${a} (${arch})` : a)).join(", ")}${process.env.RESIN_ACCEL ? " (RESIN_ACCEL)" : ""}`);
  const accel: Accel = [...accelOf.values()].includes("tcg") ? "tcg" : "kvm";
  const started: NodeState[] = [];
  try {
    for (const node of nodes) {
      if ((await vmState(cluster, node)).state === "running") continue;
      await startNode(cluster, state, node, accelOf.get(archOfNode.get(node)!)!, log);
      started.push(node);
    }
  } catch (e) {
    await Promise.all(started.map((n) => stopNode(cluster, n, { graceMs: 0 })));
    if (!(await anythingRunning(cluster, state, true))) await stopSwitch(switchPaths(cluster.dir));
    throw e;
  }
  return { accel, started };
}

/** Stop every VM (cleanly when graceMs > 0) and then the switch. */
export async function stopCluster(cluster: ClusterHandle, state: ClusterState, opts: { graceMs?: number } = {}): Promise<void> {
  await Promise.all(state.nodes.map((n) => stopNode(cluster, n, opts)));
  await stopSwitch(switchPaths(cluster.dir));
}

/** Stop whatever still runs from a cluster directory whose state file cannot be read: each node's VM by its pid file, then the switch. */
export async function stopLeftovers(cluster: ClusterHandle): Promise<void> {
  const nodes = existsSync(cluster.nodes) ? await readdir(cluster.nodes) : [];
  await Promise.all(nodes.map((n) => stopVm(cluster.node(n).dir, { graceMs: 0 })));
  await stopSwitch(switchPaths(cluster.dir));
}

/**
 * Pure: the firmware's refusal of the disk's boot entry under Secure Boot, from its
 * console (OVMF: `BdsDxe: failed to load Boot0001 "…" from …: Access Denied`), as a reason.
 */
export function firmwareRefusal(console: string): string | undefined {
  const line = console.split("\n").find((l) => /BdsDxe: failed to load Boot\d+ .*: (Access Denied|Security Violation)/.test(l));
  if (!line) return undefined;
  return `the firmware refused the disk's unified kernel image under Secure Boot (${line.slice(line.lastIndexOf(": ") + 2).trim()}: not signed for an enrolled certificate, or changed since it was signed)`;
}

/** Why a VM that nobody stopped has ended, from the last lines its console shows. */
async function crashReason(dir: string): Promise<string> {
  const tail = await consoleTail(dir, 40);
  const refused = firmwareRefusal(tail);
  if (refused) return refused;
  const fatal = tail.split("\n").reverse().find((l) => l.includes("resin: FATAL:"));
  if (fatal) return fatal.slice(fatal.indexOf("FATAL:") + 7).trim();
  if (/reboot: Power down|reboot: System halted/.test(tail)) return "the guest powered itself off";
  if (/Kernel panic/.test(tail)) return `kernel panic: ${tail.split("\n").find((l) => l.includes("Kernel panic"))?.trim()}`;
  return "the QEMU process ended without a guest shutdown (killed, or QEMU failed)";
}

export async function vmState(cluster: ClusterHandle, node: NodeState): Promise<{ state: VmState; pid?: number; startedAt?: number; reason?: string }> {
  const files = cluster.node(node.name);
  let pid = await vmPid(files.dir);
  // A Secure Boot node whose firmware refused its UKI waits at the firmware's prompt
  // forever, and nothing of the node ever ran: it is ended here and reported as crashed.
  if (pid && existsSync(join(files.dir, SECURE_BOOT_VARS)) && firmwareRefusal(await consoleTail(files.dir, 40))) {
    await stopVm(files.dir, { graceMs: 0 });
    pid = await vmPid(files.dir);
  }
  // QEMU writes its pid file as it starts, before it sets up the machine.
  if (pid) return { state: "running", pid, startedAt: await stat(vmPaths(files.dir).pidFile).then((s) => s.mtimeMs, () => undefined) };
  if (existsSync(files.stoppedMarker) || !existsSync(files.startedMarker)) return { state: "stopped" };
  return { state: "crashed", reason: await crashReason(files.dir) };
}

/** Whether a VM of the cluster runs (or, unless `vmsOnly`, its switch). */
export async function anythingRunning(cluster: ClusterHandle, state: ClusterState, vmsOnly = false): Promise<boolean> {
  if (!vmsOnly && (await switchRunning(switchPaths(cluster.dir)))) return true;
  for (const node of state.nodes) if ((await vmState(cluster, node)).state === "running") return true;
  return false;
}
