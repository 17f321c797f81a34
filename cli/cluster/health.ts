// Wait until a freshly started cluster has elected a leader that every node agrees
// on, reporting progress and failing fast (with the console log) if a VM dies.
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { sleep } from "../util/time.js";
import { nodeFiles, vmState } from "../provider/qemu/provider.js";
import { consoleTail, vmPaths } from "../provider/qemu/vm.js";
import { autopilotHealth, consulEndpoint, consulView, hasQuorum, type ConsulAccess, type ConsulView } from "./consul.js";
import type { ClusterState } from "./state.js";

export function describeView(v: ConsulView): string {
  if (v.error) return v.error;
  if (!v.leader) return `no leader yet, ${v.peers?.length ?? 0} peers`;
  return `leader ${v.leader.replace(/:\d+$/, "")}, ${v.peers?.length ?? 0} peers`;
}

/**
 * Ready means: every node agrees on one leader with all servers as raft peers (quorum),
 * and then Consul's autopilot calls every server healthy (stable, caught up).
 */
export async function waitForQuorum(
  state: ClusterState,
  opts: { timeoutMs: number; log: Log; access?: ConsulAccess; consulServers?: number },
): Promise<{ seconds: number; quorumSeconds: number; leader: string }> {
  const started = Date.now();
  let quorumSeconds: number | undefined;
  const servers = state.nodes.filter((n) => consulEndpoint(n)); // every node with a Consul agent
  let lastReport = "";
  let lastReportAt = 0;
  for (;;) {
    for (const node of state.nodes) {
      if ((await vmState(state.name, node)).state !== "running") {
        const dir = nodeFiles(state.name, node.name).dir;
        throw new ResinError(
          `node ${node.name} stopped while the cluster was starting. Last console lines:\n${await consoleTail(dir)}`,
          `full console log: ${vmPaths(dir).console}`,
        );
      }
    }
    const views = await Promise.all(servers.map((n) => consulView(consulEndpoint(n, opts.access)!)));
    const seconds = (Date.now() - started) / 1000;
    let report = servers.map((n, i) => `${n.name}: ${describeView(views[i]!)}`).join("; ");
    // Every agent, server or client, names the leader and sees the servers as raft peers.
    if (hasQuorum(views, opts.consulServers ?? servers.length)) {
      quorumSeconds ??= seconds;
      const autopilot = await autopilotHealth(consulEndpoint(servers[0]!, opts.access)!);
      if (autopilot?.healthy) return { seconds, quorumSeconds, leader: views[0]!.leader! };
      report = `quorum after ${quorumSeconds.toFixed(1)}s, waiting for autopilot to call every server healthy`;
    }
    if (report !== lastReport || Date.now() - lastReportAt > 15_000) {
      opts.log(`  [${seconds.toFixed(0).padStart(3)}s] ${report}`);
      lastReport = report;
      lastReportAt = Date.now();
    }
    if (Date.now() - started > opts.timeoutMs) {
      const logs = state.nodes.map((n) => `  ${vmPaths(nodeFiles(state.name, n.name).dir).console}`).join("\n");
      throw new ResinError(`no Consul quorum after ${opts.timeoutMs / 1000}s (${report})`, `console logs:\n${logs}`);
    }
    await sleep(1000);
  }
}
