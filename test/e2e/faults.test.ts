// Fault tolerance with real Consul 1.8.7 on three QEMU nodes: the leader's VM is
// SIGKILLed, a follower is lost while writes go on, the cluster is stopped and started,
// and a Consul process is killed inside a node. Each step prints what it measured.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { writeIso9660 } from "../../cli/image/iso9660.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { kvGet, kvKeys, kvPut, type ConsulEndpoint } from "../../cli/cluster/consul.js";
import { guestSv } from "../../cli/cluster/guest.js";
import { statusToken } from "../../cli/bootstrap/node-secrets.js";
import type { ClusterStatus } from "../../cli/commands/status.js";
import { clusterJson, consulAt, consulServerClusterForSuite, keepLogsOnFailure, processesUnder, resin, resinAsync, resinStatus, until } from "./helpers.js";
import { failoverUnderWrites, lostWrites } from "../../bench/consul-load.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-faults-"));
keepLogsOnFailure(stateHome, "faults");
const env = { RESIN_STATE_HOME: stateHome };
const name = "faults";

/** Keys whose write Consul acknowledged; every one must survive every fault. */
const acked = new Map<string, string>();


function consulOf(node: string): ConsulEndpoint {
  return consulAt(stateHome, name, node);
}

function nodeByAddress(s: ClusterStatus, leader: string): string {
  return s.nodes.find((n) => leader.startsWith(`${n.address}:`))!.name;
}

function qemuPid(node: string): number {
  return Number(readFileSync(join(stateHome, "clusters", name, "nodes", node, "qemu.pid"), "utf8"));
}

/** Write keys like a careful client: retry each until Consul acknowledges it, and count refusals. */
async function writeKeys(prefix: string, count: number, via: string[]): Promise<number> {
  let refused = 0;
  for (let i = 0; i < count; i++) {
    const key = `${prefix}/${String(i).padStart(4, "0")}`;
    const value = `${key}@${Date.now()}`;
    await until(`an acknowledged write of ${key}`, 60_000, async () => {
      try {
        await kvPut(consulOf(via[(i + refused) % via.length]!), key, value);
        return true;
      } catch (e) {
        refused++;
        throw e;
      }
    });
    acked.set(key, value);
  }
  return refused;
}

async function healthy(): Promise<void> {
  await until("the cluster to be healthy with failure tolerance 1", 180_000, async () => {
    const s = resinStatus(stateHome, name);
    return s.healthy && s.failureTolerance === 1 ? true : undefined;
  });
}

/** Acknowledged keys that a consistent read through `node` cannot find (must be none). */
async function lostKeys(node: string): Promise<string[]> {
  const lost: string[] = [];
  for (const [key, value] of acked) if ((await kvGet(consulOf(node), key)) !== value) lost.push(key);
  return lost;
}


function report(line: string): void {
  process.stderr.write(`faults: ${line}\n`);
}

