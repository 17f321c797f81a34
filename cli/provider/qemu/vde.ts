// One vde_switch per cluster: an L2 segment that exists only inside this user's
// processes (no host interface, no root). VMs attach with -netdev vde,sock=DIR.
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../../util/errors.js";
import { isOurs, readPid, stopProcess } from "./process.js";

export interface SwitchPaths {
  dir: string;
  socket: string;
  pidFile: string;
}

/** How long a daemonised vde_switch may take to write its pid file. */
const PID_FILE_WAIT_MS = 5000;

export function switchPaths(clusterDir: string): SwitchPaths {
  const dir = join(clusterDir, "switch");
  return { dir, socket: join(dir, "ctl"), pidFile: join(dir, "vde.pid") };
}

export async function startSwitch(paths: SwitchPaths): Promise<number> {
  await mkdir(paths.dir, { recursive: true });
  await rm(paths.socket, { recursive: true, force: true });
  await rm(paths.pidFile, { force: true });
  // -d daemonises only after the control socket exists, so VMs can attach right away; the
  // daemon writes its pid file after the fork, so that may come a moment after the exit.
  const result = await execa("vde_switch", ["-s", paths.socket, "-d", "-p", paths.pidFile], { reject: false });
  let pid = await readPid(paths.pidFile);
  for (let waited = 0; result.exitCode === 0 && !pid && waited < PID_FILE_WAIT_MS; waited += 20) {
    await new Promise((r) => setTimeout(r, 20));
    pid = await readPid(paths.pidFile);
  }
  if (result.exitCode !== 0 || !pid || !existsSync(paths.socket)) {
    throw new ResinError(`vde_switch did not start: ${result.stderr || result.stdout || `exit ${result.exitCode}`}`, "is the vde2 package installed? (apt-get install vde2)");
  }
  return pid;
}

export async function switchRunning(paths: SwitchPaths): Promise<number | undefined> {
  const pid = await readPid(paths.pidFile);
  return isOurs(pid, paths.socket) ? pid : undefined;
}

export async function stopSwitch(paths: SwitchPaths): Promise<void> {
  const pid = await readPid(paths.pidFile);
  if (pid) await stopProcess(pid, paths.socket, 3000);
  await rm(paths.pidFile, { force: true });
}
