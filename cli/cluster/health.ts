// Wait until a freshly started cluster has elected a leader that every node agrees
// on, reporting progress and failing fast (with the console log) if a VM dies.
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { nodeFiles, vmState } from "../provider/qemu/provider.js";
import { consoleTail, vmPaths } from "../provider/qemu/vm.js";
import { consulView, hasQuorum, type ConsulView } from "./consul.js";
import type { ClusterState } from "./state.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeView(v: ConsulView): string {
  if (v.error) return v.error;
  if (!v.leader) return `no leader yet, ${v.peers?.length ?? 0} peers`;
  return `leader ${v.leader.replace(/:\d+$/, "")}, ${v.peers?.length ?? 0} peers`;
}

export async function waitForQuorum(state: ClusterState, opts: { timeoutMs: number; log: Log }): Promise<{ seconds: number; leader: string }> {
  const started = Date.now();
  const servers = state.nodes.filter((n) => n.ports["consul.http"]);
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
    const views = await Promise.all(servers.map((n) => consulView(n.ports["consul.http"]!)));
    const seconds = (Date.now() - started) / 1000;
    if (hasQuorum(views, servers.length)) return { seconds, leader: views[0]!.leader! };
    const report = servers.map((n, i) => `${n.name}: ${describeView(views[i]!)}`).join("; ");
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
