// Bad input gives a clear error and touches no cluster state.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keepLogsOnFailure, processesUnder, resin, resinAsync, userProject } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-errors-"));
keepLogsOnFailure(stateHome, "cli-errors");
afterAll(() => rmSync(stateHome, { recursive: true, force: true }));

/** A command that builds an image: a hang guard well inside its test's timeout (TEST_MS, two builds). */
const BUILD_MS = 9 * 60_000;
const TEST_MS = 2 * BUILD_MS + 5 * 60_000;

function projectWith(role: string, yaml: string): string {
  const dir = userProject("resin-e2e-project-");
  writeFileSync(join(dir, "machines", `${role}.yml`), yaml);
  return dir;
}

describe("bad input", () => {
  it("an unknown role names the roles there are", () => {
    const r = resin(["up", "--name", "bad-role", "--role", "no-such-role"], { RESIN_STATE_HOME: stateHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("machines/no-such-role.yml");
    expect(r.stderr).toContain("the roles are: consul-server");
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(join(stateHome, "clusters", "bad-role"))).toBe(false);
  });

  it("malformed YAML names the file and line", () => {
    const project = projectWith("broken", "role: broken\ndescription: x\nservices: [base, consul\n");
    const r = resin(["build", "broken"], { RESIN_PROJECT: project });
    rmSync(project, { recursive: true, force: true });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/machines\/broken\.yml:\d+: YAML syntax error/);
  });

  it("an unknown key names the file, line, field and fix", () => {
    const project = projectWith("typo", "role: typo\ndescription: x\nservices: [base, consul]\nvm:\n  memory: 512\n");
    const r = resin(["build", "typo"], { RESIN_PROJECT: project });
    rmSync(project, { recursive: true, force: true });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/machines\/typo\.yml:5: vm\.memory: unknown key: remove it or use one of: memory_mib, cpus, persist_disk_gib/);
  });

  it("missing QEMU is reported with the package to install, before any state is written", () => {
    const r = resin(["up", "--name", "no-qemu"], { RESIN_STATE_HOME: stateHome, PATH: "/nonexistent" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("missing host programs: qemu-system-x86_64, qemu-img, vde_switch");
    expect(r.stderr).toContain("apt-get install qemu-system-x86 qemu-utils vde2");
    // Nothing written for any cluster, and no lock left behind by the earlier failures.
    const clusters = join(stateHome, "clusters");
    expect(existsSync(clusters) ? readdirSync(clusters) : []).toEqual([]);
  });

  it("status of an unknown cluster says so", () => {
    const r = resin(["status", "--name", "nothing-here"], { RESIN_STATE_HOME: stateHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("no cluster named 'nothing-here'");
  });
});

describe("artifacts that cannot be had", () => {
  it("the default control-plane cluster stops before booting, naming each missing release and the fix", () => {
    const state = mkdtempSync(join(tmpdir(), "resin-e2e-missing-"));
    // Offline: Nomad and Vault releases cannot be obtained on this machine, and the
    // test must not try the network. Nothing may be booted or written for the cluster.
    const r = resin(["up", "--name", "cp"], { RESIN_STATE_HOME: state, RESIN_OFFLINE: "1" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("official releases not in the cache");
    for (const release of ["consul 1.22.6", "nomad 1.11.0", "vault 1.21.0"]) expect(r.stderr).toContain(release);
    expect(r.stderr).toContain("resin artifacts fetch consul@1.22.6 nomad@1.11.0 vault@1.21.0");
    expect(r.stderr).toContain("resin artifacts import <dir>/nomad_1.11.0_linux_amd64.zip");
    expect(r.stderr).toContain("resin build consul-server --channel debian");
    expect(existsSync(join(state, "clusters", "cp"))).toBe(false);
    expect(processesUnder(state)).toEqual([]);
    rmSync(state, { recursive: true, force: true });
  });
});

describe("resin plan", () => {
  it("--join without --network dhcp is refused before anything is written", () => {
    const r = resin(["plan", "--name", "joiny", "--join", "provider=aws tag_key=k tag_value=v"], { RESIN_STATE_HOME: stateHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("--join is for --network dhcp");
    expect(existsSync(join(stateHome, "clusters", "joiny"))).toBe(false);
  });

  it("a DHCP cluster is planned with null addresses; resin up refuses it and another --nodes or --network, keeping its state", async () => {
    const env = { RESIN_STATE_HOME: stateHome, RESIN_OFFLINE: "1" };
    // Planning builds the image (or finds it built): run without blocking vitest's worker.
    const planned = await resinAsync(["plan", "--name", "cloudy", "--nodes", "3", "--role", "consul-server", "--channel", "debian", "--network", "dhcp", "--json"], env, BUILD_MS);
    expect(planned.status, planned.stderr).toBe(0);
    const manifest = JSON.parse(planned.stdout) as {
      format: string;
      cluster: { network: { mode: string; join: string } };
      nodes: { address: string | null; metadata: { path: string } }[];
    };
    expect(manifest.format).toBe("resin-plan/1");
    expect(manifest.cluster.network).toEqual({ mode: "dhcp", join: "provider=aws tag_key=resin-cluster tag_value=cloudy" });
    expect(manifest.nodes.map((n) => n.address)).toEqual([null, null, null]);
    const metadata = JSON.parse(readFileSync(manifest.nodes[0]!.metadata.path, "utf8")) as { resin: { entries: { network: { content: string } } } };
    expect(metadata.resin.entries.network.content).toBe("* dhcp cluster,host\n");
    const secretsBefore = readFileSync(join(stateHome, "clusters", "cloudy", "secrets.json"), "utf8");

    const up = resin(["up", "--name", "cloudy"], env);
    expect(up.status).toBe(1);
    expect(up.stderr).toContain("takes its addresses from DHCP, which local clusters do not have");
    expect(processesUnder(join(stateHome, "clusters", "cloudy"))).toEqual([]);

    const resized = resin(["plan", "--name", "cloudy", "--nodes", "5"], env);
    expect(resized.status).toBe(1);
    expect(resized.stderr).toContain("cluster 'cloudy' has 3 nodes, not 5");
    const restatic = resin(["plan", "--name", "cloudy", "--network", "static"], env);
    expect(restatic.status).toBe(1);
    expect(restatic.stderr).toContain("cluster 'cloudy' was planned with dhcp addresses");
    // Nothing a failed command touched changed the cluster's secrets.
    expect(readFileSync(join(stateHome, "clusters", "cloudy", "secrets.json"), "utf8")).toBe(secretsBefore);
  }, TEST_MS);
});

describe("resin plan --upgrade", () => {
  it("moves a planned cluster to its role's new image, keeping secrets, and refuses what it cannot do", async () => {
    const project = projectWith("consul-server", "role: consul-server\noverride: true\ndescription: Consul server\nservices: [base, consul]\nconfig:\n  consul:\n    server: true\nvm: { memory_mib: 1024, cpus: 1, persist_disk_gib: 2 }\n");
    const env = { RESIN_STATE_HOME: stateHome, RESIN_PROJECT: project };
    try {
      const missing = resin(["plan", "--name", "nosuch", "--upgrade"], env);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toContain("cluster 'nosuch' does not exist, so there is nothing to upgrade");

      // These two build images (minutes under load): async, so vitest's worker stays responsive.
      const first = await resinAsync(["plan", "--name", "rolling", "--nodes", "3", "--role", "consul-server", "--channel", "debian", "--network", "dhcp", "--json"], env, BUILD_MS);
      expect(first.status, first.stderr).toBe(0);
      const before = JSON.parse(first.stdout) as { roles: Record<string, { image: { digest: string; files: { disk_raw: { path: string } } } }> };
      const secrets = readFileSync(join(stateHome, "clusters", "rolling", "secrets.json"), "utf8");

      const same = resin(["plan", "--name", "rolling", "--upgrade", "--json"], env);
      expect(same.status, same.stderr).toBe(0);
      expect(same.stderr).toContain("every node already has its role's newest image");

      // A one-line change to the role: a new image for every node.
      writeFileSync(join(project, "machines", "consul-server.yml"), "role: consul-server\noverride: true\ndescription: Consul server\nservices: [base, consul]\nconfig:\n  consul:\n    server: true\n    log_level: DEBUG\nvm: { memory_mib: 1024, cpus: 1, persist_disk_gib: 2 }\n");
      const upgraded = await resinAsync(["plan", "--name", "rolling", "--upgrade", "--json"], env, BUILD_MS);
      expect(upgraded.status, upgraded.stderr).toBe(0);
      expect(upgraded.stderr).toContain("3 of 3 nodes move to new images");
      const after = JSON.parse(upgraded.stdout) as typeof before;
      const [was, now] = [before.roles["consul-server"]!.image, after.roles["consul-server"]!.image];
      expect(now.digest).not.toBe(was.digest);
      expect(existsSync(now.files.disk_raw.path)).toBe(true);
      // The old image stays for the machines that still run it.
      expect(existsSync(was.files.disk_raw.path)).toBe(true);
      expect(readFileSync(join(stateHome, "clusters", "rolling", "secrets.json"), "utf8")).toBe(secrets);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  }, TEST_MS);
});
