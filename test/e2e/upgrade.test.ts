// Rolling upgrade with real Consul 1.8.7: image set A (the shared build) → B (a role
// setting changed) under a writer loop, then a deliberately broken image set C whose
// gate failure stops the upgrade, and a rollback. Prints what it measured.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentConfig, autopilotConfig, kvGet, kvPut } from "../../cli/cluster/consul.js";
import { lostWrites, startLoad } from "../../bench/consul-load.js";
import { cliPath, consulAt, keepLogsOnFailure, killLeftovers, overrideStock, resinAsync, resinStatus, userProject } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-upgrade-"));
keepLogsOnFailure(stateHome, "upgrade");
const env = { RESIN_STATE_HOME: stateHome };
const name = "upgrade";
const nodes = ["upgrade-1", "upgrade-2", "upgrade-3"];
const scratch: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** Build consul-server in a copy of the project changed by `edit`; returns the image set directory. */
async function imageSet(edit: (project: string) => void): Promise<{ dir: string; digest: string }> {
  const project = userProject("resin-e2e-imageset-");
  scratch.push(project);
  edit(project);
  const r = await resinAsync(["build", "consul-server", "--channel", "debian"], { RESIN_PROJECT: project });
  if (r.status !== 0) throw new Error(`build failed:\n${r.stderr}`);
  const dir = join(project, "out", "images", "debian");
  return { dir, digest: JSON.parse(readFileSync(join(dir, "consul-server", "manifest.json"), "utf8")).digest };
}

function report(line: string): void {
  process.stderr.write(`upgrade: ${line}\n`);
}

