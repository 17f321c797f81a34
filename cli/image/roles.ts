// Build roles' images: spec → artifacts → image for each named role (`resin build`, and the
// builds `resin up`, `plan` and `upgrade` start from).
import { join } from "node:path";
import { listRoles, loadRole, shownPath, type Role } from "../spec/load.js";
import { CHANNELS, type Channel } from "../spec/schema.js";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Debs, debRequests } from "../artifacts/debian.js";
import { readLock, writeLock } from "../artifacts/lock.js";
import { cachedRelease, fetchRelease, missingReleaseError } from "../artifacts/official.js";
import type { ReleaseRef } from "../artifacts/releases.js";
import { buildImage, type BuildCheck, type BuiltImage } from "./build.js";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import type { Log } from "../util/log.js";
import { installRoot } from "../util/paths.js";
import { DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export interface BuildOptions {
  project: string;
  roles?: string[];
  channel: Channel;
  /** The architecture the images are for (amd64 when absent). */
  arch?: Arch;
  /** Never download: use only what the cache holds (RESIN_OFFLINE=1 sets this too). */
  offline?: boolean;
  updateLock?: boolean;
  log: Log;
  /** Runs the roles' build checks (cli/bootstrap/build-checks.ts: runBuildChecks). */
  check: BuildCheck;
}

export function offlineByDefault(): boolean {
  return process.env.RESIN_OFFLINE === "1";
}

/**
 * Make sure every official release the roles need is cached and verified. Anything that
 * cannot be had stops the build here, before any image is made or VM booted, with the
 * commands that fix it and the roles that can be built without it.
 */
async function ensureReleases(roles: Role[], opts: BuildOptions): Promise<void> {
  const needed = new Map<string, { ref: ReleaseRef; roles: string[] }>();
  for (const role of roles) {
    for (const s of role.services) {
      if (!s.release) continue;
      const key = `${s.release.product}@${s.release.version}`;
      const entry = needed.get(key) ?? { ref: { product: s.release.product, version: s.release.version }, roles: [] };
      entry.roles.push(role.spec.role);
      needed.set(key, entry);
    }
  }
  const missing: { ref: ReleaseRef; roles: string[]; why: string }[] = [];
  for (const { ref, roles: users } of needed.values()) {
    if (await cachedRelease(ref)) continue;
    if (opts.offline) {
      missing.push({ ref, roles: users, why: "offline" });
      continue;
    }
    try {
      await fetchRelease(ref, { log: opts.log });
    } catch (e) {
      missing.push({ ref, roles: users, why: (e as Error).message.split("\n")[0]! });
    }
  }
  if (missing.length === 0) return;
  const base = missingReleaseError(missing.map((m) => m.ref));
  const reasons = missing.map((m) => `  ${m.ref.product} ${m.ref.version} (needed by ${m.roles.join(", ")}): ${m.why}`).join("\n");
  throw new ResinError(`${base.message}\n${reasons}`, `${base.hint}\n${await buildableNow(opts.project)}`);
}

/** Which roles could be built right now, without the missing releases: the way forward. */
async function buildableNow(project: string): Promise<string> {
  const ready: Record<Channel, string[]> = { official: [], debian: [] };
  for (const name of await listRoles(project)) {
    for (const channel of CHANNELS) {
      const role = await loadRole(project, name, channel).catch(() => undefined);
      if (!role) continue;
      const cached = await Promise.all(role.services.filter((s) => s.release).map((s) => cachedRelease(s.release!)));
      if (cached.every(Boolean)) ready[channel].push(name);
    }
  }
  const options = CHANNELS.filter((c) => ready[c].length).map((c) => `resin build ${ready[c].join(" ")} --channel ${c}`);
  return options.length
    ? `or build only roles whose artifacts are here: ${options.join("  |  ")}`
    : "no role can be built without them";
}

export async function buildRoles(opts: BuildOptions): Promise<BuiltImage[]> {
  const arch = opts.arch ?? DEFAULT_ARCH;
  // Load every spec first: a mistake in any of them stops the build before any download.
  const roles: Role[] = [];
  if (opts.roles?.length) {
    for (const name of opts.roles) roles.push(await loadRole(opts.project, name, opts.channel, installRoot(), arch));
  } else {
    // All roles: those that include a service without this channel are skipped, not errors.
    for (const name of await listRoles(opts.project)) {
      try {
        roles.push(await loadRole(opts.project, name, opts.channel, installRoot(), arch));
      } catch (e) {
        if (!(e instanceof ResinError) || !/has no '\w+' channel/.test(e.message)) throw e;
        opts.log(`skip ${name}: ${e.message}`);
      }
    }
  }
  requireTools(["depmod", "mksquashfs", "dpkg-deb", "apt-get"]);

  // Official releases first: they are what a machine without internet access lacks, and
  // saying so should not wait for Debian downloads. Either stops before any image is made.
  await ensureReleases(roles, opts);
  // The project's own lock pins every package its builds take, stock services' too; a
  // package it has no entry for is pinned as Resin's own lock pins it, when that has one.
  const lockPath = join(opts.project, "resin.lock.json");
  const stockLock = join(installRoot(), "resin.lock.json");
  const lock = await readLock(lockPath);
  const seed = resolve(stockLock) !== resolve(lockPath) && existsSync(stockLock) ? await readLock(stockLock) : undefined;
  const requests = await debRequests(roles.flatMap((r) => r.services), arch);
  const debs = new Debs(lock, opts.log, { updateLock: opts.updateLock, offline: opts.offline, seed, suites: requests.map((r) => r.suite), arch });
  const saveLock = async () => {
    if (!debs.changed) return;
    await writeLock(lockPath, lock);
    opts.log(`  updated ${shownPath(lockPath)}`);
    debs.changed = false;
  };
  try {
    for (const request of requests) await debs.ensure(request);
  } finally {
    await saveLock();
  }

  // A service without `libraries:` may open packages of its Depends closure as it builds.
  const open = async (name: string, suite: string) => {
    const { root, deb } = await debs.open(name, suite);
    return { name, root, label: `${deb.package} ${deb.version}`, deb };
  };
  const images: BuiltImage[] = [];
  for (const role of roles) {
    try {
      const image = await buildImage(opts.project, role, lock, opts.log, opts.check, open);
      opts.log(`${image.cached ? "up to date" : "built"}: ${role.spec.role} (${opts.channel}, ${arch}) ${image.manifest.digest.slice(0, 19)} in ${image.dir}`);
      images.push(image);
    } finally {
      await saveLock();
    }
  }
  return images;
}
