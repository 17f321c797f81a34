// Resin under change, through the CLI as a user runs it: a fresh three-node consul-server
// cluster loses its leader's VM to SIGKILL (time until a new leader accepts a write,
// acknowledged writes lost), comes back whole (`resin start`), and is then upgraded to
// another image set (`resin upgrade`) while a writer keeps writing (total time, the
// longest window without a leader, acknowledged writes lost).
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { consulKeys, agentAccess, consulView, type ConsulEndpoint } from "../cli/cluster/consul.js";
import type { Secrets } from "../cli/bootstrap/secrets.js";
import { readPid } from "../cli/provider/qemu/process.js";
import { failoverUnderWrites, lostWrites, startLoad } from "./consul-load.js";
import { log, onCleanup, resin, rmDirNow } from "./util.js";
import { overrideStock, userProject } from "./project.js";
import { scratchCluster } from "./resin-side.js";

export interface ResilienceRun {
  /** SIGKILL of the leader's VM → the first write a new leader accepted. */
  leaderFailoverSeconds: number;
  /** Acknowledged before the kill, missing after. */
  failoverLostWrites: number;
  /** `resin upgrade` of all three nodes, wall time. */
  upgradeSeconds: number;
  upgradeLongestLeaderlessSeconds: number;
  /** The longest time between two acknowledged writes during the upgrade. */
  upgradeLongestWriteGapSeconds: number;
  upgradeLostWrites: number;
  upgradeAckedWrites: number;
  upgradeRefusedWrites: number;
  /** Per node, as `resin upgrade` reported it: seconds, and where they went. */
  upgradeNodeSeconds: Record<string, number>;
  upgradeNodePhases: Record<string, string>;
}

interface NodeView {
  name: string;
  address: string;
  ports: Record<string, number>;
}

async function clusterNodes(stateHome: string, name: string): Promise<{ nodes: NodeView[]; endpoint: (n: NodeView) => ConsulEndpoint }> {
  const dir = join(stateHome, "clusters", name);
  const state = JSON.parse(await readFile(join(dir, "cluster.json"), "utf8")) as { nodes: NodeView[]; datacenter: string };
  const keys = consulKeys(JSON.parse(await readFile(join(dir, "secrets.json"), "utf8")) as Secrets, state.datacenter);
  // Each node with what it may have: a server the management token, a client agent its own.
  return { nodes: state.nodes, endpoint: (n) => ({ port: n.ports["consul.https"]!, ...agentAccess(keys, n.name) }) };
}

/** An image set whose consul-server differs from the repository's by one setting (Consul's log level). */
export async function upgradeImageSet(keepOnFailure: boolean): Promise<{ dir: string; digest: string }> {
  const project = userProject("resin-bench-upgrade-set-");
  onCleanup(`upgrade image set ${project}`, () => {
    if (!keepOnFailure) rmDirNow(project);
  });
  // A user's project (stock specs beneath it) whose own consul-server replaces the stock one.
  overrideStock(project, "machines/consul-server.yml");
  const role = join(project, "machines", "consul-server.yml");
  const text = await readFile(role, "utf8");
  if (!text.includes("    server: true\n")) throw new Error("machines/consul-server.yml no longer sets `server: true` under config.consul: update bench/resilience.ts");
  await writeFile(role, text.replace("    server: true\n", "    server: true\n    log_level: DEBUG\n"));
  await resin(["build", "consul-server", "--channel", "debian", "--offline"], { RESIN_PROJECT: project });
  const dir = join(project, "out", "images", "debian");
  const digest = (JSON.parse(await readFile(join(dir, "consul-server", "manifest.json"), "utf8")) as { digest: string }).digest;
  return { dir, digest };
}

