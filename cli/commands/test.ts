// `resin test`: a project's roles booted and tested the way its CI would, like NixOS's
// test driver: the nodes are declared (--roles), one run builds them and boots a scratch
// cluster under a unique name and its own state directory, runs the cases in order,
// keeps the consoles and service logs of whatever failed, and tears the cluster down on
// every way out (success, failure, Ctrl-C) unless --keep. The cluster is driven through
// the resin CLI itself, as a user's script would; Consul is asked through the one API
// client. Cases: the cluster comes up healthy; every Consul check of every registered
// service passes within a bound; every executable in the project's tests/ exits 0.
import { randomBytes } from "node:crypto";
import { constants, existsSync } from "node:fs";
import { access, copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { execa } from "execa";
import type { Channel } from "../spec/schema.js";
import { availableRoles, listRoles } from "../spec/load.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { consulChecks, consulEndpoint, consulKeys, isConsulServer, consulServiceNodes, type ConsulCheck, type ConsulEndpoint } from "../cluster/consul.js";
import { describeArches, describeRoles, formatRoleCounts, parseArchSpec } from "../cluster/create.js";
import { nodesRegistering } from "../cluster/bootstrap.js";
import { clusterHandle, type ClusterHandle } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import { ResinError } from "../util/errors.js";
import { installRoot } from "../util/paths.js";
import { junitXml, type TestCase } from "../util/junit.js";
import { formatTable } from "../util/table.js";
import { printable } from "../util/text.js";
import { sleep } from "../util/time.js";
import type { Log } from "../util/log.js";

export interface TestOptions {
  project: string;
  /** Each node's role, e.g. from --roles web=3. */
  roles: string[];
  /** --arch as given: one architecture for every node or ROLE=ARCH,… (parseArchSpec); absent: amd64. */
  arch?: string;
  channel: Channel;
  offline?: boolean;
  /** Where to write JUnit XML (absolute). */
  junit?: string;
  keep: boolean;
  upTimeoutSeconds: number;
  checksTimeoutSeconds: number;
  scriptTimeoutSeconds: number;
  log: Log;
}

/** The project's test scripts: every executable file directly in tests/, by name; dotfiles and directories are not tests. */
export async function testScripts(project: string): Promise<string[]> {
  const dir = join(project, "tests");
  if (!existsSync(dir)) return [];
  const scripts: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    const info = await stat(path);
    if (info.isDirectory()) continue;
    const runnable = info.isFile() && (await access(path, constants.X_OK).then(() => true, () => false));
    if (!runnable) throw new ResinError(`tests/${name} is not executable: every file in tests/ is a test (${path})`, `make it one: chmod +x tests/${name}; or move it into a subdirectory of tests/`);
    scripts.push(path);
  }
  return scripts;
}

/** Refuse what cannot work before anything is built or booted. Returns the scripts. */
export async function checkTestInput(opts: Pick<TestOptions, "project" | "roles" | "junit" | "arch">): Promise<string[]> {
  const known = await availableRoles(opts.project);
  for (const role of new Set(opts.roles)) {
    if (!known.includes(role)) throw new ResinError(`--roles: no role '${role}' in ${opts.project}`, `its roles: ${known.join(", ") || "none (add machines/<role>.yml)"}`);
  }
  parseArchSpec(opts.arch, opts.roles);
  if (opts.junit) {
    const dir = dirname(opts.junit);
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) throw new ResinError(`--junit ${opts.junit}: its directory ${dir} does not exist`, `create it first (mkdir -p ${dir}), or write the report elsewhere`);
  }
  return testScripts(opts.project);
}

/** The roles of a run that names none: the project's own single role, three nodes of it. */
export async function defaultTestRoles(project: string): Promise<string[]> {
  const own = await listRoles(project);
  if (own.length !== 1) {
    throw new ResinError(`which roles to test? ${project}/machines has ${own.length ? own.join(", ") : "no roles"}`, "name them: resin test --roles ROLE=COUNT,…");
  }
  return [own[0]!, own[0]!, own[0]!];
}

/** `export K='v'` lines (as `resin env` prints them) → an environment. */
export function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^export ([A-Z_][A-Z0-9_]*)='((?:[^']|'\\'')*)'$/.exec(line);
    if (m) env[m[1]!] = m[2]!.replace(/'\\''/g, "'");
  }
  return env;
}

