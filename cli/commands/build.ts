// `resin build`: spec → artifacts → image for each named role.
import { join } from "node:path";
import { listRoles, loadRole, type Role } from "../spec/load.js";
import type { Channel } from "../spec/schema.js";
import { debRequests, ensureDebs } from "../artifacts/debian.js";
import { readLock, writeLock } from "../artifacts/lock.js";
import { cachedRelease, fetchRelease, missingReleaseError } from "../artifacts/official.js";
import type { ReleaseRef } from "../artifacts/releases.js";
import { buildImage, type BuiltImage } from "../image/build.js";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import type { Log } from "../util/log.js";

export interface BuildOptions {
  project: string;
  roles?: string[];
  channel: Channel;
  /** Never download: use only what the cache holds (RESIN_OFFLINE=1 sets this too). */
  offline?: boolean;
  updateLock?: boolean;
  log: Log;
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
  const blocked = new Set(missing.flatMap((m) => m.roles));
  const buildable = roles.map((r) => r.spec.role).filter((r) => !blocked.has(r));
  const base = missingReleaseError(missing.map((m) => m.ref));
  const reasons = missing.map((m) => `  ${m.ref.product} ${m.ref.version} (needed by ${m.roles.join(", ")}): ${m.why}`).join("\n");
  const alternative = buildable.length
    ? `or build only the roles whose artifacts are here: resin build ${buildable.join(" ")} --channel ${opts.channel}`
    : `or use the Debian channel where the roles allow it: resin build consul-server --channel debian`;
  throw new ResinError(`${base.message}\n${reasons}`, `${base.hint}\n${alternative}`);
}

export async function buildRoles(opts: BuildOptions): Promise<BuiltImage[]> {
  const names = opts.roles?.length ? opts.roles : await listRoles(opts.project);
  // Load every spec first: a mistake in any of them stops the build before any download.
  const roles: Role[] = [];
  for (const name of names) roles.push(await loadRole(opts.project, name, opts.channel));
  requireTools(["depmod", "mksquashfs", "dpkg-deb", "apt-get"]);

  await ensureReleases(roles, opts);
  const lockPath = join(opts.project, "resin.lock.json");
  const lock = await readLock(lockPath);
  const requests = await debRequests(roles.flatMap((r) => r.services));
  const { changed } = await ensureDebs(requests, lock, opts.log, { updateLock: opts.updateLock });
  if (changed) {
    await writeLock(lockPath, lock);
    opts.log(`  updated ${lockPath}`);
  }

  const images: BuiltImage[] = [];
  for (const role of roles) {
    const image = await buildImage(opts.project, role, lock, opts.log);
    opts.log(`${image.cached ? "up to date" : "built"}: ${role.spec.role} (${opts.channel}) ${image.manifest.digest.slice(0, 19)} in ${image.dir}`);
    images.push(image);
  }
  return images;
}