describe("fault tolerance of a three-node Consul cluster", () => {
  consulServerClusterForSuite(name, stateHome, env);

  it("status --json follows the documented schema", async () => {
    await healthy();
    // resinStatus parses the output with StatusSchema; the node's own endpoint may need a
    // moment after boot, so wait until every node has answered it once.
    const s = await until("every node's status endpoint to answer", 120_000, async () => {
      const now = resinStatus(stateHome, name);
      return now.nodes.every((n) => n.boot === "ready") ? now : undefined;
    });
    expect(s.failureTolerance).toBe(1);
    for (const n of s.nodes) {
      expect(n.vm.state).toBe("running");
      expect(n.vm.pid).toBeGreaterThan(0);
      expect(n.services?.find((x) => x.name === "consul")?.state).toBe("up");
      expect(n.consul?.peers).toHaveLength(3);
      expect(Object.keys(n.ports).sort()).toEqual(["base.status", "consul.dns", "consul.https"]);
      // The boot timeline: every step, in the order boot takes them, at rising uptimes.
      const steps = ["kernel", "initramfs-modules", "verity", "root", "stage1", "modules", "metadata", "network", "persist", "stage2", "consul", "agent", "leader"];
      const timeline = n.timeline ?? [];
      expect(timeline.map((t) => t.step), `${n.name}: ${JSON.stringify(timeline)}`).toEqual(steps);
      const uptimes = timeline.map((t) => t.uptimeSeconds);
      expect(uptimes, `${n.name}: ${JSON.stringify(timeline)}`).toEqual([...uptimes].sort((a, b) => a - b));
      expect(uptimes[0]).toBeGreaterThan(0);
      // Before the timeline: QEMU's start, firmware and unpacking the kernel, as the host
      // measured it (positive, and far less than the node's whole life so far).
      expect(n.launchToKernelSeconds, n.name).toBeGreaterThan(0);
      expect(n.launchToKernelSeconds!, n.name).toBeLessThan(120);
    }
  });

  it("survives SIGKILL of the leader's VM with writes in flight, losing no acknowledged write", async () => {
    await healthy();
    const before = resinStatus(stateHome, name);
    const leader = nodeByAddress(before, before.leader!);
    const survivors = before.nodes.map((n) => n.name).filter((n) => n !== leader);

    // Three clients on each survivor write back to back (their writes are forwarded to
    // the leader) while the leader's VM is SIGKILLed, and until every client has written
    // through the new leader.
    const run = await failoverUnderWrites({ survivors: survivors.map(consulOf), clientsPerNode: 3, prefix: "faults/leader", kill: () => process.kill(qemuPid(leader), "SIGKILL"), timeoutMs: 120_000 });
    for (const [key, value] of run.acked) acked.set(key, value);
    const lost = await lostWrites(consulOf(survivors[0]!), run.acked);
    report(
      `leader ${leader} SIGKILLed under 6 writing clients: a new leader served writes after ${run.failoverSeconds.toFixed(1)}s; ` +
        `longest between acknowledged writes ${run.longestWriteGapSeconds.toFixed(1)}s; acknowledged ${run.acked.size} (${run.straddling} sent before the kill and acknowledged after it), unacknowledged ${run.unacknowledged}, lost ${lost.length}`,
    );
    expect(lost).toEqual([]);
    // Every client was writing at the kill (the writers never pause) and wrote through the
    // new leader after it (failoverUnderWrites waits for that): what is claimed is that no
    // acknowledged write, straddling the kill or not, went missing. How many straddled is
    // reported above, not asserted: a write in flight at the kill may be refused instead.
    // A hang guard, not a speed claim (the bench measures it: a few seconds): Consul's
    // election under TCG on a loaded 2-core machine stays far inside a minute.
    expect(run.failoverSeconds).toBeLessThan(60);

    const crashed = resinStatus(stateHome, name).nodes.find((n) => n.name === leader)!;
    expect(crashed.vm.state).toBe("crashed");
    expect(crashed.vm.reason).toContain("without a guest shutdown");

    const restartedAt = Date.now();
    expect((await resinAsync(["start", leader, "--name", name], env)).status).toBe(0);
    await until(`${leader} to rejoin with 3 raft peers`, 240_000, async () => {
      const n = resinStatus(stateHome, name).nodes.find((x) => x.name === leader)!;
      return n.consul?.peers?.length === 3 && n.consul.leader ? true : undefined;
    });
    // A stale read answers from the node's own copy: it has every key once it caught up.
    await until(`${leader} to hold every acknowledged key`, 60_000, async () => {
      const held = new Set(await kvKeys(consulOf(leader), "faults/leader/", { stale: true }));
      return [...run.acked.keys()].every((k) => held.has(k)) ? true : undefined;
    });
    report(`${leader} rejoined with its data ${((Date.now() - restartedAt) / 1000).toFixed(1)}s after resin start`);
  });

  it("a follower lost during writes catches up when it comes back", async () => {
    await healthy();
    const before = resinStatus(stateHome, name);
    const follower = before.nodes.find((n) => !before.leader!.startsWith(`${n.address}:`))!.name;
    const others = before.nodes.map((n) => n.name).filter((n) => n !== follower);
    process.kill(qemuPid(follower), "SIGKILL");
    const refused = await writeKeys("faults/follower", 50, others);
    expect(await lostKeys(others[0]!)).toEqual([]);

    const startedAt = Date.now();
    expect((await resinAsync(["start", follower, "--name", name], env)).status).toBe(0);
    await until(`${follower} to catch up`, 240_000, async () => ((await kvKeys(consulOf(follower), "faults/follower", { stale: true })).length === 50 ? true : undefined));
    report(`follower ${follower} caught up on 50 writes made while it was down (${refused} refused and retried), ${((Date.now() - startedAt) / 1000).toFixed(1)}s after resin start`);
  });

  it("down and up bring back every key", async () => {
    expect((await resinAsync(["down", "--name", name], env)).status).toBe(0);
    expect(processesUnder(stateHome)).toEqual([]);
    const startedAt = Date.now();
    const r = await resinAsync(["up", "--name", name, "--timeout", "420"], env);
    if (r.status !== 0) throw new Error(`resin up (restart) failed:\n${r.stderr}`);
    const lost = await lostKeys("faults-2");
    report(`down/up: ready again after ${((Date.now() - startedAt) / 1000).toFixed(1)}s; acknowledged keys lost: ${lost.length} of ${acked.size}`);
    expect(lost).toEqual([]);
  });

  it("runit restarts a Consul process killed inside a node, and status shows it", async () => {
    await healthy();
    const node = "faults-3";
    const port = clusterJson(stateHome, name).nodes.find((n) => n.name === node)!.ports["base.status"]!;
    const before = resinStatus(stateHome, name).nodes.find((n) => n.name === node)!.services!.find((s) => s.name === "consul")!;
    await guestSv(port, statusToken(JSON.parse(readFileSync(join(stateHome, "clusters", name, "secrets.json"), "utf8")), node), "consul", "kill");
    const after = await until("consul to be up again with one more restart", 60_000, async () => {
      const consul = resinStatus(stateHome, name).nodes.find((n) => n.name === node)?.services?.find((s) => s.name === "consul");
      return consul && consul.state === "up" && consul.restarts === before.restarts + 1 ? consul : undefined;
    });
    expect(after.pid).not.toBe(before.pid);
    await until("the cluster to be healthy again", 120_000, async () => (resinStatus(stateHome, name).healthy ? true : undefined));
    report(`consul killed on ${node}: runit restarted it (restarts ${before.restarts} → ${after.restarts}), cluster healthy again`);
  });

  it("a node whose metadata is malformed says so on its console and in status, instead of hanging", async () => {
    const node = "faults-2";
    expect((await resinAsync(["stop", node, "--name", name], env)).status).toBe(0);
    // Replace its config drive with one whose user-data is not valid JSON.
    const drive = join(stateHome, "clusters", name, "nodes", node, "cidata.iso");
    writeFileSync(drive, writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: Buffer.from('{"hostname": {"content": "faults-2"') }] }));
    expect((await resinAsync(["start", node, "--name", name], env)).status).toBe(0);
    const crashed = await until(`${node} to report its bad metadata`, 120_000, async () => {
      const vm = resinStatus(stateHome, name).nodes.find((n) => n.name === node)!.vm;
      return vm.state === "crashed" ? vm : undefined;
    });
    report(`${node} with malformed metadata: ${crashed.reason}`);
    expect(crashed.reason).toContain("is malformed");
    const logs = resin(["logs", node, "--name", name], env);
    expect(logs.status, logs.stderr).toBe(0);
    expect(logs.stdout).toContain("metadata: ");
  });
});