/** A directory name for a case's logs: its name in lowercase letters, digits and '-'. */
export function caseSlug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 80) || "case";
}

/** What Consul says at one moment: every check, and on which nodes each expected service is registered. */
export interface ConsulSnapshot {
  checks: ConsulCheck[];
  registered: Map<string, string[]>;
}

/** Whether one service (or, for "", the nodes' own checks) is where it should be with every check passing. */
function serviceProblems(snap: ConsulSnapshot, service: string, expectedNodes: string[]): string[] {
  const missing = expectedNodes.filter((n) => !(snap.registered.get(service) ?? []).includes(n)).map((n) => `${n}: not registered`);
  const failing = snap.checks.filter((c) => c.serviceName === service && c.status !== "passing").map((c) => `${c.node}: ${c.name} ${c.status}`);
  return [...missing, ...failing];
}

/**
 * Consul's view as test cases: one per service the nodes' images register (and any other
 * service with checks, Consul's own aside), and one for the nodes' own checks; a case
 * fails unless its service is registered on every node whose image registers it and
 * every check of it passes.
 */
export function checkCases(snap: ConsulSnapshot, expected: Map<string, string[]>, seconds: Map<string, number>, timeoutSeconds: number): (TestCase & { service: string })[] {
  const services = [...new Set(["", ...expected.keys(), ...snap.checks.map((c) => c.serviceName).filter((s) => s !== "consul")])].sort();
  return services.map((service) => {
    const problems = serviceProblems(snap, service, expected.get(service) ?? []);
    const name = service ? `consul: service ${service} passes its checks` : "consul: every node's health checks pass";
    const detail = [
      ...(service ? [`registered on: ${(snap.registered.get(service) ?? []).join(", ") || "no node"}`] : []),
      ...snap.checks.filter((c) => c.serviceName === service).map((c) => `${c.node}: ${c.name} (${c.checkId}): ${c.status}${c.output ? `: ${c.output.trim()}` : ""}`),
    ].join("\n");
    return {
      service,
      name,
      classname: "resin.consul",
      seconds: seconds.get(service) ?? timeoutSeconds,
      outcome: problems.length ? "failed" : "passed",
      message: problems.length ? `not passing after ${timeoutSeconds}s: ${problems.join("; ")}` : undefined,
      output: printable(detail),
    };
  });
}

export function formatSummary(cases: TestCase[]): string {
  const rows = [["CASE", "RESULT", "SECONDS", "DETAIL"]];
  for (const c of cases) rows.push([c.name, c.outcome.toUpperCase(), c.seconds.toFixed(1), (c.message ?? "").split("\n")[0]!.slice(0, 100)]);
  const n = (o: TestCase["outcome"]) => cases.filter((c) => c.outcome === o).length;
  return `${formatTable(rows)}\n${n("passed")} passed, ${n("failed")} failed, ${n("skipped")} skipped`;
}

/** This resin, run as a user's script would run it, with `env`; never throws on its exit status. */
function resin(args: string[], env: NodeJS.ProcessEnv, signal?: AbortSignal) {
  return execa(process.execPath, [join(installRoot(), "dist", "cli", "main.js"), ...args], { env, reject: false, all: true, stdin: "ignore", cancelSignal: signal });
}

