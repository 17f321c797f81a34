// `resin test`'s pure parts and its refusals: JUnit XML checked by a real validator
// (xmllint against the format's schema), the cases made of Consul's checks, the
// environment read from `resin env`, and bad input refused before anything boots.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { junitXml, type TestSuite } from "../../cli/util/junit.js";
import { caseSlug, checkCases, checkTestInput, defaultTestRoles, formatSummary, parseExports, testScripts } from "../../cli/commands/test.js";
import { initCommand } from "../../cli/commands/init.js";
import { formatRoleCounts, parseRoleCounts } from "../../cli/cluster/create.js";
import type { ConsulCheck } from "../../cli/cluster/consul.js";

const repo = join(import.meta.dirname, "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "resin-unit-test-cmd-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function xmllint(xml: string): { status: number | null; out: string } {
  const file = join(scratch, `report-${Math.random().toString(16).slice(2)}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync("xmllint", ["--noout", "--schema", join(repo, "test", "fixtures", "junit", "junit.xsd"), file], { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const suite = (cases: TestSuite["cases"]): TestSuite => ({ name: "resin test demo", timestamp: "2026-12-04T12:00:00.000Z", hostname: "ci-1", cases });

describe("junitXml", () => {
  it("writes passed, failed and skipped cases that xmllint validates against the JUnit schema", () => {
    const xml = junitXml(suite([
      { name: "cluster comes up healthy", classname: "resin.cluster", seconds: 31.2, outcome: "passed", output: "quorum in 24.1s" },
      { name: "consul: service hello passes its checks", classname: "resin.consul", seconds: 120, outcome: "failed", message: "web-2: Service 'hello' check critical", output: "dial tcp 10.88.0.12:8081: connection refused" },
      { name: "tests/smoke", classname: "resin.tests", seconds: 0, outcome: "skipped", message: "the cluster did not come up" },
    ]));
    const r = xmllint(xml);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain("validates");
    expect(xml).toContain('tests="3" failures="1" errors="0" skipped="1" time="151.200"');
  });

  it("keeps hostile output inert: markup is escaped, terminal escapes and NULs cannot break the XML", () => {
    const evil = `</system-out><testcase name="forged"/>\u001b]0;owned\u0007\u0000 & "quotes" ]]>`;
    const xml = junitXml(suite([{ name: `a "name" <with> & ${evil}`, classname: "resin.tests", seconds: 1, outcome: "failed", message: evil, output: evil }]));
    const r = xmllint(xml);
    expect(r.status, r.out).toBe(0);
    expect(xml.match(/<testcase /g)).toHaveLength(1);
    expect(xml).not.toMatch(/[\u0000\u001b\u0007]/);
  });

  it("is refused by the validator when a count is wrong-typed (the check can fail)", () => {
    const broken = junitXml(suite([{ name: "x", classname: "resin.tests", seconds: 1, outcome: "passed" }])).replace('tests="1"', 'tests="one"');
    expect(xmllint(broken).status).not.toBe(0);
  });
});

describe("checkCases: Consul's view as test cases", () => {
  const check = (node: string, serviceName: string, status: string, output = ""): ConsulCheck => ({ node, serviceName, status, output, checkId: `${serviceName || "serfHealth"}-${node}`, name: serviceName ? `${serviceName}: tcp 7000` : "Serf Health Status" });
  const expected = new Map([["hello", ["web-1", "web-2"]], ["echo", ["web-1", "web-2"]]]);

  it("one case per registered service and one for node health; failed unless registered everywhere its image says and every check passes", () => {
    const cases = checkCases(
      {
        checks: [check("web-1", "", "passing"), check("web-2", "", "passing"), check("web-1", "hello", "passing"), check("web-2", "hello", "critical", "dial tcp 127.0.0.1:7009: connect: connection refused"), check("web-1", "consul", "passing")],
        registered: new Map([["hello", ["web-1", "web-2"]], ["echo", ["web-1"]]]),
      },
      expected,
      new Map([["", 3.5]]),
      60,
    );
    expect(cases.map((c) => [c.service, c.name, c.outcome, c.seconds])).toEqual([
      ["", "consul: every node's health checks pass", "passed", 3.5],
      ["echo", "consul: service echo passes its checks", "failed", 60],
      ["hello", "consul: service hello passes its checks", "failed", 60],
    ]);
    expect(cases[1]!.message).toBe("not passing after 60s: web-2: not registered");
    expect(cases[2]!.message).toBe("not passing after 60s: web-2: hello: tcp 7000 critical");
    expect(cases[2]!.output).toContain("web-2: hello: tcp 7000 (hello-web-2): critical: dial tcp 127.0.0.1:7009: connect: connection refused");
  });

  it("passes when every expected service is registered and passing, a service without checks included", () => {
    const cases = checkCases({ checks: [check("web-1", "", "passing"), check("web-1", "hello", "passing")], registered: new Map([["hello", ["web-1"]], ["echo", ["web-1"]]]) }, new Map([["hello", ["web-1"]], ["echo", ["web-1"]]]), new Map(), 60);
    expect(cases.map((c) => c.outcome)).toEqual(["passed", "passed", "passed"]);
  });
});

describe("small parts", () => {
  it("parseExports reads resin env's quoting back, quotes inside values too", () => {
    expect(parseExports("export CONSUL_HTTP_ADDR='https://127.0.0.1:4000'\nexport X='it'\\''s'\n# comment\n")).toEqual({ CONSUL_HTTP_ADDR: "https://127.0.0.1:4000", X: "it's" });
  });

  it("formatRoleCounts gives the --roles argument that parseRoleCounts reads back to the same counts", () => {
    const roles = ["web", "web", "db", "web"];
    expect(formatRoleCounts(roles)).toBe("web=3,db=1");
    expect(parseRoleCounts(formatRoleCounts(roles)).sort()).toEqual([...roles].sort());
  });

  it("caseSlug makes a directory name", () => {
    expect(caseSlug("consul: service hello passes its checks")).toBe("consul-service-hello-passes-its-checks");
    expect(caseSlug("tests/../../etc")).toBe("tests-etc");
    expect(caseSlug("***")).toBe("case");
  });

  it("formatSummary ends with the counts", () => {
    expect(formatSummary([{ name: "a", classname: "c", seconds: 1, outcome: "passed" }, { name: "b", classname: "c", seconds: 2, outcome: "failed", message: "exited 1" }]).split("\n").pop()).toBe("1 passed, 1 failed, 0 skipped");
  });
});

describe("bad input is refused before anything boots", () => {
  it("a tests/ file that is not executable, naming it and the fix; dotfiles and directories are not tests", async () => {
    const project = join(scratch, "p1");
    mkdirSync(join(project, "tests", "lib"), { recursive: true });
    writeFileSync(join(project, "tests", "ok"), "#!/bin/sh\nexit 0\n");
    chmodSync(join(project, "tests", "ok"), 0o755);
    writeFileSync(join(project, "tests", ".hidden"), "");
    expect((await testScripts(project)).map((p) => p.slice(project.length))).toEqual(["/tests/ok"]);
    writeFileSync(join(project, "tests", "notes.txt"), "not a test\n");
    await expect(testScripts(project)).rejects.toThrow(/^tests\/notes\.txt is not executable/);
  });

  it("an unknown role, and a JUnit path whose directory is missing", async () => {
    await expect(checkTestInput({ project: repo, roles: ["consul-server", "nope"], junit: undefined })).rejects.toThrow(/--roles: no role 'nope' in /);
    await expect(checkTestInput({ project: repo, roles: ["consul-server"], junit: join(scratch, "missing", "junit.xml") })).rejects.toThrow(/--junit .*missing\/junit\.xml: its directory .* does not exist/);
  });

  it("a user's project may test Resin's stock roles beside its own", async () => {
    const project = join(scratch, "p3");
    mkdirSync(join(project, "machines"), { recursive: true });
    writeFileSync(join(project, "machines", "web.yml"), "role: web\n");
    await expect(checkTestInput({ project, roles: ["web", "consul-server"], junit: undefined })).resolves.toEqual([]);
    await expect(checkTestInput({ project, roles: ["nope"], junit: undefined })).rejects.toMatchObject({ message: expect.stringMatching(/^--roles: no role 'nope' in /), hint: expect.stringMatching(/^its roles: .*consul-server.*web/) });
  });

  it("a project of several roles must name them; one role defaults to three nodes of it", async () => {
    await expect(defaultTestRoles(repo)).rejects.toThrow(/which roles to test\? .* has consul-server, control-plane/);
    const one = join(scratch, "p2");
    mkdirSync(join(one, "machines"), { recursive: true });
    writeFileSync(join(one, "machines", "web.yml"), "role: web\n");
    expect(await defaultTestRoles(one)).toEqual(["web", "web", "web"]);
  });
});

describe("resin init", () => {
  it("writes the starter project (role, service, executable test, workflow, README) and refuses a non-empty directory", async () => {
    const dir = join(scratch, "new-project");
    await initCommand(dir);
    const files = execFileSync("find", [".", "-type", "f"], { cwd: dir, encoding: "utf8" }).trim().split("\n").sort();
    expect(files).toEqual(["./.github/workflows/resin.yml", "./.gitignore", "./README.md", "./machines/web.yml", "./services/hello/index.html", "./services/hello/run", "./services/hello/service.yml", "./tests/hello-answers"]);
    expect((await testScripts(dir)).length).toBe(1);
    const before = readdirSync(dir).sort();
    writeFileSync(join(dir, "README.md"), "mine\n");
    await expect(initCommand(dir)).rejects.toThrow(/is not empty: resin init writes a new project and overwrites nothing/);
    expect(readdirSync(dir).sort()).toEqual(before);
  });

  it("its CI workflow caches Resin's artifacts by resin.lock.json, runs resin test --junit and keeps the report and failure logs", async () => {
    const { parse } = await import("yaml");
    const wf = parse(readFileSync(join(repo, "starter", ".github", "workflows", "resin.yml"), "utf8")) as { jobs: { test: { steps: { uses?: string; run?: string; with?: Record<string, string>; if?: string }[] } } };
    const steps = wf.jobs.test.steps;
    const cache = steps.find((s) => s.uses?.startsWith("actions/cache@"));
    expect(cache?.with?.key).toContain("hashFiles('resin.lock.json')");
    expect(cache?.with?.path).toBe("~/.cache/resin");
    expect(steps.some((s) => /^resin test --junit \S+/.test(s.run ?? ""))).toBe(true);
    const upload = steps.find((s) => s.uses?.startsWith("actions/upload-artifact@"));
    expect(upload?.if).toBe("always()");
    expect(upload?.with?.path).toMatch(/out\/junit\.xml[\s\S]*out\/test-failures\//);
  });
});
