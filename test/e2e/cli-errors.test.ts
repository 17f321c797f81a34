// Bad input gives a clear error and touches no cluster state.
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { repoRoot, resin } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-errors-"));
afterAll(() => rmSync(stateHome, { recursive: true, force: true }));

function projectWith(role: string, yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-e2e-project-"));
  cpSync(join(repoRoot, "services"), join(dir, "services"), { recursive: true });
  cpSync(join(repoRoot, "resin.lock.json"), join(dir, "resin.lock.json"));
  cpSync(join(repoRoot, "machines"), join(dir, "machines"), { recursive: true });
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
    expect(readdirSync(stateHome)).toEqual([]);
  });

  it("status of an unknown cluster says so", () => {
    const r = resin(["status", "--name", "nothing-here"], { RESIN_STATE_HOME: stateHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("no cluster named 'nothing-here'");
  });
});