export async function testCommand(opts: TestOptions): Promise<boolean> {
  const scripts = await checkTestInput(opts);
  const name = `test-${randomBytes(4).toString("hex")}`;
  const home = await mkdtemp(join(tmpdir(), "resin-test-"));
  // This process and every resin it runs see only the scratch cluster's state.
  process.env.RESIN_STATE_HOME = home;
  const cluster = clusterHandle(name);
  const env = { ...process.env, RESIN_STATE_HOME: home, RESIN_PROJECT: opts.project, RESIN_CLUSTER: name };
  const abort = new AbortController();
  const cli = (args: string[]) => resin(args, env, abort.signal);
  const failures = join(opts.project, "out", "test-failures");
  await rm(failures, { recursive: true, force: true });

  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = signal;
    opts.log(`resin test: ${signal}: stopping the case that runs, then tearing cluster ${name} down`);
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const cases: TestCase[] = [];
  const started = new Date();
  const keepLogs = async (c: TestCase, services: { node: string; service: string }[] = []) => {
    const dir = join(failures, caseSlug(c.name));
    await mkdir(dir, { recursive: true });
    if (c.output) await writeFile(join(dir, "output.txt"), c.output.endsWith("\n") ? c.output : `${c.output}\n`);
    const state = await cluster.require().catch(() => undefined);
    for (const node of state?.nodes ?? []) {
      const { console } = localMachines().logFiles(cluster, node.name);
      if (existsSync(console)) await copyFile(console, join(dir, `${node.name}.console.log`));
    }
    for (const s of services) {
      const r = await resin(["logs", s.node, "--name", name, "--service", s.service, "-n", "500"], env);
      await writeFile(join(dir, `${s.node}.${s.service}.log`), printable(r.all ?? ""));
    }
    c.message = `${c.message ?? "failed"} (logs: ${dir})`;
  };
  const skipRest = (why: string, names: string[]) => {
    for (const n of names) cases.push({ name: n, classname: n.startsWith("tests/") ? "resin.tests" : "resin.consul", seconds: 0, outcome: "skipped", message: why });
  };
  const scriptCase = (s: string) => `tests/${basename(s)}`;

  try {
    const arches = describeArches(parseArchSpec(opts.arch, opts.roles));
    opts.log(`resin test: cluster ${name} (${describeRoles(opts.roles)}${arches ? `; ${arches}` : ""}, ${opts.channel} channel), state in ${home}`);
    // 1. Build what is needed, boot, and wait for quorum and autopilot's health.
    const upStarted = Date.now();
    const up = await cli(["up", "--name", name, "--roles", formatRoleCounts(opts.roles), "--channel", opts.channel, ...(opts.arch ? ["--arch", opts.arch] : []), "--timeout", String(opts.upTimeoutSeconds), ...(opts.offline ? ["--offline"] : [])]);
    const upCase: TestCase = { name: "cluster comes up healthy", classname: "resin.cluster", seconds: (Date.now() - upStarted) / 1000, outcome: "passed", output: printable(up.all ?? "") };
    if (up.exitCode !== 0) {
      upCase.outcome = "failed";
      upCase.message = interrupted ? `interrupted by ${interrupted}` : `resin up exited ${up.exitCode}: ${printable((up.stderr || "").trim().split("\n").find((l) => l.startsWith("resin: ")) ?? "see its output")}`;
      await keepLogs(upCase);
      cases.push(upCase);
      skipRest("the cluster did not come up", ["consul: service checks", ...scripts.map(scriptCase)]);
      return false;
    }
    cases.push(upCase);

    // 2. Every check of every service Consul knows, until all pass or the bound.
    const checks = await waitForChecks(cluster, opts.checksTimeoutSeconds, abort.signal);
    for (const c of checkCases(checks.last, checks.expected, checks.passedAfter, opts.checksTimeoutSeconds)) {
      if (c.outcome === "failed" && c.service) {
        // The log of the image's service that declares it, on each node where it is missing or a check fails.
        const bad = checks.last.checks.filter((k) => k.serviceName === c.service && k.status !== "passing").map((k) => k.node);
        const missing = (checks.expected.get(c.service) ?? []).filter((n) => !(checks.last.registered.get(c.service) ?? []).includes(n));
        await keepLogs(c, [...new Set([...bad, ...missing])].map((node) => ({ node, service: checks.owners.get(`${node}/${c.service}`) ?? c.service })));
      } else if (c.outcome === "failed") await keepLogs(c);
      cases.push(c);
    }

    // 3. The project's own scripts, on the host, with the cluster's environment.
    const exported = parseExports((await cli(["env", "--name", name])).stdout ?? "");
    const scriptEnv = { ...env, ...exported, PATH: `${join(installRoot(), "bin")}:${process.env.PATH ?? ""}` };
    for (const script of scripts) {
      if (interrupted) {
        skipRest(`interrupted by ${interrupted}`, [scriptCase(script)]);
        continue;
      }
      const t0 = Date.now();
      const r = await execa(script, [], { cwd: opts.project, env: scriptEnv, reject: false, all: true, stdin: "ignore", timeout: opts.scriptTimeoutSeconds * 1000, cancelSignal: abort.signal });
      const c: TestCase = { name: scriptCase(script), classname: "resin.tests", seconds: (Date.now() - t0) / 1000, outcome: r.exitCode === 0 ? "passed" : "failed", output: printable(r.all ?? "") };
      if (c.outcome === "failed") {
        c.message = interrupted ? `interrupted by ${interrupted}` : r.timedOut ? `timed out after ${opts.scriptTimeoutSeconds}s` : `exited ${r.exitCode ?? r.signal}`;
        await keepLogs(c);
      }
      cases.push(c);
    }
    return cases.every((c) => c.outcome === "passed") && !interrupted;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (opts.junit) await writeFile(opts.junit, junitXml({ name: `resin test ${basename(opts.project)}`, timestamp: started.toISOString(), hostname: hostname(), cases }));
    process.stdout.write(`${formatSummary(cases)}\n`);
    if (cases.some((c) => c.outcome === "failed")) process.stdout.write(`logs of the failed cases: ${failures}\n`);
    if (opts.junit) process.stdout.write(`JUnit XML: ${opts.junit}\n`);
    await teardown(cluster, home, opts.keep && !interrupted, opts.log, env);
    if (interrupted) process.exit(interrupted === "SIGINT" ? 130 : 143);
  }
}