describe("health-gated rolling upgrade", () => {
  let setB: { dir: string; digest: string };
  let setC: { dir: string; digest: string };

  beforeAll(async () => {
    // B: a baked setting that the API shows (the agent's log level).
    setB = await imageSet((p) => {
      overrideStock(p, "machines/consul-server.yml");
      const role = join(p, "machines", "consul-server.yml");
      writeFileSync(role, readFileSync(role, "utf8").replace("    ui: true\n", "    ui: true\n    log_level: DEBUG\n"));
    });
    // C: broken on purpose — a key Consul rejects, so the agent never starts. Consul's
    // build check (consul validate) would stop such a build, so this copy of the service
    // drops its checks: the image boots, and only the upgrade's health gate can catch it.
    setC = await imageSet((p) => {
      overrideStock(p, "services/consul");
      const template = join(p, "services", "consul", "role.hcl.hbs");
      writeFileSync(template, `${readFileSync(template, "utf8")}\nresin_not_a_consul_key = true\n`);
      const spec = join(p, "services", "consul", "service.yml");
      const unchecked = readFileSync(spec, "utf8").replace(/\nchecks:\n(?:[ #].*\n)*/, "\n");
      if (unchecked.includes("checks:")) throw new Error("the consul service's build check is still there");
      writeFileSync(spec, unchecked);
    });
    const r = await resinAsync(["up", "--name", name, "--role", "consul-server", "--channel", "debian", "--timeout", "420"], env);
    if (r.status !== 0) throw new Error(`resin up failed:\n${r.stderr}`);
  });

  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    for (const dir of [stateHome, ...scratch]) rmSync(dir, { recursive: true, force: true });
  });

  it("--dry-run shows the plan and changes nothing", async () => {
    const before = readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8");
    const r = await resinAsync(["upgrade", "--name", name, "--image-set", setB.dir, "--dry-run"], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("followers first, Consul leader and active Vault last");
    for (const n of nodes) expect(r.stderr).toContain(`${n}: sha256:`);
    expect(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8")).toBe(before);
  });

  it("replaces every node with image set B while writes go on, losing none", async () => {
    const load = startLoad(() => nodes.map((n) => consulAt(stateHome, name, n)), "upgrade");
    const started = Date.now();
    const upgrade = await execa(process.execPath, [cliPath, "upgrade", "--name", name, "--image-set", setB.dir], { env: { ...process.env, ...env }, reject: false });
    const seconds = (Date.now() - started) / 1000;
    await sleep(2000);
    const { acked, refused, longestLeaderlessSeconds, longestWriteGapSeconds } = await load.stop();
    if (upgrade.exitCode !== 0) throw new Error(`upgrade failed:\n${upgrade.stderr}`);

    const lost = await lostWrites(consulAt(stateHome, name, "upgrade-1"), acked);
    report(`3 nodes replaced in ${seconds.toFixed(1)}s; longest window without a leader ${longestLeaderlessSeconds.toFixed(1)}s, between acknowledged writes ${longestWriteGapSeconds.toFixed(1)}s; writes acknowledged ${acked.size}, refused ${refused}, lost ${lost.length}`);
    expect(lost).toEqual([]);
    expect(acked.size).toBeGreaterThan(0);

    const s = resinStatus(stateHome, name);
    expect(s.healthy).toBe(true);
    expect(s.nodes.map((n) => n.image)).toEqual([setB.digest, setB.digest, setB.digest]);
    for (const n of nodes) {
      // Consul ≥ 1.7 reports it under DebugConfig.Logging.LogLevel.
      const config = (await agentConfig(consulAt(stateHome, name, n))) as { Logging?: { LogLevel?: string }; LogLevel?: string };
      expect(config.Logging?.LogLevel ?? config.LogLevel).toBe("DEBUG");
    }
    expect(upgrade.stderr).toContain("upgrade of upgrade complete: 3 node(s) replaced");
    // Servers kept their raft seats while they rebooted; autopilot's cleanup is back on.
    expect(upgrade.stderr).toContain("autopilot's dead-server cleanup is off until the upgrade ends");
    expect(upgrade.stderr).toContain("autopilot's dead-server cleanup is on again");
    expect((await autopilotConfig(consulAt(stateHome, name, "upgrade-1"))).CleanupDeadServers).toBe(true);
  });

  it("stops at a node whose new image fails its gate, and rollback restores it", async () => {
    const r = await resinAsync(["upgrade", "--name", name, "--image-set", setC.dir, "--gate-timeout", "90"], env);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/failed its health gate|did not stay up/);
    const broken = r.stderr.match(/resin rollback (\S+) --name/)?.[1];
    expect(nodes).toContain(broken);
    expect(r.stderr).toContain(`resin upgrade --resume --name ${name}`);

    // Only that node was touched; the other two still form a cluster that serves writes.
    const s = resinStatus(stateHome, name);
    const others = nodes.filter((n) => n !== broken);
    for (const n of others) expect(s.nodes.find((x) => x.name === n)!.image).toBe(setB.digest);
    expect(s.nodes.find((x) => x.name === broken)!.image).toBe(setC.digest);
    await kvPut(consulAt(stateHome, name, others[0]!), "upgrade/during-failure", "ok");

    const back = await resinAsync(["rollback", broken!, "--name", name], env);
    if (back.status !== 0) throw new Error(`rollback failed:\n${back.stderr}`);
    const after = resinStatus(stateHome, name);
    expect(after.healthy).toBe(true);
    expect(after.nodes.map((n) => n.image)).toEqual([setB.digest, setB.digest, setB.digest]);
    expect(await kvGet(consulAt(stateHome, name, broken!), "upgrade/during-failure")).toBe("ok");
    report(`broken image stopped the upgrade at ${broken}; rollback brought it back healthy`);

    // The unfinished upgrade holds autopilot's dead-server cleanup off...
    expect((await autopilotConfig(consulAt(stateHome, name, others[0]!))).CleanupDeadServers).toBe(false);
    // ...and going "up" to what every node runs ends it, and turns the cleanup back on.
    const done = await resinAsync(["upgrade", "--name", name, "--image-set", setB.dir], env);
    expect(done.status).toBe(0);
    expect(done.stderr).toContain("nothing to do");
    expect(done.stderr).toContain("autopilot's dead-server cleanup is on again");
    expect((await autopilotConfig(consulAt(stateHome, name, others[0]!))).CleanupDeadServers).toBe(true);
    expect(JSON.parse(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8")).upgrade).toBeUndefined();
  });
});
