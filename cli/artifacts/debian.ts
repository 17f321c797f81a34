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
import { hasBlob, putBlob, unpackedDeb } from "./cache.js";
import { dependencyClosure } from "./depends.js";
import { lockKey, type Lock, type LockedDeb } from "./lock.js";
import { DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export interface DebRequest {
  name: string;
  suite: string;
  arch: Arch;
  /** A metapackage (linux-image-amd64) stands for the versioned package it depends on. */
  kernel: boolean;
  /** Lock what it Depends on too: its service has no `libraries:` list. */
  closure?: boolean;
}

/** Every package a set of services takes files from, with the default suite filled in. */
export async function debRequests(services: Service[], arch: Arch): Promise<DebRequest[]> {
  const host = await hostCodename();
  const requests = new Map<string, DebRequest>();
  const add = (name: string, suite: string | undefined, kernel = false, closure = false) => {
    const s = suite ?? host;
    const key = lockKey(s, name, arch);
    requests.set(key, { name, suite: s, arch, kernel, closure: closure || requests.get(key)?.closure || undefined });
  };
  for (const service of services) {
    if (service.kernel) add(service.kernel.package, undefined, true);
    for (const p of service.packages) add(p.name, p.suite, false, !service.libraries);
    for (const lib of service.libraries ?? []) add(lib, undefined);
  }
  return [...requests.values()].sort((a, b) => lockKey(a.suite, a.name, a.arch).localeCompare(lockKey(b.suite, b.name, b.arch)));
}

export interface DebOptions {
  updateLock?: boolean;
  offline?: boolean;
  /** Entries to take as they are when the lock has none (Resin's own lock, for a user's project). */
  seed?: Lock;
  /** Every suite the build may need (the private sources.list names each). */
  suites: string[];
  /** The architecture whose packages it locks and fetches. */
  arch: Arch;
}

/**
 * Locked, cached Debian packages: fills in missing lock entries (or all, with
 * `updateLock`) and fetches missing blobs. The lock is changed in place; `changed` says so.
 */
export class Debs {
  changed = false;
  private apt?: Apt;
  private readonly checked = new Set<string>();

  constructor(
    readonly lock: Lock,
    private readonly log: Log,
    private readonly opts: DebOptions,
  ) {}

  private async openApt(why: string): Promise<Apt> {
    if (this.opts.offline) throw new ResinError(`offline, but ${why}`, "run the build once without --offline (and without RESIN_OFFLINE=1) to fetch it");
    return (this.apt ??= await Apt.open(this.opts.suites, this.opts.arch));
  }

  /** The lock entry for a request, resolved and fetched when needed. */
  async ensure(request: DebRequest): Promise<LockedDeb> {
    const key = lockKey(request.suite, request.name, request.arch);
    let locked = this.lock.debian[key];
    const recheck = this.opts.updateLock && !this.checked.has(key);
    this.checked.add(key);
    if (!locked && !this.opts.updateLock && this.opts.seed?.debian[key]) {
      locked = { ...this.opts.seed.debian[key]! };
      this.log(`  lock ${key} → ${locked.package} ${locked.version} (as Resin's own resin.lock.json pins it)`);
      this.lock.debian[key] = locked;
      this.changed = true;
    }
    if (!locked || recheck) {
      const a = await this.openApt(`resin.lock.json has no entry for ${key}`);
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
        this.log(`  lock ${key} → ${name} ${version}`);
        this.lock.debian[key] = next;
        this.changed = true;
        locked = next;
      }
    }
    if (request.closure && (!locked.depends || recheck)) {
      // What the package Depends on, from the suite's own Packages index.
      const a = await this.openApt(`resin.lock.json does not say what ${key} depends on`);
      const { packages } = dependencyClosure(await a.index(request.suite), [locked.package]);
      if (!locked.depends || locked.depends.join(" ") !== packages.join(" ")) {
        this.log(`  lock ${key}: depends on ${packages.length} package${packages.length === 1 ? "" : "s"} in ${request.suite}`);
        locked = { ...locked, depends: packages };
        this.lock.debian[key] = locked;
        this.changed = true;
      }
    }
    if (!hasBlob(locked.sha256)) {
      const a = await this.openApt(`${locked.package} ${locked.version} is not in the cache`);
      this.log(`  fetch ${locked.package} ${locked.version} (${locked.suite}, ${(locked.size / 1e6).toFixed(1)} MB)`);
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
    return locked;
  }

  /** A package unpacked in the cache (locked and fetched first when needed). */
  async open(name: string, suite: string): Promise<{ root: string; deb: LockedDeb }> {
    const deb = await this.ensure({ name, suite, arch: this.opts.arch, kernel: false });
    return { root: await unpackedDeb(deb.sha256, `${deb.package} ${deb.version}`), deb };
  }
}

/** Lock and fetch every request (see Debs). */
export async function ensureDebs(requests: DebRequest[], lock: Lock, log: Log, opts: Omit<DebOptions, "suites" | "arch"> = {}): Promise<{ changed: boolean; debs: Debs }> {
  const debs = new Debs(lock, log, { ...opts, suites: requests.map((r) => r.suite), arch: requests[0]?.arch ?? DEFAULT_ARCH });
  for (const request of requests) await debs.ensure(request);
  return { changed: debs.changed, debs };
}
