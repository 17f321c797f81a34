// Resolve the Debian packages that roles need to locked versions, and make sure each
// is in the content-addressed cache. With a complete lock and a warm cache this
// runs no apt at all, which is what makes offline rebuilds possible.
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Service } from "../spec/load.js";
import type { Log } from "../util/log.js";
import { cacheHome } from "../util/paths.js";
import { ResinError } from "../util/errors.js";
import { Apt, hostCodename } from "./apt.js";
import { hasBlob, putBlob } from "./cache.js";
import { lockKey, type Lock, type LockedDeb } from "./lock.js";

export interface DebRequest {
  name: string;
  suite: string;
  /** A metapackage (linux-image-amd64) stands for the versioned package it depends on. */
  kernel: boolean;
}

/** Every package a set of services takes files from, with the default suite filled in. */
export async function debRequests(services: Service[]): Promise<DebRequest[]> {
  const host = await hostCodename();
  const requests = new Map<string, DebRequest>();
  const add = (name: string, suite: string | undefined, kernel = false) => {
    const s = suite ?? host;
    requests.set(lockKey(s, name), { name, suite: s, kernel });
  };
  for (const service of services) {
    if (service.kernel) add(service.kernel.package, undefined, true);
    for (const p of service.packages) add(p.name, p.suite);
    for (const lib of service.libraries) add(lib, undefined);
  }
  return [...requests.values()].sort((a, b) => lockKey(a.suite, a.name).localeCompare(lockKey(b.suite, b.name)));
}

/**
 * Fill in missing lock entries (when `updateLock` or absent) and fetch missing blobs.
 * Returns the lock, changed in place where entries were added.
 */
export async function ensureDebs(requests: DebRequest[], lock: Lock, log: Log, opts: { updateLock?: boolean; offline?: boolean } = {}): Promise<{ changed: boolean }> {
  let apt: Apt | undefined;
  const openApt = async (why: string) => {
    if (opts.offline) throw new ResinError(`offline, but ${why}`, "run the build once without --offline (and without RESIN_OFFLINE=1) to fetch it");
    return (apt ??= await Apt.open(requests.map((r) => r.suite)));
  };
  let changed = false;

  for (const request of requests) {
    const key = lockKey(request.suite, request.name);
    let locked = lock.debian[key];
    if (!locked || opts.updateLock) {
      const a = await openApt(`resin.lock.json has no entry for ${key}`);
      let name = request.name;
      let version = await a.candidate(name, request.suite);
      if (request.kernel) {
        // linux-image-amd64 only depends on the current linux-image-<abi>-amd64.
        const depends = (await a.show(name, version)).Depends ?? "";
        const image = depends.split(",").map((d) => d.trim().split(/\s+/)[0]!).find((d) => /^linux-image-\d/.test(d));
        if (!image) throw new ResinError(`kernel package ${name} (${request.suite}) does not depend on a linux-image-<version> package`);
        name = image;
        version = await a.candidate(name, request.suite);
      }
      const fields = await a.show(name, version);
      const next: LockedDeb = { package: name, version, suite: request.suite, sha256: fields.SHA256 ?? "", size: Number(fields.Size ?? 0) };
      if (!/^[0-9a-f]{64}$/.test(next.sha256)) throw new ResinError(`apt has no SHA256 for ${name}=${version}`);
      if (!locked || locked.sha256 !== next.sha256) {
        log(`  lock ${key} → ${name} ${version}`);
        lock.debian[key] = next;
        changed = true;
      }
      locked = next;
    }
    if (!hasBlob(locked.sha256)) {
      const a = await openApt(`${locked.package} ${locked.version} is not in the cache`);
      log(`  fetch ${locked.package} ${locked.version} (${locked.suite}, ${(locked.size / 1e6).toFixed(1)} MB)`);
      const tmp = await mkdtemp(join(cacheHome(), "download-"));
      try {
        const file = await a.download(locked.package, locked.version, tmp);
        const sha = await putBlob(file);
        if (sha !== locked.sha256) {
          throw new ResinError(
            `${locked.package} ${locked.version} from the mirror has sha256 ${sha}, but resin.lock.json pins ${locked.sha256}`,
            "the mirror serves different bytes for the same version; if you trust the change, run `resin build --update-lock`",
          );
        }
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
  }
  return { changed };
}