async function waitForChecks(cluster: ClusterHandle, timeoutSeconds: number, signal: AbortSignal) {
  const state = await cluster.require();
  const keys = consulKeys(await readSecrets(cluster.secrets), state.datacenter);
  // The servers answer with the whole catalog; a client agent's own token sees less.
  const endpoints = state.nodes.map((n) => consulEndpoint(n, keys)).filter((e): e is ConsulEndpoint => e !== undefined && isConsulServer(e));
  // What each node's image registers: Consul must have every one of them, on that node;
  // and which of the image's services declares it (whose log to keep when it fails).
  const expected = new Map<string, string[]>();
  const owners = new Map<string, string>();
  for (const node of await nodesRegistering(cluster, state)) {
    for (const r of node.registrations) {
      expected.set(r.name, [...(expected.get(r.name) ?? []), node.name]);
      owners.set(`${node.name}/${r.name}`, r.service);
    }
  }
  const started = Date.now();
  const passedAfter = new Map<string, number>();
  let last: ConsulSnapshot = { checks: [], registered: new Map() };
  for (;;) {
    for (const ep of endpoints) {
      const snap = await consulSnapshot(ep, [...expected.keys()]).catch(() => undefined);
      if (snap) {
        last = snap;
        break;
      }
    }
    const elapsed = (Date.now() - started) / 1000;
    const cases = checkCases(last, expected, new Map(), timeoutSeconds);
    for (const c of cases) {
      if (c.outcome === "passed" && !passedAfter.has(c.service) && (c.service !== "" || last.checks.length > 0)) passedAfter.set(c.service, elapsed);
    }
    const done = last.checks.length > 0 && cases.every((c) => c.outcome === "passed");
    if (done || elapsed >= timeoutSeconds || signal.aborted) return { last, expected, owners, passedAfter };
    await sleep(1000);
  }
}

async function consulSnapshot(ep: ConsulEndpoint, services: string[]): Promise<ConsulSnapshot> {
  const checks = await consulChecks(ep);
  const registered = new Map<string, string[]>();
  for (const s of services) registered.set(s, await consulServiceNodes(ep, s));
  return { checks, registered };
}

async function teardown(cluster: ClusterHandle, home: string, keep: boolean, log: Log, env: NodeJS.ProcessEnv): Promise<void> {
  const { name } = cluster;
  if (keep) {
    log(`resin test: kept cluster ${name}: RESIN_STATE_HOME=${home} resin status --name ${name}`);
    log(`  remove it with: RESIN_STATE_HOME=${home} resin destroy ${name} --yes && rm -r ${home}`);
    return;
  }
  const r = await resin(["destroy", name, "--yes"], env);
  if (r.exitCode !== 0 && existsSync(cluster.dir)) {
    log(`resin test: could not destroy cluster ${name}: ${printable(r.all ?? "")}`);
    return; // its state stays, so its VMs can still be found and stopped
  }
  await rm(home, { recursive: true, force: true });
  log(`resin test: cluster ${name} destroyed`);
}
