// One state-changing resin command per cluster at a time. The lock is a file next to
// the cluster's directory holding the owner's pid and what it does. It is published
// whole: written to a private temp file, then hard-linked into place, which fails if a
// lock exists, so no command ever reads a lock without its content.
//
// A lock whose owner has died is taken over without ever moving a live lock: the taker
// first creates, exclusively, a marker named after that one lock file (its inode and
// change time), then checks the lock is still that file, and only then removes it.
// Of any number of commands that found the same stale lock only the marker's creator
// removes it; the others find the marker (busy) or, once it is gone, a different lock.
// Then every taker publishes its own lock as usual, and the link admits one owner.
import { randomBytes } from "node:crypto";
import { link, mkdir, open, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { ResinError } from "../util/errors.js";
import type { ClusterHandle } from "./state.js";

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
  /** This lock file and no other: its inode and change time (an inode number alone is reused). */
  id: string;
}

/** Who holds the lock at `path`, or undefined when there is no lock. Content and identity come from one open file. */
async function holder(path: string): Promise<Holder | undefined> {
  let file;
  try {
    file = await open(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    const [text, info] = await Promise.all([file.readFile("utf8"), file.stat({ bigint: true })]);
    const [pid, ...what] = text.trim().split(" ");
    const n = Number(pid);
    return { pid: Number.isInteger(n) && n > 0 ? n : undefined, action: what.join(" ") || "unknown", id: `${info.ino}-${info.ctimeNs}` };
  } finally {
    await file.close();
  }
}

/** Test seams: a pause after a command finds a stale lock and before it acts (the race tests hold contenders there). */
export interface LockHooks {
  onStale?: () => Promise<void>;
}

const busy = (name: string, path: string, who: Holder | undefined, doing = "is changing it") =>
  new ResinError(
    `cluster '${name}' is busy: another resin command (${who?.pid ? `pid ${who.pid}, ` : ""}${who?.action ?? "unknown"}) ${doing}`,
    `wait for it to finish; if no such command runs, remove ${path}`,
  );

/** Take the lock or throw; returns the identity of the lock we published. */
async function acquire(cluster: ClusterHandle, action: string, hooks: LockHooks): Promise<string> {
  const { name, lock: path } = cluster;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 }); // the clusters directory
  const nonce = randomBytes(6).toString("hex");
  const content = `${process.pid} ${action}\n`;
  /** Put `content` at `at` whole (a private temp file, hard-linked into place): false if something is there. */
  const publish = async (at: string): Promise<boolean> => {
    const tmp = `${path}.${process.pid}.${nonce}`;
    await writeFile(tmp, content, { flag: "wx", mode: 0o600 });
    try {
      await link(tmp, at); // atomic: the file appears with its content, or not at all
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      return false;
    } finally {
      await rm(tmp, { force: true });
    }
  };
  for (let attempt = 0; attempt < 20; attempt++) {
    if (await publish(path)) {
      const mine = await holder(path); // ours: no one removes a live lock
      if (mine) return mine.id;
      continue;
    }
    const current = await holder(path);
    if (!current) continue; // released meanwhile: try again
    if (current.pid === undefined || alive(current.pid)) throw busy(name, path, current);
    await hooks.onStale?.();
    // Its owner is gone. Only the creator of this lock file's marker may remove it.
    const marker = `${path}.takeover.${current.id}`;
    if (!(await publish(marker))) {
      const taker = await holder(marker);
      if (!taker) continue; // that takeover just finished: look again
      if (taker.pid !== undefined && alive(taker.pid)) throw busy(name, path, taker, "is taking over its stale lock");
      throw new ResinError(
        `cluster '${name}': its lock ${path} was left by a command that died, and so was the command that took it over (${marker})`,
        `if no resin command runs on this cluster, remove ${path} and ${marker}`,
      );
    }
    try {
      // Still that stale file? Then no one else may remove it now, and we do.
      if ((await holder(path))?.id === current.id) await rm(path, { force: true });
    } finally {
      await rm(marker, { force: true });
    }
  }
  throw new ResinError(`cluster '${name}': could not take its lock ${path}`, "other resin commands keep taking it; try again");
}

export async function withClusterLock<T>(cluster: ClusterHandle, action: string, fn: () => Promise<T>, hooks: LockHooks = {}): Promise<T> {
  const id = await acquire(cluster, action, hooks);
  const path = cluster.lock;
  try {
    return await fn();
  } finally {
    // Remove only our own lock, never one a later command published.
    if ((await holder(path))?.id === id) await rm(path, { force: true });
  }
}
