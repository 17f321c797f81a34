// `resin init` and `resin test` as a user runs them, outside this repository: a new
// project from the starter, a service of its own added and registered in Consul, and a
// green `resin test --junit` on real QEMU nodes with real Consul 1.8.7. Then the same
// project broken three ways (a build check, a Consul check on the wrong port, a failing
// test script), each in its own run, and a run interrupted by SIGINT: every one exits
// non-zero, names what failed, keeps the logs, and leaves no VM, switch or state behind.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliPath, killLeftovers, processesUnder, repoRoot } from "./helpers.js";

const scratch = mkdtempSync(join(tmpdir(), "resin-e2e-resin-test-"));
const project = join(scratch, "shop");
// resin test makes its scratch state directory under TMPDIR: here, so it can be checked.
const temp = join(scratch, "tmp");
const env = { RESIN_ACCEL: "tcg", TMPDIR: temp, RESIN_PROJECT: undefined, RESIN_STATE_HOME: undefined, RESIN_CLUSTER: undefined };

afterAll(() => {
  killLeftovers(scratch);
  expect(processesUnder(scratch)).toEqual([]);
  rmSync(scratch, { recursive: true, force: true });
});

function report(line: string): void {
  process.stderr.write(`e2e resin-test: ${line}\n`);
}

async function run(args: string[], timeoutMs = 15 * 60_000) {
  const started = Date.now();
  const r = await execa(process.execPath, [cliPath, ...args], { cwd: project, env: { ...process.env, ...env }, timeout: timeoutMs, reject: false, all: true });
  return { status: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), all: String(r.all), seconds: (Date.now() - started) / 1000 };
}

/** Nothing of a finished run is left: no VM or switch, and its scratch state directory is gone. */
function expectNothingLeft(): void {
  expect(processesUnder(temp)).toEqual([]);
  expect(readdirSync(temp).filter((f) => f.startsWith("resin-test-")), "resin test's scratch state directory is removed").toEqual([]);
}

function write(path: string, text: string, mode = 0o644): void {
  mkdirSync(join(project, path, ".."), { recursive: true });
  writeFileSync(join(project, path), text);
  chmodSync(join(project, path), mode);
}

/** The cases of a green run of the project, as junitCases gives them, sorted. */
const GREEN = [
  "cluster comes up healthy: passed",
  "consul: every node's health checks pass: passed",
  "consul: service echo passes its checks: passed",
  "consul: service hello passes its checks: passed",
  "tests/hello-answers: passed",
];

/** Each <testcase> of a JUnit report as "name: passed|failure|skipped". */
const junitCases = (xml: string) =>
  [...xml.matchAll(/<testcase name="([^"]+)"[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)].map((m) => `${m[1]}: ${/^\s*<(failure|skipped)/.exec(m[2] ?? "")?.[1] ?? "passed"}`);

beforeAll(() => {
  mkdirSync(temp, { recursive: true });
  const r = spawnSync(process.execPath, [cliPath, "init", project], { cwd: scratch, encoding: "utf8", env: { ...process.env, ...env } });
  expect(r.status, r.stderr).toBe(0);
  // A service of the user's own beside the starter's: an echo server on a TCP port, with a TCP check.
  write("services/echo/service.yml", `name: echo
description: echoes what it is sent (busybox nc)
user: { name: echo, uid: 251 }
files:
  - { src: run, dst: etc/service/echo/run, mode: "0755" }
ports: { tcp: 7000 }
consul:
  services:
    - name: echo
      port: tcp
      checks:
        - { tcp: tcp, interval: 5s }
`);
  write("services/echo/run", "#!/bin/sh\nexec 2>&1\nexec chpst -u echo:echo nc -ll -p 7000 -e cat\n", 0o755);
  write("machines/web.yml", readFileSync(join(project, "machines", "web.yml"), "utf8").replace("services: [base, consul, hello]", "services: [base, consul, hello, echo]"));
});

