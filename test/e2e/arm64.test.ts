// arm64 nodes (#23): three consul-server nodes built for arm64 from Debian's packages
// (Consul 1.8.7 from bullseye's arm64 archive), booted by qemu-system-aarch64 -machine
// virt under TCG on this amd64 host. They reach quorum, take a write and read it back,
// and lose no acknowledged write when the leader's VM is SIGKILLed. Kept small: one
// cluster, three steps; emulation is slow and CI's time is not.
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { kvGet, kvPut, type ConsulEndpoint } from "../../cli/cluster/consul.js";
import { failoverUnderWrites, lostWrites } from "../../bench/consul-load.js";
import { consulAt, consulServerClusterForSuite, keepLogsOnFailure, resinStatus, until } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-arm64-"));
keepLogsOnFailure(stateHome, "arm64");
// RESIN_ACCEL unset on purpose: arm64 nodes on an amd64 host are TCG without a probe, and say so.
const env = { RESIN_STATE_HOME: stateHome, RESIN_ACCEL: undefined };
const name = "arm";
const suiteStarted = Date.now();
// Emulated arm64 boots are several times slower than amd64 ones under TCG: a hang guard, not a speed claim.
const cluster = consulServerClusterForSuite(name, stateHome, env, { args: ["--arch", "arm64"], timeoutSeconds: 900 });

const consulOf = (node: string): ConsulEndpoint => consulAt(stateHome, name, node);
const nodeDir = (node: string) => join(stateHome, "clusters", name, "nodes", node);
const qemuPid = (node: string) => Number(readFileSync(join(nodeDir(node), "qemu.pid"), "utf8"));
const report = (line: string) => process.stderr.write(`e2e arm64: ${line}\n`);


describe("a three-node arm64 consul-server cluster under TCG", () => {
  it("boots every node as arm64 (qemu-system-aarch64, virt, ttyAMA0), records it, and reaches quorum", async () => {
    const said = cluster.up!.stderr;
    const quorum = /quorum in ([\d.]+)s, ready \(autopilot healthy\) in ([\d.]+)s/.exec(said);
    expect(quorum, said).not.toBeNull();
    report(`resin up --arch arm64: quorum ${quorum![1]}s, ready ${quorum![2]}s after the VMs started; whole up ${((Date.now() - suiteStarted) / 1000).toFixed(0)}s with the build`);
    expect(said).toContain("arm64 nodes on this amd64 host: emulated by TCG (KVM runs only the host's own architecture)");
    expect(said).toContain("accelerator: tcg");

    // resin up returned healthy; status asks again, on a loaded machine maybe in a moment of an emulated node's slowness.
    const status = await until("resin status to call the cluster healthy", 180_000, async () => {
      const s = resinStatus(stateHome, name);
      return s.healthy ? s : undefined;
    });
    expect(status.nodes.map((n) => n.arch)).toEqual(["arm64", "arm64", "arm64"]);
    const state = JSON.parse(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8")) as { nodes: { arch?: string }[] };
    expect(state.nodes.map((n) => n.arch)).toEqual(["arm64", "arm64", "arm64"]);
    for (const node of status.nodes) {
      const cmdline = readFileSync(`/proc/${qemuPid(node.name)}/cmdline`, "utf8").split("\0");
      expect(cmdline[0]).toMatch(/qemu-system-aarch64$/);
      expect(cmdline[cmdline.indexOf("-machine") + 1]).toBe("virt");
      expect(cmdline[cmdline.indexOf("-append") + 1]).toMatch(/^console=ttyAMA0 /);
      // The guest's /init writes on the console it was given: virt's PL011 UART, ttyAMA0, its only serial port.
      const console = readFileSync(join(nodeDir(node.name), "console.log"), "latin1");
      expect(console).toMatch(/resin: root filesystem \/dev\/vd[a-z] /);
      expect(console).toContain("runit: enter stage: /etc/runit/2");
    }
  });

  it("writes a key through one node and reads it back through another", async () => {
    const nodes = resinStatus(stateHome, name).nodes.map((n) => n.name);
    const value = `written on arm64 at ${Date.now()}`;
    await kvPut(consulOf(nodes[0]!), "arm64/hello", value);
    expect(await kvGet(consulOf(nodes[2]!), "arm64/hello")).toBe(value);
  });

  it("survives SIGKILL of the leader's VM with writes in flight, losing no acknowledged write", async () => {
    const before = resinStatus(stateHome, name);
    const leader = before.nodes.find((n) => before.leader!.startsWith(`${n.address}:`))!.name;
    const survivors = before.nodes.map((n) => n.name).filter((n) => n !== leader);
    const run = await failoverUnderWrites({ survivors: survivors.map(consulOf), clientsPerNode: 2, prefix: "arm64/leader", kill: () => process.kill(qemuPid(leader), "SIGKILL"), timeoutMs: 240_000 });
    const lost = await lostWrites(consulOf(survivors[0]!), run.acked);
    report(`leader ${leader} SIGKILLed under 4 writing clients: a new leader served writes after ${run.failoverSeconds.toFixed(1)}s; acknowledged ${run.acked.size}, unacknowledged ${run.unacknowledged}, lost ${lost.length}`);
    expect(run.acked.size).toBeGreaterThan(0);
    expect(lost).toEqual([]);
    const after = await until("the survivors to name a new leader", 120_000, async () => {
      const s = resinStatus(stateHome, name);
      const l = s.nodes.find((n) => n.name === survivors[0])!.consul?.leader;
      return l && !l.startsWith(`${before.nodes.find((n) => n.name === leader)!.address}:`) ? s : undefined;
    });
    expect(after.nodes.find((n) => n.name === leader)!.vm.state).toBe("crashed");
    report(`suite wall time so far ${((Date.now() - suiteStarted) / 1000).toFixed(0)}s`);
  });
});
