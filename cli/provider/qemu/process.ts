// Processes Resin started (QEMU, vde_switch), found again by pid. A pid is only
// trusted when /proc/<pid>/cmdline still names the file we gave that process, so a
// reused pid is never signalled.
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";

export function isOurs(pid: number | undefined, marker: string): boolean {
  if (!pid || !existsSync(`/proc/${pid}/cmdline`)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // A zombie (state Z) has exited; it only waits for its parent to reap it.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return cmdline.includes(marker) && state !== "Z";
  } catch {
    return false;
  }
}

export async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, "utf8").catch(() => "");
  const pid = parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, wait up to `graceMs`, then SIGKILL. Returns once the process is gone. */
export async function stopProcess(pid: number, marker: string, graceMs = 10_000): Promise<void> {
  if (!isOurs(pid, marker)) return;
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isOurs(pid, marker) && Date.now() < deadline) await sleep(100);
  if (isOurs(pid, marker)) {
    process.kill(pid, "SIGKILL");
    while (isOurs(pid, marker)) await sleep(50);
  }
}

export async function waitForExit(pid: number, marker: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isOurs(pid, marker) && Date.now() < deadline) await sleep(100);
  return !isOurs(pid, marker);
}