export async function measureResilience(opts: { name: string; timeoutS: number; imageSet: string; keepOnFailure: boolean }): Promise<ResilienceRun> {
  const { stateHome, env, release, failed } = scratchCluster(opts.name, "resin-bench-resilience-", opts.keepOnFailure);
  try {
    await resin(["up", "--name", opts.name, "--nodes", "3", "--role", "consul-server", "--channel", "debian", "--timeout", String(opts.timeoutS)], env);
    const { nodes, endpoint } = await clusterNodes(stateHome, opts.name);
    const all = () => nodes.map(endpoint);

    // ---- failover: SIGKILL the leader's VM while three clients on each survivor write
    // (the same run as test/e2e/faults.test.ts).
    const leaderAddress = (await consulView(endpoint(nodes[0]!))).leader;
    const leader = nodes.find((n) => leaderAddress?.startsWith(`${n.address}:`));
    if (!leader) throw new Error(`no leader to kill (node 1 names ${leaderAddress ?? "none"})`);
    const pid = await readPid(join(stateHome, "clusters", opts.name, "nodes", leader.name, "qemu.pid"));
    if (!pid) throw new Error(`no QEMU pid for ${leader.name}`);
    const survivors = nodes.filter((n) => n !== leader).map(endpoint);
    const failover = await failoverUnderWrites({ survivors, clientsPerNode: 3, prefix: "bench/failover", kill: () => process.kill(pid, "SIGKILL"), timeoutMs: opts.timeoutS * 1000 });
    const leaderFailoverSeconds = failover.failoverSeconds;
    const failoverLostWrites = (await lostWrites(survivors[0]!, failover.acked)).length;
    log(
      `  failover: leader ${leader.name} SIGKILLed under 6 writing clients (${failover.straddling} writes sent before the kill acknowledged after it), a new leader accepted a write after ${leaderFailoverSeconds.toFixed(1)}s; ` +
        `longest between acknowledged writes ${failover.longestWriteGapSeconds.toFixed(1)}s; ${failoverLostWrites} of ${failover.acked.size} acknowledged writes lost`,
    );
    await resin(["start", leader.name, "--name", opts.name], env);
    await waitHealthy(env, opts.name, opts.timeoutS);

    // ---- rolling upgrade under writes.
    const load = startLoad(all, "bench/upgrade");
    const upgrade = await resin(["upgrade", "--name", opts.name, "--image-set", opts.imageSet], env);
    await new Promise((r) => setTimeout(r, 2000));
    const result = await load.stop();
    const upgradeLostWrites = (await lostWrites(endpoint(nodes[0]!), result.acked)).length;
    const reported = [...upgrade.stderr.matchAll(/^\s+(\S+): healthy on the new image after ([\d.]+)s(?: \((.*)\))?$/gm)];
    const upgradeNodeSeconds = Object.fromEntries(reported.map((m) => [m[1]!, Number(m[2])]));
    const upgradeNodePhases = Object.fromEntries(reported.map((m) => [m[1]!, m[3] ?? ""]));
    for (const [n, p] of Object.entries(upgradeNodePhases)) log(`    ${n}: ${p}`);
    log(
      `  upgrade: ${upgrade.seconds.toFixed(1)}s for 3 nodes (${Object.entries(upgradeNodeSeconds).map(([n, s]) => `${n} ${s}s`).join(", ")}); ` +
        `longest without a leader ${result.longestLeaderlessSeconds.toFixed(1)}s, between acknowledged writes ${result.longestWriteGapSeconds.toFixed(1)}s; writes acknowledged ${result.acked.size}, refused ${result.refused}, lost ${upgradeLostWrites}`,
    );
    await release();
    return {
      leaderFailoverSeconds,
      failoverLostWrites,
      upgradeSeconds: upgrade.seconds,
      upgradeLongestLeaderlessSeconds: result.longestLeaderlessSeconds,
      upgradeLongestWriteGapSeconds: result.longestWriteGapSeconds,
      upgradeLostWrites,
      upgradeAckedWrites: result.acked.size,
      upgradeRefusedWrites: result.refused,
      upgradeNodeSeconds,
      upgradeNodePhases,
    };
  } catch (e) {
    failed();
    if (opts.keepOnFailure) log(`BENCH_KEEP: the resilience cluster's files stay in ${stateHome}`);
    throw e;
  }
}

/**
 * `resin status` exits 0 once every node runs, all agree on a leader and autopilot is
 * healthy; the upgrade is measured from a cluster that can also lose a server again
 * (failure tolerance 1), so that its first gate does not time the recovery from the kill.
 */
async function waitHealthy(env: Record<string, string>, name: string, timeoutS: number): Promise<void> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const s = await resin(["status", "--name", name, "--json"], env, { allowFail: true });
    const tolerance = s.code === 0 ? (JSON.parse(s.stdout) as { failureTolerance: number | null }).failureTolerance : null;
    if (tolerance !== null && tolerance >= 1) return;
    if (Date.now() > deadline) throw new Error(`cluster ${name} not healthy with a failure tolerance of 1, ${timeoutS}s after the killed leader was started again:\n${s.stdout}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
