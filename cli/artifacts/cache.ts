// Content-addressed store: a blob's name is its sha256, so a cached file is either
// exactly what the lock file names or absent. Writes go to a temp name first.
import { existsSync } from "node:fs";
import { mkdir, rename, rm, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { cacheHome } from "../util/paths.js";
import { sha256File } from "../util/hash.js";
import { ResinError } from "../util/errors.js";

export function blobPath(sha: string, root = cacheHome()): string {
  return join(root, "blobs", "sha256", sha);
}

export function hasBlob(sha: string, root = cacheHome()): boolean {
  return existsSync(blobPath(sha, root));
}

/** Move (or copy) a file into the store; returns its sha256. Never overwrites an existing blob. */
export async function putBlob(file: string, root = cacheHome(), move = true): Promise<string> {
  const sha = await sha256File(file);
  const dest = blobPath(sha, root);
  if (existsSync(dest)) {
    if (move) await rm(file);
    return sha;
  }
  await mkdir(join(root, "blobs", "sha256"), { recursive: true });
  const tmp = `${dest}.partial-${process.pid}`;
  if (move) await rename(file, tmp);
  else await copyFile(file, tmp);
  await rename(tmp, dest);
  return sha;
}

/** Re-hash a blob before use, so a corrupted cache is caught instead of built into an image. */
export async function verifiedBlob(sha: string, what: string, root = cacheHome()): Promise<string> {
  const path = blobPath(sha, root);
  const actual = await sha256File(path);
  if (actual !== sha) {
    throw new ResinError(
      `cached ${what} is corrupt: ${path} has sha256 ${actual}, expected ${sha}`,
      `delete that file and run the command again to fetch it anew`,
    );
  }
  return path;
}

/** A .deb unpacked once into a directory named by the .deb's sha256. */
export async function unpackedDeb(sha: string, what: string, root = cacheHome()): Promise<string> {
  const dir = join(root, "unpacked", sha);
  if (existsSync(dir)) return dir;
  const deb = await verifiedBlob(sha, what, root);
  const tmp = `${dir}.partial-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await execa("dpkg-deb", ["-x", deb, tmp]);
  await rename(tmp, dir);
  return dir;
}
