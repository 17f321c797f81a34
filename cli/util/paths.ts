// Where Resin keeps things on the host. Environment variables override the XDG
// defaults so that tests and CI can point each at a scratch directory.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Cache of downloaded and derived artifacts: safe to delete, costs a re-download. */
export function cacheHome(): string {
  if (process.env.RESIN_CACHE_HOME) return resolve(process.env.RESIN_CACHE_HOME);
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(xdg, "resin");
}

/** Cluster state (secrets, persist disks, pids): never deleted except by `resin destroy`. */
export function stateHome(): string {
  if (process.env.RESIN_STATE_HOME) return resolve(process.env.RESIN_STATE_HOME);
  const xdg = process.env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(xdg, "resin");
}

/** The directory of the resin installation itself (holds the stock machines/ and services/). */
export function installRoot(): string {
  // dist/cli/util/paths.js or cli/util/paths.ts → three or two levels up; look for package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("resin: cannot find its own package.json");
    dir = up;
  }
  return dir;
}

/**
 * The project: the nearest directory at or above `start` that has machines/ (a user's
 * own roles, and services/ if it adds services; Resin's stock ones are always there
 * beneath them), else the installation itself. The project holds out/ and resin.lock.json.
 */
export function projectRoot(start = process.cwd()): string {
  if (process.env.RESIN_PROJECT) return resolve(process.env.RESIN_PROJECT);
  let dir = resolve(start);
  for (;;) {
    if (existsSync(join(dir, "machines"))) return dir;
    const up = dirname(dir);
    if (up === dir) return installRoot();
    dir = up;
  }
}
