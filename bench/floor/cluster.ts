// Boot the floor (bench/floor/image.ts) as three Consul servers and time launch → quorum
// the way `resin up` times it: Resin's node plan (planCluster), Resin's QEMU command
// line (qemuArgs, minus the disks the floor does not have), the same accelerator, memory
// and CPUs, a vde switch of its own, and waitForQuorum from cli/cluster/health.ts started
// right after the last VM was launched, polling /v1/status/leader and /v1/status/peers
// over plain HTTP through each node's loopback forward.
import { mkdtempSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planCluster, type ClusterPlan, type NodePlan } from "../../cli/bootstrap/plan.js";
import { waitForQuorum, silentAfterMs } from "../../cli/cluster/health.js";
import { clusterHandle, type ClusterState } from "../../cli/state/state.js";
import type { Accel } from "../../cli/provider/qemu/accel.js";
import { freeLoopbackPort } from "../../cli/provider/qemu/ports.js";
import { startSwitch, switchPaths } from "../../cli/provider/qemu/vde.js";
import { KERNEL_APPEND, qemuArgs, vmPaths, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { benchVmsCleanup, launchVm, log, onCleanup, rmDirNow, showConsoles, vmMemory, type VmMemory } from "../util.js";
import { FLOOR_HTTP_PORT, type FloorImage } from "./image.js";

export const FLOOR_CLUSTER = "floor";
export const FLOOR_NODES = 3;

/** The floor's nodes, planned by Resin's planner: names floor-1…3, Resin's subnet and MAC scheme. */
export function floorPlan(nodes = FLOOR_NODES): ClusterPlan {
  return planCluster(FLOOR_CLUSTER, Array.from({ length: nodes }, () => "consul-server"));
}

/** Resin's kernel command line plus what /init (bench/floor/init) reads: this node's facts and its peers. */
export function floorAppend(plan: ClusterPlan, node: NodePlan): string {
  return [
    KERNEL_APPEND,
    `floor.name=${node.name}`,
    `floor.ip=${node.address}/${node.prefix}`,
    `floor.mac=${node.clusterMac}`,
    `floor.hostip=${node.hostAddress}`,
    `floor.hostmac=${node.hostMac}`,
    `floor.join=${plan.nodes.map((n) => n.address).join(",")}`,
  ].join(" ");
}

/**
 * Resin's qemuArgs without the root and persist disks (the floor runs from its
 * initramfs) and without a config drive (none is given). Everything else (machine,
 * accelerator, NICs, forwards, console, QMP, pid file) is Resin's.
 */
export function floorQemuArgs(spec: Omit<VmSpec, "rootDisk" | "persistDisk" | "configDrive" | "metadataService">): string[] {
  const args = qemuArgs({ ...spec, rootDisk: "/floor-has-no-root-disk", persistDisk: "/floor-has-no-persist-disk" });
  const out: string[] = [];
  let dropped = 0;
  for (let i = 0; i < args.length; i++) {
    const [flag, value] = [args[i]!, args[i + 1] ?? ""];
    if ((flag === "-drive" && /^if=none,id=(root|persist),/.test(value)) || (flag === "-device" && /^virtio-blk-pci,drive=(root|persist),/.test(value))) {
      dropped++;
      i++;
      continue;
    }
    out.push(flag);
  }
  if (dropped !== 4 || out.some((a) => a.includes("floor-has-no-"))) {
    throw new Error("qemuArgs no longer has the root and persist drives the bench expects (-drive if=none,id=root|persist + virtio-blk-pci): update bench/floor/cluster.ts");
  }
  return out;
}

/** "floor: t=<uptime> <step>" lines from /init, in order. */
export function parseTimeline(consoleText: string): { step: string; uptime: number }[] {
  return [...consoleText.matchAll(/^floor: t=(\d+(?:\.\d+)?) (.+?)\r?$/gm)].map((m) => ({ step: m[2]!, uptime: Number(m[1]) }));
}

export interface FloorBoot {
  /** From the moment every VM was launched, as `resin up` counts. */
  quorumSeconds: number;
  healthySeconds: number;
  memory: VmMemory[];
  /** Per node, the guest's uptime at each step /init printed. */
  consoleTimeline: { node: string; steps: { step: string; uptime: number }[] }[];
}

export async function bootFloorCluster(opts: {
  image: FloorImage;
  accel: Accel;
  memoryMib: number;
  cpus: number;
  timeoutMs: number;
  keepOnFailure: boolean;
}): Promise<FloorBoot> {
  const plan = floorPlan();
  const home = mkdtempSync(join(tmpdir(), "resin-bench-floor-"));
  let failed = false;
  const removeHome = onCleanup(`remove ${home}`, () => {
    if (!opts.keepOnFailure || !failed) rmDirNow(home);
  });
  // The cluster's handle takes its paths from RESIN_STATE_HOME when it is made, below.
  const previousHome = process.env.RESIN_STATE_HOME;
  process.env.RESIN_STATE_HOME = home;
  // A cluster state just complete enough for waitForQuorum: a plain-HTTP Consul port per node.
  const state: ClusterState = {
    version: 1,
    name: plan.name,
    channel: "debian",
    datacenter: plan.datacenter,
    subnet: plan.subnet,
    network: plan.network,
    nodes: plan.nodes.map((n) => ({ ...n, image: `sha256:${opts.image.initrdSha256}`, memoryMib: opts.memoryMib, cpus: opts.cpus, ports: {} })),
  };
  const cluster = clusterHandle(state.name);
  const sw = switchPaths(cluster.dir);
  const dirs = state.nodes.map((n) => cluster.node(n.name).dir);
  const stopAll = benchVmsCleanup("floor cluster", home, dirs, sw);
  try {
    for (const d of dirs) await mkdir(d, { recursive: true, mode: 0o700 });
    await startSwitch(sw);
    const pids: number[] = [];
    for (const [i, node] of state.nodes.entries()) {
      const files = cluster.node(node.name);
      const hostPort = await freeLoopbackPort();
      node.ports["consul.http"] = hostPort;
      const args = floorQemuArgs({
        name: node.name,
        dir: files.dir,
        kernel: opts.image.kernel,
        initrd: opts.image.initrd,
        append: floorAppend(plan, plan.nodes[i]!),
        memoryMib: node.memoryMib,
        cpus: node.cpus,
        accel: opts.accel,
        switchSocket: sw.socket,
        clusterMac: node.clusterMac,
        hostMac: node.hostMac,
        forwards: [{ hostPort, guestPort: FLOOR_HTTP_PORT }],
      });
      const pid = await launchVm(`floor node ${node.name}`, files.dir, args);
      // What `resin up` records: a VM that ends now has crashed (waitForQuorum says so at once).
      await writeFile(files.startedMarker, `${pid}\n`);
      pids.push(pid);
    }
    // From here on it is what `resin up` does after starting its VMs.
    const nodeLog = (m: string) => process.stderr.write(`    | ${m}\n`);
    nodeLog(`floor cluster: waiting for Consul quorum (timeout ${opts.timeoutMs / 1000}s)`);
    const silent = { nodes: state.nodes.map((n) => n.name), accel: opts.accel, afterMs: silentAfterMs(opts.accel) };
    const { seconds, quorumSeconds } = await waitForQuorum(state, { timeoutMs: opts.timeoutMs, log: nodeLog, consulServers: state.nodes.length, silent, cluster });
    nodeLog(`floor cluster: quorum in ${quorumSeconds.toFixed(1)}s, autopilot healthy in ${seconds.toFixed(1)}s`);
    const memory = state.nodes.map((n, i) => vmMemory(pids[i]!, n.memoryMib));
    const consoleTimeline = await Promise.all(
      dirs.map(async (d, i) => ({ node: state.nodes[i]!.name, steps: parseTimeline(await readFile(vmPaths(d).console, "latin1").catch(() => "")) })),
    );
    for (const t of consoleTimeline) nodeLog(`${t.node}: ${t.steps.map((s) => `${s.step} ${s.uptime.toFixed(2)}s`).join(", ")}`);
    await stopAll();
    await removeHome();
    return { quorumSeconds, healthySeconds: seconds, memory, consoleTimeline };
  } catch (e) {
    failed = true;
    await showConsoles("floor", dirs);
    if (opts.keepOnFailure) log(`BENCH_KEEP: the floor cluster's files stay in ${home}`);
    throw e;
  } finally {
    if (previousHome === undefined) delete process.env.RESIN_STATE_HOME;
    else process.env.RESIN_STATE_HOME = previousHome;
  }
}