describe("resin test on a project made by resin init", () => {
  it("passes: the cluster comes up, every Consul check passes, the test script answers; JUnit lists each case", async () => {
    const junit = join(scratch, "reports", "junit.xml");
    mkdirSync(join(scratch, "reports"));
    const r = await run(["test", "--roles", "web=1", "--channel", "debian", "--junit", junit]);
    report(`green run in ${r.seconds.toFixed(1)}s:\n${r.stdout}`);
    expect(r.status, r.all).toBe(0);
    const xml = readFileSync(junit, "utf8");
    expect(junitCases(xml).sort()).toEqual(GREEN);
    const lint = spawnSync("xmllint", ["--noout", "--schema", join(repoRoot, "test", "fixtures", "junit", "junit.xsd"), junit], { encoding: "utf8" });
    expect(lint.status, lint.stderr).toBe(0);
    expect(r.stdout).toMatch(/^5 passed, 0 failed, 0 skipped$/m);
    expect(xml).toContain("hello answers on 127.0.0.1:");
    // The image was checked before it booted: Consul read its role and sample-node config.
    const manifest = JSON.parse(readFileSync(join(project, "out", "images", "debian", "web", "manifest.json"), "utf8")) as { checks: { service: string; exitCode: number; output: string }[] };
    expect(manifest.checks.map((c) => [c.service, c.exitCode])).toEqual([["consul", 0]]);
    expect(manifest.checks[0]!.output).toContain("Configuration is valid!");
    expectNothingLeft();
  });

  it("--arch arm64: the same project built for arm64 and tested on an emulated arm64 node, green", async () => {
    const junit = join(scratch, "reports", "junit-arm64.xml");
    mkdirSync(join(scratch, "reports"), { recursive: true });
    const r = await run(["test", "--roles", "web=1", "--arch", "arm64", "--channel", "debian", "--junit", junit]);
    report(`arm64 run in ${r.seconds.toFixed(1)}s:\n${r.stdout}`);
    expect(r.status, r.all).toBe(0);
    expect(r.stderr).toMatch(/resin test: cluster test-[0-9a-f]{8} \(1 × web; web arm64, debian channel\)/);
    const xml = readFileSync(junit, "utf8");
    expect(junitCases(xml).sort()).toEqual(GREEN);
    // resin up's own words in the first case: the cluster was made of arm64 nodes.
    expect(xml).toMatch(/cluster test-[0-9a-f]{8}: created \(1 × web, web arm64, /);
    const manifest = JSON.parse(readFileSync(join(project, "out", "images", "debian-arm64", "web", "manifest.json"), "utf8")) as { arch: string };
    expect(manifest.arch).toBe("arm64");
    expectNothingLeft();
  });

  it("--arch with an architecture Resin does not build for, or a role the run does not have: one line, nothing built", async () => {
    for (const [arch, error] of [
      ["riscv64", "resin: --arch: 'riscv64' is not an architecture Resin builds for"],
      ["db=arm64", "resin: --arch: role 'db' is not one of the cluster's (web)"],
    ] as const) {
      const r = await run(["test", "--roles", "web=1", "--arch", arch, "--channel", "debian"], 60_000);
      expect(r.status, arch).toBe(1);
      expect(r.stderr.split("\n").filter((l) => l.startsWith("resin:"))).toEqual([error]);
      expect(r.stderr).not.toContain("resin test: cluster");
    }
    expectNothingLeft();
  });

  it("a failing build check stops the build and shows the checker's own output", async () => {
    const spec = join(project, "services", "hello", "service.yml");
    const good = readFileSync(spec, "utf8");
    try {
      writeFileSync(spec, `${good}checks:\n  build:\n    - test -f /srv/hello/missing.html || { echo "no page at /srv/hello/missing.html" >&2; exit 4; }\n`);
      const r = await run(["build", "web", "--channel", "debian"]);
      expect(r.status, r.all).toBe(1);
      expect(r.stderr).toMatch(/^resin: web: build check of service hello failed \(exit 4\): test -f \/srv\/hello\/missing\.html/m);
      expect(r.stderr).toContain("  no page at /srv/hello/missing.html");
      expect(r.stderr).toContain("nothing was installed");
    } finally {
      writeFileSync(spec, good);
    }
  });

  it("a Consul check on the wrong port fails its case, exits 1 and keeps consoles and the service's log", async () => {
    const spec = join(project, "services", "echo", "service.yml");
    const good = readFileSync(spec, "utf8");
    try {
      const broken = good.replace("ports: { tcp: 7000 }", "ports: { tcp: 7000, nothing: 7009 }").replace("- { tcp: tcp, interval: 5s }", "- { tcp: nothing, interval: 5s }");
      expect(broken).toContain("- { tcp: nothing, interval: 5s }");
      writeFileSync(spec, broken);
      const junit = join(scratch, "reports", "junit-wrong-port.xml");
      mkdirSync(join(scratch, "reports"), { recursive: true });
      const r = await run(["test", "--roles", "web=1", "--channel", "debian", "--checks-timeout", "30", "--junit", junit]);
      report(`wrong-port run in ${r.seconds.toFixed(1)}s:\n${r.stdout}`);
      // The image the run booted registers the check on 7009 (one CI run passed this case once; this says why if it does again).
      const registered = spawnSync("unsquashfs", ["-cat", join(project, "out", "images", "debian", "web", "rootfs.squashfs"), "usr/lib/resin/consul/services.json"], { encoding: "utf8" }).stdout;
      expect(registered, "the rebuilt image's Consul service definitions").toContain('"tcp": "127.0.0.1:7009"');
      expect(r.status, `${r.all}\n--- JUnit (resin up's output is in the first case):\n${existsSync(junit) ? readFileSync(junit, "utf8") : "none"}`).toBe(1);
      expect(r.stdout).toMatch(/^consul: service echo passes its checks\s+FAILED/m);
      expect(r.stdout).toMatch(/^consul: service hello passes its checks\s+PASSED/m);
      const kept = join(project, "out", "test-failures", "consul-service-echo-passes-its-checks");
      const files = readdirSync(kept).sort();
      expect(files, files.join(", ")).toEqual(expect.arrayContaining(["output.txt", expect.stringMatching(/-1\.console\.log$/), expect.stringMatching(/-1\.echo\.log$/)]));
      expect(readFileSync(join(kept, "output.txt"), "utf8")).toMatch(/7009.*(refused|critical)/);
      expectNothingLeft();
    } finally {
      writeFileSync(spec, good);
    }
  });

  it("a test script that exits 1 fails its case by name, and resin test exits 1", async () => {
    write("tests/zz-fails", "#!/bin/sh\necho \"checking $RESIN_CLUSTER\"\nexit 1\n", 0o755);
    try {
      const r = await run(["test", "--roles", "web=1", "--channel", "debian"]);
      expect(r.status, r.all).toBe(1);
      expect(r.stdout).toMatch(/^tests\/zz-fails\s+FAILED\s+[\d.]+\s+exited 1/m);
      expect(r.stdout).toMatch(/^tests\/hello-answers\s+PASSED/m);
      expect(readFileSync(join(project, "out", "test-failures", "tests-zz-fails", "output.txt"), "utf8")).toMatch(/^checking test-[0-9a-f]{8}$/m);
      expectNothingLeft();
    } finally {
      rmSync(join(project, "tests", "zz-fails"));
    }
  });

  it("Ctrl-C (SIGINT) while the cluster boots: the case is interrupted, everything is torn down, exit 130", async () => {
    const child = spawn(process.execPath, [cliPath, "test", "--roles", "web=1", "--channel", "debian"], { cwd: project, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    // Wait until a VM runs, then interrupt.
    const deadline = Date.now() + 10 * 60_000;
    while (processesUnder(temp).length < 2 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 250));
    expect(processesUnder(temp).length, out).toBeGreaterThanOrEqual(2);
    child.kill("SIGINT");
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    report(`interrupted run:\n${out}`);
    expect(code, out).toBe(130);
    expect(out).toMatch(/resin test: SIGINT: stopping the case that runs, then tearing cluster test-[0-9a-f]{8} down/);
    expect(out).toMatch(/^cluster comes up healthy\s+FAILED\s+[\d.]+\s+interrupted by SIGINT/m);
    expectNothingLeft();
    expect(existsSync(join(project, "out", "test-failures", "cluster-comes-up-healthy"))).toBe(true);
  });
});
