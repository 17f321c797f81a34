// The local QEMU provider: a cluster recorded in a state directory runs as one vde
// switch and one VM per node. Nodes start and stop together or one at a time, and a
// VM that ended without resin stopping it is reported as crashed, with the reason.
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { clusterPaths, imageDirFor, type ClusterState, type NodeState } from "../../cluster/state.js";
import { readManifest, servicePorts } from "../../image/build.js";
import { ResinError } from "../../util/errors.js";
import type { Log } from "../../util/log.js";
import { chooseAccel, type Accel } from "./accel.js";
import { freeLoopbackPort } from "./ports.js";
import { startSwitch, stopSwitch, switchPaths, switchRunning } from "./vde.js";
import { consoleTail, KERNEL_APPEND, startVm, stopVm, vmPid, type MetadataService } from "./vm.js";

export type VmState = "running" | "stopped" | "crashed";

export function nodeFiles(cluster: string, node: string) {
  const dir = clusterPaths(cluster).node(node);
  return {
    dir,
    configDrive: join(dir, "cidata.iso"),
    /** The same metadata as plain JSON, for provisioners that pass it as user data (0600). */
    userData: join(dir, "user-data.json"),
    persistDisk: join(dir, "persist.qcow2"),
    /** Present while the node is stopped on purpose (by resin); absent while it should run. */
    stoppedMarker: join(dir, "stopped"),
    /** Written at each start: QEMU removes its own pid file when it exits, so this is what remembers a VM was meant to run. */
    startedMarker: join(dir, "started"),
  };
}

/** Guest ports to forward, named "<service>.<port>", from the node's image manifest. */
async function guestPorts(state: ClusterState, node: NodeState): Promise<Record<string, number>> {
  const manifest = await readManifest(imageDirFor(state.name, node.image));
  if (!manifest) throw new ResinError(`node ${node.name}: its image ${node.image} is missing from the cluster's state directory`);
  return servicePorts(manifest);
}

async function ensureSwitch(state: ClusterState): Promise<void> {
  const sw = switchPaths(clusterPaths(state.name).dir);
  if (!(await switchRunning(sw))) await startSwitch(sw);
}

export interface BootOptions {
  /** Serve the node's metadata from a metadata network instead of its config drive (the e2e suite's cloud and metal doubles). */
  metadataService?: MetadataService;
  /** More kernel command line, e.g. resin.metadata=URL. */
  append?: string;
}

/** Boot one node. Its host ports are chosen anew and recorded in `node.ports` (the caller saves state). */
export async function startNode(state: ClusterState, node: NodeState, accel: Accel, log: Log, boot: BootOptions = {}): Promise<number> {
  await ensureSwitch(state);
  const files = nodeFiles(state.name, node.name);
  await mkdir(files.dir, { recursive: true });
  const image = imageDirFor(state.name, node.image);
  node.ports = {};
  const forwards = [];
  for (const [key, guestPort] of Object.entries(await guestPorts(state, node))) {
    const hostPort = await freeLoopbackPort();
    node.ports[key] = hostPort;
    forwards.push({ hostPort, guestPort });
  }
  await rm(files.stoppedMarker, { force: true });
  const pid = await startVm({
    name: node.name,
    dir: files.dir,
    kernel: join(image, "vmlinuz"),
    initrd: join(image, "initrd.img"),
    rootDisk: join(image, "rootfs.squashfs"),
    append: boot.append ? `${KERNEL_APPEND} ${boot.append}` : KERNEL_APPEND,
    memoryMib: node.memoryMib,
    cpus: node.cpus,
    accel,
    switchSocket: switchPaths(clusterPaths(state.name).dir).socket,
    clusterMac: node.clusterMac,
    hostMac: node.hostMac,
    forwards,
    configDrive: boot.metadataService ? undefined : files.configDrive,
    metadataService: boot.metadataService,
    persistDisk: files.persistDisk,
  });
  await writeFile(files.startedMarker, `${pid}\n`);
  log(`  started ${node.name} (${node.address}, pid ${pid}, ${Object.entries(node.ports).map(([k, p]) => `${k} → 127.0.0.1:${p}`).join(", ")})`);
  return pid;
}

/** Stop one node on purpose: cleanly when graceMs > 0, and remember that it was resin. */
export async function stopNode(state: ClusterState, node: NodeState, opts: { graceMs?: number } = {}): Promise<void> {
  const files = nodeFiles(state.name, node.name);
  if (existsSync(files.dir)) await writeFile(files.stoppedMarker, "stopped by resin\n");
  await stopVm(files.dir, opts);
}

export async function startCluster(state: ClusterState, log: Log): Promise<void> {
  const accel = await chooseAccel();
  log(`  accelerator: ${accel}${accel === "tcg" ? " (KVM is absent or did not pass the probe)" : ""}`);
  try {
    for (const node of state.nodes) await startNode(state, node, accel, log);
  } catch (e) {
    await stopCluster(state, { graceMs: 0 });
    throw e;
  }
}

/** Stop every VM (cleanly when graceMs > 0) and then the switch. */
export async function stopCluster(state: ClusterState, opts: { graceMs?: number } = {}): Promise<void> {
  await Promise.all(state.nodes.map((n) => stopNode(state, n, opts)));
  await stopSwitch(switchPaths(clusterPaths(state.name).dir));
}

/** Why a VM that nobody stopped has ended, from the last lines its console shows. */
async function crashReason(dir: string): Promise<string> {
  const tail = await consoleTail(dir, 40);
  const fatal = tail.split("\n").reverse().find((l) => l.includes("resin: FATAL:"));
  if (fatal) return fatal.slice(fatal.indexOf("FATAL:") + 7).trim();
  if (/reboot: Power down|reboot: System halted/.test(tail)) return "the guest powered itself off";
  if (/Kernel panic/.test(tail)) return `kernel panic: ${tail.split("\n").find((l) => l.includes("Kernel panic"))?.trim()}`;
  return "the QEMU process ended without a guest shutdown (killed, or QEMU failed)";
}

export async function vmState(cluster: string, node: NodeState): Promise<{ state: VmState; pid?: number; reason?: string }> {
  const files = nodeFiles(cluster, node.name);
  const pid = await vmPid(files.dir);
  if (pid) return { state: "running", pid };
  if (existsSync(files.stoppedMarker) || !existsSync(files.startedMarker)) return { state: "stopped" };
  return { state: "crashed", reason: await crashReason(files.dir) };
}

export async function anythingRunning(state: ClusterState): Promise<boolean> {
  if (await switchRunning(switchPaths(clusterPaths(state.name).dir))) return true;
  for (const node of state.nodes) if ((await vmState(state.name, node)).state === "running") return true;
  return false;
}
