// Shared by the bench: running commands with timings, statistics, cleanup that runs
// even when a step fails (or the bench is interrupted), and what the host sees of a VM.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { QEMU } from "../cli/provider/qemu/accel.js";
import { readPid } from "../cli/provider/qemu/process.js";
import { stopSwitch, type SwitchPaths } from "../cli/provider/qemu/vde.js";
import { consoleTail, stopVm, vmPaths } from "../cli/provider/qemu/vm.js";

/** The repository: dist/bench/util.js → two levels up. */
export const repoRoot = resolve(import.meta.dirname, "..", "..");
export const resinCli = join(repoRoot, "dist", "cli", "main.js");

export const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

/** Programs running now, so that an interrupted bench can stop them (by pid) before cleaning up. */
const children = new Set<ChildProcess>();

export function stopChildren(): void {
  for (const child of children) {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
}

/** Wait (up to timeoutMs) for the programs still running to end. */
export async function waitForChildren(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (children.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * Run a program to completion. Its stderr is shown (indented) when `echo` is set, so a
 * long step shows its progress. Throws when it fails unless `allowFail`.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; echo?: boolean; allowFail?: boolean; what?: string } = {},
): Promise<RunResult> {
  const started = process.hrtime.bigint();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    let pending = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      if (!opts.echo) return;
      pending += d;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) process.stderr.write(`    | ${line}\n`);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      children.delete(child);
      if (opts.echo && pending) process.stderr.write(`    | ${pending}\n`);
      const result = { code: code ?? -1, stdout, stderr, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
      if (result.code !== 0 && !opts.allowFail) {
        const tail = (stderr || stdout).trim().split("\n").slice(-25).join("\n");
        reject(new Error(`${opts.what ?? `${cmd} ${args.join(" ")}`} failed (exit ${result.code})${tail ? `:\n${tail}` : ""}`));
      } else resolvePromise(result);
    });
  });
}

/** The resin CLI as a user runs it. */
export function resin(args: string[], env: Record<string, string> = {}, opts: { echo?: boolean; allowFail?: boolean } = {}): Promise<RunResult> {
  return run(process.execPath, [resinCli, ...args], { env, ...opts, what: `resin ${args.join(" ")}` });
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export interface Sample {
  median: number;
  all: number[];
}
export const sample = (all: number[]): Sample => ({ median: median(all), all });

/** generic ÷ Resin; undefined when either side is missing. */
export const ratio = (generic: number | undefined, resinValue: number | undefined): number | undefined =>
  generic !== undefined && resinValue !== undefined && resinValue > 0 && Number.isFinite(generic) ? generic / resinValue : undefined;

// ---- cleanup: every VM, switch and temporary directory is registered as it is made,
// and released in reverse order at the end, on failure and on SIGINT/SIGTERM.

type Cleanup = { what: string; fn: () => Promise<void> | void };
const cleanups: Cleanup[] = [];

export function onCleanup(what: string, fn: () => Promise<void> | void): () => Promise<void> {
  const entry = { what, fn };
  cleanups.push(entry);
  // Release now (and only once): the caller is done with the resource.
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i < 0) return;
    cleanups.splice(i, 1);
    await entry.fn();
  };
}

let cleaning: Promise<void> | undefined;

/** Release everything still registered. Concurrent callers (a failure and a signal) share one pass. */
export function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const { what, fn } = cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        log(`cleanup (${what}) failed: ${(e as Error).message}`);
      }
    }
  })().finally(() => {
    cleaning = undefined;
  });
  return cleaning;
}

export function rmDirNow(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Remove a directory, registering it first so that it goes even if the bench fails. */
export function tempDirCleanup(dir: string): () => Promise<void> {
  return onCleanup(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
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
      // ended while we looked
    }
  }
  return pids;
}

/** Last resort: SIGKILL, by pid, any QEMU or switch still running from `dir`. */
export function killLeftovers(dir: string): number[] {
  const pids = processesUnder(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return pids;
}

// ---- memory as the host sees a VM

export interface VmMemory {
  /** VmRSS of the QEMU process: guest RAM it has touched, TCG's translated code, QEMU itself. */
  qemuRssKiB: number;
  /** Rss of the guest-RAM mapping alone (the anonymous rw mapping exactly the VM's memory size). */
  guestRamResidentKiB?: number;
}

export function vmMemory(pid: number, memoryMib: number): VmMemory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const qemuRssKiB = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? NaN);
  let guestRamResidentKiB: number | undefined;
  let header = "";
  let size = 0;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) header = line;
    else if (line.startsWith("Size:")) size = Number(line.split(/\s+/)[1]);
    else if (line.startsWith("Rss:") && size === memoryMib * 1024 && / rw-p 00000000 00:00 0\s*$/.test(header)) {
      guestRamResidentKiB = (guestRamResidentKiB ?? 0) + Number(line.split(/\s+/)[1]);
    }
  }
  return { qemuRssKiB, guestRamResidentKiB };
}

/** Apparent bytes of the regular files under `dir` (hard links counted once). */
export async function treeBytes(dir: string, skip: (rel: string) => boolean = () => false): Promise<number> {
  let total = 0;
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of await readdir(join(dir, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      if (skip(path)) continue;
      const st = await lstat(join(dir, path));
      if (st.isDirectory()) await walk(path);
      else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
        total += st.size;
      }
    }
  };
  await walk("");
  return total;
}


/** After a failed boot: the last console lines of each node (QEMU node directory), on stderr. */
export async function showConsoles(what: string, dirs: string[]): Promise<void> {
  for (const d of dirs) {
    const tail = await consoleTail(d, 25);
    if (tail.trim()) process.stderr.write(`--- console of ${what} node in ${d} (last lines):\n${tail}\n`);
  }
}

/**
 * The VMs and switch of a cluster the bench boots itself (generic, floor), stopped by
 * pid at the end, on failure and on SIGINT: each VM, the switch, then anything left
 * under `home`.
 */
export function benchVmsCleanup(what: string, home: string, dirs: string[], sw: SwitchPaths): () => Promise<void> {
  return onCleanup(`${what} VMs`, async () => {
    await Promise.all(dirs.map((d) => stopVm(d, { graceMs: 0 })));
    await stopSwitch(sw);
    const left = killLeftovers(home);
    if (left.length) log(`killed leftover processes ${left.join(", ")} under ${home}`);
  });
}

/** Launch one daemonised QEMU with `args` for the node in `dir`; returns its pid. */
export async function launchVm(what: string, dir: string, args: string[]): Promise<number> {
  await run(QEMU, args, { what: `QEMU (${what})` });
  const pid = await readPid(vmPaths(dir).pidFile);
  if (!pid) throw new Error(`QEMU for ${what} wrote no pid file`);
  return pid;
}
