// Shared by the e2e suites: run the real resin CLI, and make sure no VM or switch
// outlives a test.
import { execFileSync, spawnSync } from "node:child_process";
import { execa } from "execa";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { join, resolve } from "node:path";
import { agentAccess, consulKeys, type ConsulEndpoint } from "../../cli/cluster/consul.js";
import type { Secrets } from "../../cli/bootstrap/secrets.js";
import { StatusSchema, type ClusterStatus } from "../../cli/commands/status.js";

export const repoRoot = resolve(import.meta.dirname, "..", "..");

/**
 * A user's project as `resin` finds one: a directory with machines/ (empty here). Resin's
 * stock roles and services are beneath it, and its resin.lock.json starts from Resin's pins.
 */
export { overrideStock, userProject } from "../../bench/project.js";
export const cliPath = join(repoRoot, "dist", "cli", "main.js");

declare module "vitest" {
  export interface ProvidedContext {
    /** The image set built once for the whole e2e run. */
    imageDigests: Record<string, string>;
  }
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a command that takes long (up, down, start, stop, build, upgrade …) without
 * blocking the test worker: vitest's worker must keep answering its own heartbeat.
 */
export async function resinAsync(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 15 * 60_000, cwd = repoRoot): Promise<CliResult> {
  // A variable set to undefined in `env` is left out of the child's environment.
  const r = await execa(process.execPath, [cliPath, ...args], { cwd, env: { ...process.env, ...env }, extendEnv: false, timeout: timeoutMs, reject: false });
  return { status: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Run a quick command (status, ls, a bad-input check) and wait for it. */
export function resin(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 10 * 60_000): CliResult {
  const result = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: timeoutMs,
  });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/**
 * `resin status --name <name> --json` for the cluster in `stateHome`, checked and parsed
 * with StatusSchema. It exits 0 when the cluster is healthy and 3 when it answered but is
 * not (stopped, crashed, no leader yet: the JSON says why); any other exit fails the
 * test with the command's stderr, and so does an exit code that disagrees with `healthy`.
 */
export function resinStatus(stateHome: string, name: string): ClusterStatus {
  const r = resin(["status", "--name", name, "--json"], { RESIN_STATE_HOME: stateHome });
  expect([0, 3], `resin status --name ${name} --json exited ${r.status}:\n${r.stderr}`).toContain(r.status);
  const status = StatusSchema.parse(JSON.parse(r.stdout));
  expect(r.status, `resin status --name ${name} exits 0 exactly when the cluster is healthy`).toBe(status.healthy ? 0 : 3);
  return status;
}

/** Pids of QEMU or vde_switch processes whose command line mentions `dir`. */
export function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const zombie = stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
      if (!zombie && cmdline.includes(dir) && /qemu-system|vde_switch/.test(cmdline)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** Last resort after a failed test: stop, by pid, anything still running from `dir`. */
export function killLeftovers(dir: string): void {
  for (const pid of processesUnder(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export function clusterJson(stateHome: string, name: string): { datacenter: string; nodes: { name: string; ports: Record<string, number> }[] } {
  return JSON.parse(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8"));
}

/**
 * How the host reaches a node's Consul API, as Resin does: HTTPS port, Consul's CA, the
 * host's Consul certificate; a server checked by server.<dc>.consul and given the
 * management token, a client agent checked by its node name and given its own token.
 */
export function consulAt(stateHome: string, name: string, node: string): ConsulEndpoint {
  const secrets = JSON.parse(readFileSync(join(stateHome, "clusters", name, "secrets.json"), "utf8")) as Secrets;
  const state = clusterJson(stateHome, name);
  const port = state.nodes.find((n) => n.name === node)!.ports["consul.https"]!;
  return { port, ...agentAccess(consulKeys(secrets, state.datacenter), node) };
}

export function fileBytes(path: string): string | undefined {
  return existsSync(path) ? execFileSync("sha256sum", [path], { encoding: "utf8" }).split(" ")[0] : undefined;
}

/**
 * Keep the evidence of a failed test: before the suite's afterAll deletes its state
 * directory, copy every node's console and QEMU log (never secrets or disks) to
 * out/e2e-failures/<suite>/<test>/ and say where.
 */
export function keepLogsOnFailure(stateHome: string, suite: string): void {
  afterEach((ctx) => {
    if (ctx.task.result?.state !== "fail") return;
    const clusters = join(stateHome, "clusters");
    if (!existsSync(clusters)) return;
    const dest = join(repoRoot, "out", "e2e-failures", suite, ctx.task.name.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 80));
    let kept = 0;
    for (const cluster of readdirSync(clusters)) {
      const nodes = join(clusters, cluster, "nodes");
      if (!existsSync(nodes)) continue;
      for (const node of readdirSync(nodes)) {
        for (const file of ["console.log", "qemu.log"]) {
          const from = join(nodes, node, file);
          if (!existsSync(from)) continue;
          mkdirSync(join(dest, cluster, node), { recursive: true });
          copyFileSync(from, join(dest, cluster, node, file));
          kept++;
        }
      }
    }
    if (kept) process.stderr.write(`e2e: ${suite}: "${ctx.task.name}" failed; its console logs are kept in ${dest}\n`);
  });
}

/**
 * The suite's three-node consul-server cluster (debian channel): `resin up` (with `opts.args`,
 * e.g. --arch arm64) before its tests, and after them destroyed, anything left killed and
 * its state directory removed. The returned object holds `resin up`'s result once it ran.
 */
export function consulServerClusterForSuite(name: string, stateHome: string, env: Record<string, string | undefined>, opts: { args?: string[]; timeoutSeconds?: number } = {}): { up?: CliResult } {
  const run: { up?: CliResult } = {};
  beforeAll(async () => {
    const r = await resinAsync(["up", "--name", name, "--role", "consul-server", "--channel", "debian", "--timeout", String(opts.timeoutSeconds ?? 420), ...(opts.args ?? [])], env);
    run.up = r;
    if (r.status !== 0) throw new Error(`resin up failed:\n${r.stderr}`);
  });
  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
  });
  return run;
}

/**
 * Poll `probe` every `everyMs` until it gives a value (a throw counts as "not yet");
 * past `timeoutMs`, fail naming `what` and the probe's last error.
 */
export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
