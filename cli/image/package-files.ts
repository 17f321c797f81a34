// Read files out of an unpacked .deb without ever leaving it: Debian packages hold
// absolute symlinks (/lib64/ld-linux-x86-64.so.2 → /lib/…) that must resolve inside
// the package, not on the build machine.
import { lstat, readFile, readlink } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, posix } from "node:path";

/** Follow symlinks relative to `root`; returns the resolved relative path, or undefined. */
export async function resolveInside(root: string, rel: string): Promise<string | undefined> {
  let path = posix.normalize(rel).replace(/^\/+/, "");
  for (let hops = 0; hops < 40; hops++) {
    // Resolve each leading component, since a directory on the way may itself be a link.
    const parts = path.split("/");
    let resolved = "";
    let changed = false;
    for (let i = 0; i < parts.length; i++) {
      const candidate = resolved ? `${resolved}/${parts[i]}` : parts[i]!;
      const full = join(root, candidate);
      if (!existsSync(full) && !(await lstat(full).catch(() => undefined))) return undefined;
      const stat = await lstat(full);
      if (stat.isSymbolicLink()) {
        const target = await readlink(full);
        const base = target.startsWith("/") ? target.slice(1) : posix.join(posix.dirname(candidate), target);
        path = posix.normalize([base, ...parts.slice(i + 1)].join("/")).replace(/^\/+/, "");
        if (path.startsWith("..")) return undefined;
        changed = true;
        break;
      }
      resolved = candidate;
    }
    if (!changed) return resolved;
  }
  return undefined;
}

export async function readInside(root: string, rel: string): Promise<Buffer | undefined> {
  const resolved = await resolveInside(root, rel);
  if (!resolved) return undefined;
  const stat = await lstat(join(root, resolved));
  return stat.isFile() ? readFile(join(root, resolved)) : undefined;
}

/** The file's permission bits inside the package (after following links). */
export async function modeInside(root: string, rel: string): Promise<number> {
  const resolved = await resolveInside(root, rel);
  return resolved ? (await lstat(join(root, resolved))).mode & 0o7777 : 0o644;
}

/**
 * If `rel` is itself a symlink inside the package (its directories resolved inside the
 * package), the link's target as written; undefined for anything else.
 */
export async function linkInside(root: string, rel: string): Promise<string | undefined> {
  const path = posix.normalize(rel).replace(/^\/+/, "");
  const dir = posix.dirname(path) === "." ? "" : await resolveInside(root, posix.dirname(path));
  if (dir === undefined) return undefined;
  const full = join(root, dir, posix.basename(path));
  const stat = await lstat(full).catch(() => undefined);
  return stat?.isSymbolicLink() ? readlink(full) : undefined;
}

/** Whether the package has `rel` at all: a file, a directory or a symlink (even a dangling one). */
export async function existsInside(root: string, rel: string): Promise<boolean> {
  const path = posix.normalize(rel).replace(/^\/+/, "");
  const dir = posix.dirname(path) === "." ? "" : await resolveInside(root, posix.dirname(path));
  if (dir === undefined) return false;
  return (await lstat(join(root, dir, posix.basename(path))).catch(() => undefined)) !== undefined;
}
