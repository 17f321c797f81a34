// `resin build`: spec → artifacts → image for each named role.
import { join } from "node:path";
import { listRoles, loadRole, type Role } from "../spec/load.js";
import { debRequests, ensureDebs } from "../artifacts/debian.js";
import { readLock, writeLock } from "../artifacts/lock.js";
import { buildImage, type BuiltImage } from "../image/build.js";
import { requireTools } from "../util/tools.js";
import type { Log } from "../util/log.js";

export interface BuildOptions {
  project: string;
  roles?: string[];
  updateLock?: boolean;
  log: Log;
}

export async function buildRoles(opts: BuildOptions): Promise<BuiltImage[]> {
  const names = opts.roles?.length ? opts.roles : await listRoles(opts.project);
  // Load every spec first: a mistake in any of them stops the build before any download.
  const roles: Role[] = [];
  for (const name of names) roles.push(await loadRole(opts.project, name));
  requireTools(["depmod", "mksquashfs", "dpkg-deb", "apt-get"]);

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
    opts.log(`${image.cached ? "up to date" : "built"}: ${role.spec.role} ${image.manifest.digest.slice(0, 19)} (initrd ${(image.manifest.initrd.size / 1e6).toFixed(1)} MB) in ${image.dir}`);
    images.push(image);
  }
  return images;
}
