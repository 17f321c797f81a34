// The local QEMU provider: start and stop a whole cluster recorded in a state
// directory — one vde switch, one VM per node — and tell which VMs are running.
import { join } from "node:path";
import { mkdir } from "node:fs/promises";
import { clusterPaths, imageDirFor, type ClusterState, type NodeState } from "../../cluster/state.js";
import type { Log } from "../../util/log.js";
import { chooseAccel, type Accel } from "./accel.js";
import { freeLoopbackPort } from "./ports.js";
import { startSwitch, stopSwitch, switchPaths, switchRunning } from "./vde.js";
import { KERNEL_APPEND, startVm, stopVm, vmPid, type VmSpec } from "./vm.js";

export type VmState = "running" | "stopped";

export function nodeFiles(cluster: string, node: string) {
  const dir = clusterPaths(cluster).node(node);
  return { dir, configDrive: join(dir, "cidata.iso"), persistDisk: join(dir, "persist.qcow2") };
}

/** Guest ports to forward: every port a node's services declare, named "<service>.<port>". */
export type GuestPorts = Record<string, number>;

export async function startCluster(state: ClusterState, guestPorts: Map<string, GuestPorts>, log: Log): Promise<{ accel: Accel }> {
  const accel = await chooseAccel();
  log(`  accelerator: ${accel}${accel === "tcg" ? " (KVM is absent or did not pass the probe)" : ""}`);
  const sw = switchPaths(clusterPaths(state.name).dir);
  await startSwitch(sw);
  try {
    for (const node of state.nodes) {
      const files = nodeFiles(state.name, node.name);
      await mkdir(files.dir, { recursive: true });
      const image = imageDirFor(state.name, node.image);
      const ports: Record<string, number> = {};
      const forwards: VmSpec["forwards"] = [];
      for (const [key, guestPort] of Object.entries(guestPorts.get(node.name) ?? {})) {
        const hostPort = await freeLoopbackPort();
        ports[key] = hostPort;
        forwards.push({ hostPort, guestPort });
      }
      node.ports = ports;
      const pid = await startVm({
        name: node.name,
        dir: files.dir,
        kernel: join(image, "vmlinuz"),
        initrd: join(image, "initrd.img"),
        rootDisk: join(image, "rootfs.squashfs"),
        append: KERNEL_APPEND,
        memoryMib: node.memoryMib,
        cpus: node.cpus,
        accel,
        switchSocket: sw.socket,
        clusterMac: node.clusterMac,
        hostMac: node.hostMac,
        forwards,
        configDrive: files.configDrive,
        persistDisk: files.persistDisk,
      });
      log(`  started ${node.name} (${node.address}, pid ${pid}, ${Object.entries(ports).map(([k, p]) => `${k} → 127.0.0.1:${p}`).join(", ")})`);
    }
  } catch (e) {
    await stopCluster(state, { graceMs: 0 });
    throw e;
  }
  return { accel };
}

/** Stop every VM (cleanly when graceMs > 0) and then the switch. */
export async function stopCluster(state: ClusterState, opts: { graceMs?: number } = {}): Promise<void> {
  await Promise.all(state.nodes.map((n) => stopVm(nodeFiles(state.name, n.name).dir, opts)));
  await stopSwitch(switchPaths(clusterPaths(state.name).dir));
}

export async function vmState(cluster: string, node: NodeState): Promise<{ state: VmState; pid?: number }> {
  const pid = await vmPid(nodeFiles(cluster, node.name).dir);
  return pid ? { state: "running", pid } : { state: "stopped" };
}

export async function anythingRunning(state: ClusterState): Promise<boolean> {
  if (await switchRunning(switchPaths(clusterPaths(state.name).dir))) return true;
  for (const node of state.nodes) if ((await vmState(state.name, node)).state === "running") return true;
  return false;
}
