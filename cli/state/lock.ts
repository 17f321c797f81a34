// One state-changing resin command per cluster at a time. The lock is a file next to
// the cluster's directory holding the owner's pid and what it does. It is published
// whole: written to a private temp file, then hard-linked into place, which fails if a
// lock exists, so no command ever reads a lock without its content. A lock whose owner
// has died is taken over by first renaming it to a private name: of two commands that
// find it stale only one rename succeeds, and the other finds the new owner's lock.
import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ResinError } from "../util/errors.js";
import { clusterPaths, clustersDir } from "./state.js";

export function lockPath(name: string): string {
  clusterPaths(name); // checks the name
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

interface Holder {
  pid?: number;
  action: string;
  ino: number;
}

/** Who holds the lock at `path`, or undefined when there is no lock. */
async function holder(path: string): Promise<Holder | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(path, "utf8"), stat(path)]);
    const [pid, ...what] = text.trim().split(" ");
    const n = Number(pid);
    return { pid: Number.isInteger(n) && n > 0 ? n : undefined, action: what.join(" ") || "unknown", ino: info.ino };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** Take the lock or throw; returns the inode of the lock we published. */
async function acquire(name: string, action: string): Promise<number> {
  const path = lockPath(name);
  await mkdir(clustersDir(), { recursive: true, mode: 0o700 });
  const nonce = randomBytes(6).toString("hex");
  for (let attempt = 0; attempt < 20; attempt++) {
    const tmp = `${path}.${process.pid}.${nonce}`;
    await writeFile(tmp, `${process.pid} ${action}\n`, { flag: "wx", mode: 0o600 });
    try {
      await link(tmp, path); // atomic: the lock appears with its content, or not at all
      return (await stat(tmp)).ino;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    } finally {
      await rm(tmp, { force: true });
    }
    const current = await holder(path);
    if (!current) continue; // released meanwhile: try again
    if (current.pid === undefined || alive(current.pid)) {
      throw new ResinError(
        `cluster '${name}' is busy: another resin command (${current.pid ? `pid ${current.pid}, ` : ""}${current.action}) is changing it`,
        `wait for it to finish; if no such command runs, remove ${path}`,
      );
    }
    // Its owner is gone. Move it aside first; only one taker's rename can succeed.
    const aside = `${path}.stale.${process.pid}.${nonce}`;
    try {
      await rename(path, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw e;
    }
    const moved = await stat(aside);
    if (moved.ino !== current.ino) {
      // Someone took the stale lock over between our look and our rename: that lock is
      // live. Put it back and report it as busy.
      await link(aside, path).catch(() => undefined);
      await rm(aside, { force: true });
      const now = await holder(path);
      throw new ResinError(`cluster '${name}' is busy: another resin command (${now?.pid ? `pid ${now.pid}, ` : ""}${now?.action ?? "unknown"}) has just taken its lock`, "wait for it to finish");
    }
    await rm(aside, { force: true });
  }
  throw new ResinError(`cluster '${name}': could not take its lock ${path}`, "other resin commands keep taking it; try again");
}

export async function withClusterLock<T>(name: string, action: string, fn: () => Promise<T>): Promise<T> {
  const ino = await acquire(name, action);
  const path = lockPath(name);
  try {
    return await fn();
  } finally {
    // Remove only our own lock, never one a later command published.
    if ((await holder(path))?.ino === ino) await rm(path, { force: true });
  }
}
