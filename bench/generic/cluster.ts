// Boot the generic image as a three-node cluster that differs from the Resin cluster
// only in its image: the same node plan, secrets and per-node config drives (copied
// from the Resin cluster's state directory), the same QEMU command line (qemuArgs from
// cli/provider/qemu/vm.ts), the same vde switch, and quorum measured by the same code
// (waitForQuorum from cli/cluster/health.ts) over the same HTTPS API with the same access.
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSecrets } from "../../cli/bootstrap/secrets.js";
import { finishCluster, localTargets } from "../../cli/cluster/bootstrap.js";
import { consulKeys } from "../../cli/cluster/consul.js";
import { waitForQuorum } from "../../cli/cluster/health.js";
import { ClusterStateSchema, clusterHandle, type ClusterState } from "../../cli/state/state.js";
import type { Accel } from "../../cli/provider/qemu/accel.js";
import { freeLoopbackPort } from "../../cli/provider/qemu/ports.js";
import { startSwitch, switchPaths } from "../../cli/provider/qemu/vde.js";
import { createPersistDisk, KERNEL_APPEND, qemuArgs, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { benchVmsCleanup, launchVm, log, onCleanup, rmDirNow, run, showConsoles, vmMemory, type VmMemory } from "../util.js";
import type { GenericImage } from "./image.js";

export interface GenericBoot {
  quorumSeconds: number;
  healthySeconds: number;
  memory: VmMemory[];
}

/** The generic root is a normal read-write disk; everything else is Resin's command line. */
export const GENERIC_APPEND = `${KERNEL_APPEND} root=/dev/vda rw`;

/**
 * Resin's qemuArgs with one change: the root drive is the node's own writable qcow2
 * overlay of the generic ext4 disk instead of Resin's shared read-only squashfs.
 */
export function genericQemuArgs(spec: VmSpec): string[] {
  let patched = 0;
  const args = qemuArgs(spec).map((a) => {
    if (!a.startsWith("if=none,id=root,") || !a.endsWith(",format=raw,readonly=on")) return a;
    patched++;
    return a.replace(/,format=raw,readonly=on$/, ",format=qcow2");
  });
  if (patched !== 1) throw new Error("qemuArgs no longer has the root drive the bench expects (if=none,id=root,…,format=raw,readonly=on): update bench/generic/cluster.ts");
  return args;
}

export async function bootGenericCluster(opts: {
  /** RESIN_STATE_HOME of the Resin cluster whose plan, secrets and config drives are reused. */
  resinStateHome: string;
  name: string;
  image: GenericImage;
  accel: Accel;
  /** Guest ports to forward, named as Resin names them ("consul.https" → 8501). */
  guestPorts: Record<string, number>;
  persistGib: number;
  timeoutMs: number;
  keepOnFailure: boolean;
}): Promise<GenericBoot> {
  const resinDir = join(opts.resinStateHome, "clusters", opts.name);
  const resinState = ClusterStateSchema.parse(JSON.parse(await readFile(join(resinDir, "cluster.json"), "utf8")));
  const secrets = await readSecrets(join(resinDir, "secrets.json"));
  const keys = consulKeys(secrets, resinState.datacenter);

  const home = mkdtempSync(join(tmpdir(), "resin-bench-generic-"));
  let failed = false;
  const removeHome = onCleanup(`remove ${home}`, () => {
    if (!opts.keepOnFailure || !failed) rmDirNow(home);
  });
  // The cluster's handle takes its paths from RESIN_STATE_HOME when it is made, below.
  const previousHome = process.env.RESIN_STATE_HOME;
  process.env.RESIN_STATE_HOME = home;
  const state: ClusterState = { ...resinState, nodes: resinState.nodes.map((n) => ({ ...n, ports: {} })) };
  const cluster = clusterHandle(state.name);
  const sw = switchPaths(cluster.dir);
  const dirs = state.nodes.map((n) => cluster.node(n.name).dir);
  const stopAll = benchVmsCleanup("generic cluster", home, dirs, sw);
  try {
    for (const node of state.nodes) {
      const files = cluster.node(node.name);
      await mkdir(files.dir, { recursive: true, mode: 0o700 });
      await copyFile(join(resinDir, "nodes", node.name, "cidata.iso"), files.configDrive);
      await createPersistDisk(files.persistDisk, opts.persistGib);
      await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", opts.image.rootDisk, "-F", "raw", join(files.dir, "root.qcow2")]);
    }
    await startSwitch(sw);
    const pids: number[] = [];
    for (const node of state.nodes) {
      const files = cluster.node(node.name);
      const forwards = [];
      for (const [key, guestPort] of Object.entries(opts.guestPorts)) {
        const hostPort = await freeLoopbackPort();
        node.ports[key] = hostPort;
        forwards.push({ hostPort, guestPort });
      }
      const spec: VmSpec = {
        name: node.name,
        dir: files.dir,
        kernel: opts.image.kernel,
        initrd: opts.image.initrd,
        rootDisk: join(files.dir, "root.qcow2"),
        append: GENERIC_APPEND,
        memoryMib: node.memoryMib,
        cpus: node.cpus,
        accel: opts.accel,
        switchSocket: sw.socket,
        clusterMac: node.clusterMac,
        hostMac: node.hostMac,
        forwards,
        configDrive: files.configDrive,
        persistDisk: files.persistDisk,
      };
      const pid = await launchVm(`generic node ${node.name}`, files.dir, genericQemuArgs(spec));
      pids.push(pid);
    }
    // From here on it is what `resin up` does after starting its VMs.
    const nodeLog = (m: string) => process.stderr.write(`    | ${m}\n`);
    nodeLog(`generic cluster ${state.name}: waiting for Consul quorum (timeout ${opts.timeoutMs / 1000}s)`);
    const { seconds, quorumSeconds } = await waitForQuorum(state, { timeoutMs: opts.timeoutMs, log: nodeLog, keys, cluster });
    await finishCluster(state, secrets, localTargets(state, keys), nodeLog, cluster);
    nodeLog(`generic cluster ${state.name}: quorum in ${quorumSeconds.toFixed(1)}s, ready (autopilot healthy) in ${seconds.toFixed(1)}s`);
    const memory = state.nodes.map((n, i) => vmMemory(pids[i]!, n.memoryMib));
    await stopAll();
    await removeHome();
    return { quorumSeconds, healthySeconds: seconds, memory };
  } catch (e) {
    failed = true;
    await showConsoles("generic", dirs);
    if (opts.keepOnFailure) log(`BENCH_KEEP: the generic cluster's files stay in ${home}`);
    throw e;
  } finally {
    if (previousHome === undefined) delete process.env.RESIN_STATE_HOME;
    else process.env.RESIN_STATE_HOME = previousHome;
  }
}
