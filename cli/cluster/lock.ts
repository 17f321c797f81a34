// One state-changing resin command per cluster at a time. The lock is a file created
// exclusively next to the cluster's directory, holding the owner's pid; a lock whose
// owner has died is taken over.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { ResinError } from "../util/errors.js";
import { clustersDir } from "./state.js";

function lockPath(name: string): string {
  return join(clustersDir(), `${name}.lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function withClusterLock<T>(name: string, action: string, fn: () => Promise<T>): Promise<T> {
  const path = lockPath(name);
  await mkdir(clustersDir(), { recursive: true });
  for (;;) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(`${process.pid} ${action}\n`);
      await handle.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const [pid, ...what] = (existsSync(path) ? readFileSync(path, "utf8") : "").trim().split(" ");
      if (pid && alive(Number(pid))) {
        throw new ResinError(
          `cluster '${name}' is busy: another resin command (pid ${pid}, ${what.join(" ") || "unknown"}) is changing it`,
          `wait for it to finish; if no such command runs, remove ${path}`,
        );
      }
      await rm(path, { force: true }); // its owner is gone: take the lock over
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}
