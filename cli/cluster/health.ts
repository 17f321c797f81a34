// Wait until a freshly started cluster has elected a leader that every node agrees
// on, reporting progress and failing fast (with the console log) if a VM dies.
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { sleep } from "../util/time.js";
import type { Accel, Machines } from "../provider/machine.js";
import { localMachines } from "../provider/local.js";
import { autopilotHealth, consulEndpoint, consulView, hasQuorum, isConsulServer, type ConsulKeys, type ConsulView } from "./consul.js";
import { type ClusterHandle, type ClusterState } from "../state/state.js";

export function describeView(v: ConsulView): string {
  if (v.error) return v.error;
  if (!v.leader) return `no leader yet, ${v.peers?.length ?? 0} peers`;
  return `leader ${v.leader.replace(/:\d+$/, "")}, ${v.peers?.length ?? 0} peers`;
}

/** Nodes just started, whose consoles must print something within `afterMs`. */
export interface SilentWatch {
  nodes: string[];
  accel: Accel;
  afterMs: number;
}

/** How long a freshly started guest may print nothing: KVM boots in a second, TCG on a busy host takes longer. */
export const silentAfterMs = (accel: Accel): number => (accel === "kvm" ? 20_000 : 60_000);

/**
 * A guest that prints nothing at all is not running its kernel: under KVM that is the
 * accelerator (seen: Linux hangs before its first line on a host whose KVM runs a boot
 * sector). Say so by name now instead of waiting out the whole timeout.
 */
async function checkSilent(cluster: ClusterHandle, watch: SilentWatch, elapsedMs: number, machines: Machines): Promise<void> {
  if (elapsedMs < watch.afterMs) return;
  for (const name of watch.nodes) {
    if ((await machines.consoleBytes(cluster, name)) > 0) continue;
    const forced = process.env.RESIN_ACCEL !== undefined;
    if (watch.accel === "kvm" && !forced) await machines.forgetAccel(); // the next run probes again
    throw new ResinError(
      `node ${name} has printed nothing on its console in ${Math.round(elapsedMs / 1000)}s: its guest is not running (accelerator ${watch.accel}${forced ? ", forced by RESIN_ACCEL" : ""})`,
      watch.accel === "kvm"
        ? `the likely cause is KVM on this host; use TCG:   RESIN_ACCEL=tcg resin up --name ${cluster.name}`
        : `QEMU may be stuck or the host overloaded; see ${machines.logFiles(cluster, name).stderr} and ${machines.logFiles(cluster, name).console}`,
    );
  }
}

/**
 * Ready means: every node agrees on one leader with all servers as raft peers (quorum),
 * and then Consul's autopilot calls every server healthy (stable, caught up).
 */
export async function waitForQuorum(
  state: ClusterState,
  opts: { timeoutMs: number; log: Log; keys?: ConsulKeys; consulServers?: number; silent?: SilentWatch; machines?: Machines; cluster: ClusterHandle },
): Promise<{ seconds: number; quorumSeconds: number; leader: string }> {
  const machines = opts.machines ?? localMachines();
  const { cluster } = opts;
  const started = Date.now();
  let quorumSeconds: number | undefined;
  const servers = state.nodes.filter((n) => consulEndpoint(n)); // every node with a Consul agent
  let lastReport = "";
  let lastReportAt = 0;
  for (;;) {
    for (const node of state.nodes) {
      if ((await machines.status(cluster, node)).state !== "running") {
        throw new ResinError(
          `node ${node.name} stopped while the cluster was starting. Last console lines:\n${await machines.consoleTail(cluster, node.name)}`,
          `full console log: ${machines.logFiles(cluster, node.name).console}`,
        );
      }
    }
    if (opts.silent) await checkSilent(cluster, opts.silent, Date.now() - started, machines);
    // Each agent with what it may have: a server the management token, a client agent its own.
    const endpoints = servers.map((n) => consulEndpoint(n, opts.keys)!);
    const views = await Promise.all(endpoints.map((ep) => consulView(ep)));
    const seconds = (Date.now() - started) / 1000;
    let report = servers.map((n, i) => `${n.name}: ${describeView(views[i]!)}`).join("; ");
    // Every agent, server or client, names the leader and sees the servers as raft peers.
    if (hasQuorum(views, opts.consulServers ?? servers.length)) {
      quorumSeconds ??= seconds;
      // Autopilot answers to the management token: asked of a server only.
      const server = endpoints.find(isConsulServer);
      const autopilot = server ? await autopilotHealth(server) : undefined;
      if (autopilot?.healthy) return { seconds, quorumSeconds, leader: views[0]!.leader! };
      report = `quorum after ${quorumSeconds.toFixed(1)}s, waiting for autopilot to call every server healthy`;
    }
    if (report !== lastReport || Date.now() - lastReportAt > 15_000) {
      opts.log(`  [${seconds.toFixed(0).padStart(3)}s] ${report}`);
      lastReport = report;
      lastReportAt = Date.now();
    }
    if (Date.now() - started > opts.timeoutMs) {
      const logs = state.nodes.map((n) => `  ${machines.logFiles(cluster, n.name).console}`).join("\n");
      throw new ResinError(`no Consul quorum after ${opts.timeoutMs / 1000}s (${report})`, `console logs:\n${logs}`);
    }
    // Twice a second: quorum is seen within half a second of coming (the bench times it).
    await sleep(500);
  }
}
