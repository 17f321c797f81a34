// An upgrade across architectures (#23): a three-node amd64 consul-server cluster (the
// suite's shared image set) is upgraded with `resin upgrade --image-set` to the same
// role built for arm64, under a writer loop. Nodes are replaced one at a time, health-
// gated, so between replacements the cluster is mixed: amd64 and arm64 servers in one
// raft. The test pauses the upgrade there (SIGSTOP after the first node's gate), finds the
// mixed cluster healthy, writes through the arm64 server and reads through an amd64 one,
// and lets it go on. It ends all arm64 (qemu-system-aarch64), healthy, with every
// acknowledged write kept.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kvGet, kvPut } from "../../cli/cluster/consul.js";
import { lostWrites, startLoad } from "../../bench/consul-load.js";
import { StatusSchema, type ClusterStatus } from "../../cli/commands/status.js";
import { cliPath, consulAt, keepLogsOnFailure, killLeftovers, repoRoot, resinAsync, resinStatus, until } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-cross-arch-"));
keepLogsOnFailure(stateHome, "cross-arch");
const env = { RESIN_STATE_HOME: stateHome };
const name = "cross";
const nodes = ["cross-1", "cross-2", "cross-3"];
const report = (line: string) => process.stderr.write(`e2e cross-arch: ${line}\n`);
const qemuOf = (node: string) => {
  const pid = Number(readFileSync(join(stateHome, "clusters", name, "nodes", node, "qemu.pid"), "utf8"));
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!;
};

describe("an amd64 cluster upgraded to its arm64 image, one node at a time", () => {
  let arm64Set = "";
  let arm64Digest = "";

  beforeAll(async () => {
    // The role built for arm64 (into out/images/debian-arm64: what the arm64 suite boots too).
    const build = await resinAsync(["build", "consul-server", "--channel", "debian", "--arch", "arm64"], {});
    if (build.status !== 0) throw new Error(`resin build --arch arm64 failed:\n${build.stderr}`);
    arm64Set = join(repoRoot, "out", "images", "debian-arm64");
    arm64Digest = JSON.parse(readFileSync(join(arm64Set, "consul-server", "manifest.json"), "utf8")).digest;
    const up = await resinAsync(["up", "--name", name, "--role", "consul-server", "--channel", "debian", "--timeout", "420"], env);
    if (up.status !== 0) throw new Error(`resin up failed:\n${up.stderr}`);
  });

  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
  });

  it("replaces every node with an arm64 one under writes, passes through a mixed cluster that serves writes, and loses none", async () => {
    const before = resinStatus(stateHome, name);
    expect(before.nodes.map((n) => n.arch)).toEqual(["amd64", "amd64", "amd64"]);
    for (const n of nodes) expect(qemuOf(n)).toMatch(/qemu-system-x86_64$/);
    await kvPut(consulAt(stateHome, name, nodes[0]!), "cross/before", "written on amd64");

    const load = startLoad(() => nodes.map((n) => consulAt(stateHome, name, n)), "cross");
    const started = Date.now();
    const upgrade = execa(process.execPath, [cliPath, "upgrade", "--name", name, "--image-set", arm64Set, "--gate-timeout", "600"], { env: { ...process.env, ...env }, reject: false });
    // Once the first node is healthy on its arm64 image, the upgrade is paused (SIGSTOP: its
    // VMs run on, the upgrade takes no next step) so that the mixed cluster can be looked at.
    let mixed: { status: ClusterStatus; read: string | undefined } | undefined;
    const paused = new Promise<void>((resolve) => {
      let said = "";
      upgrade.stderr!.on("data", (chunk: Buffer) => {
        said += chunk.toString();
        if (said.includes("healthy on the new image") && !said.includes("(paused)")) {
          said += "(paused)";
          process.kill(upgrade.pid!, "SIGSTOP");
          resolve();
        }
      });
    });
    const first = await Promise.race([paused.then(() => "paused" as const), upgrade.then(() => "ended" as const)]);
    if (first === "ended") throw new Error(`the upgrade ended before a node was healthy on its arm64 image:\n${(await upgrade).stderr}`);
    try {
      const status = await until("the mixed cluster to be healthy", 180_000, async () => {
        const r = await resinAsync(["status", "--name", name, "--json"], env);
        const s = StatusSchema.parse(JSON.parse(r.stdout));
        return s.healthy ? s : undefined;
      });
      // A write through an arm64 server, read back through an amd64 one.
      const arm = status.nodes.find((n) => n.arch === "arm64")!;
      const amd = status.nodes.find((n) => n.arch === "amd64")!;
      await kvPut(consulAt(stateHome, name, arm.name), "cross/mixed", `written on ${arm.name}`);
      mixed = { status, read: await kvGet(consulAt(stateHome, name, amd.name), "cross/mixed") };
    } finally {
      process.kill(upgrade.pid!, "SIGCONT");
    }
    const done = await upgrade;
    const seconds = (Date.now() - started) / 1000;
    const { acked, refused, longestLeaderlessSeconds } = await load.stop();
    if (done.exitCode !== 0) throw new Error(`upgrade failed:\n${done.stderr}`);
    expect(done.stderr).toContain(`upgrade of ${name} complete: 3 node(s) replaced`);

    const lost = await lostWrites(consulAt(stateHome, name, nodes[0]!), acked);
    report(
      `3 amd64 nodes replaced by arm64 ones in ${seconds.toFixed(1)}s; paused once mixed and healthy (${mixed!.status.nodes.map((n) => `${n.name}=${n.arch}`).join(" ")}); ` +
        `longest window without a leader ${longestLeaderlessSeconds.toFixed(1)}s; writes acknowledged ${acked.size}, refused ${refused}, lost ${lost.length}`,
    );
    // Paused after one replacement: one arm64 server and two amd64 ones in one healthy raft.
    expect(mixed!.status.nodes.map((n) => n.arch).sort()).toEqual(["amd64", "amd64", "arm64"]);
    expect(mixed!.status.leader).toBeTruthy();
    expect(mixed!.read).toMatch(/^written on cross-\d$/);
    expect(acked.size).toBeGreaterThan(0);
    expect(lost).toEqual([]);

    const after = resinStatus(stateHome, name);
    expect(after.healthy).toBe(true);
    expect(after.nodes.map((n) => n.arch)).toEqual(["arm64", "arm64", "arm64"]);
    expect(after.nodes.map((n) => n.image)).toEqual([arm64Digest, arm64Digest, arm64Digest]);
    for (const n of nodes) expect(qemuOf(n)).toMatch(/qemu-system-aarch64$/);
    const state = JSON.parse(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8")) as { nodes: { arch?: string }[] };
    expect(state.nodes.map((n) => n.arch)).toEqual(["arm64", "arm64", "arm64"]);
    // What the amd64 servers and the mixed raft stored, read back from an arm64 one.
    expect(await kvGet(consulAt(stateHome, name, nodes[2]!), "cross/before")).toBe("written on amd64");
    expect(await kvGet(consulAt(stateHome, name, nodes[2]!), "cross/mixed")).toBe(mixed!.read);
  });
});
