// Where the files an image needs but no service names come from: the shared libraries
// of its programs (the ELF NEEDED closure) and the targets of symlinks in `paths`.
// A service that lists `libraries:` is searched as before: those packages and every
// service's packages, role-wide. A service without it is searched in its own packages,
// the role's listed libraries, then what its packages Depend on (Debian's data, pinned
// in resin.lock.json), opening those packages only when a file is still missing.
import type { LockedDeb } from "../artifacts/lock.js";
import { ResinError } from "../util/errors.js";
import type { Rootfs } from "./rootfs.js";
import type { TreeEntry } from "./tree.js";
import { readElfDeps } from "./elf.js";
import { posix } from "node:path";
import { existsInside, linkInside, modeInside, readInside } from "./package-files.js";
import { ARCH, DEFAULT_ARCH, type Arch } from "../spec/arch.js";

/** Where a dynamic linker finds libraries without an ld.so.cache (Debian's system search path for the architecture). */
export const libraryDirs = (arch: Arch) => [`lib/${ARCH[arch].triplet}`, `usr/lib/${ARCH[arch].triplet}`, "lib64", "lib", "usr/lib"];

/** An unpacked package to search. */
export interface PackageRoot {
  name: string;
  root: string;
  /** "package version", as the manifest names a file's origin. */
  label: string;
  deb?: LockedDeb;
}

/** Unpack (locking and fetching it first, when needed) a package of a service's Depends closure. */
export type Opener = (name: string, suite: string) => Promise<PackageRoot>;

/**
 * Debian names a library package after its soname (policy 8.1): libssl.so.3 is in
 * libssl3, liblz4.so.1 in liblz4-1, libgcc_s.so.1 in libgcc-s1.
 */
export function packagesNamedFor(soname: string): string[] {
  const m = soname.match(/^(.+?)\.so\.(.+)$/);
  if (!m) return [];
  const base = m[1]!.toLowerCase().replace(/_/g, "-");
  return [`${base}${m[2]}`, `${base}-${m[2]}`];
}

/**
 * The order in which closure packages are tried for a missing file: those already
 * opened, then (for a library) the package named after its soname, then library
 * packages, then the rest, each group nearest dependency first.
 */
export function searchOrder(closure: string[], opened: Set<string>, soname?: string): string[] {
  const named = new Set(soname ? packagesNamedFor(soname) : []);
  const rank = (name: string) => (opened.has(name) ? 0 : named.has(name) ? 1 : soname && name.startsWith("lib") ? 2 : 3);
  return closure.map((name, i) => ({ name, i, r: rank(name) })).sort((a, b) => a.r - b.r || a.i - b.i).map((x) => x.name);
}

export interface Found {
  path: string;
  data: Buffer;
  mode: number;
  from: PackageRoot;
}

/** The packages one file's dependencies are searched in. */
export class PackageSearch {
  private readonly opened = new Map<string, PackageRoot>();

  constructor(
    /** Shown in errors: the service, or "the role's libraries". */
    readonly owner: string,
    private readonly fixed: PackageRoot[],
    /** Depends closure, nearest first; empty for a service with `libraries:`. */
    private readonly closure: { name: string; suite: string }[] = [],
    private readonly open?: Opener,
  ) {}

  /** Every package this search may look in, for error messages. */
  searched(): string[] {
    const fixed = this.fixed.map((r) => r.name);
    return [...new Set([...fixed, ...this.closure.map((c) => c.name)])];
  }

  /** The first of `paths` that a package holds as a file (for a library, `soname` orders the closure). */
  async find(paths: string[], soname?: string): Promise<Found | undefined> {
    const hit = await this.first(paths, soname, async (root, path) => (await readInside(root, path)) !== undefined);
    if (!hit) return undefined;
    return { path: hit.path, data: (await readInside(hit.from.root, hit.path))!, mode: await modeInside(hit.from.root, hit.path), from: hit.from };
  }

  /** The first package that has `path` at all (a file or a link): where a symlink's target lives. */
  async holder(path: string): Promise<PackageRoot | undefined> {
    return (await this.first([path], undefined, existsInside))?.from;
  }

  private async first(paths: string[], soname: string | undefined, has: (root: string, path: string) => Promise<boolean>): Promise<{ path: string; from: PackageRoot } | undefined> {
    // The fixed packages: path by path, then package by package (the order builds always had).
    for (const path of paths) {
      for (const from of this.fixed) if (await has(from.root, path)) return { path, from };
    }
    const bySuite = new Map(this.closure.map((c) => [c.name, c.suite]));
    const fixedNames = new Set(this.fixed.map((r) => r.name));
    const order = searchOrder([...bySuite.keys()].filter((n) => !fixedNames.has(n)), new Set(this.opened.keys()), soname);
    for (const name of order) {
      let from = this.opened.get(name);
      if (!from) {
        if (!this.open) break;
        from = await this.open(name, bySuite.get(name)!);
        this.opened.set(name, from);
      }
      for (const path of paths) if (await has(from.root, path)) return { path, from };
    }
    return undefined;
  }
}

interface Missing {
  soname: string;
  neededBy: string;
}

/**
 * Add every shared library the image's ELF files load, transitively. Each file is
 * searched with its owner's search (`owners`; `pooled` for the rest). Every library
 * found nowhere is named in one error, with the packages searched.
 */
export async function addLibraryClosure(
  rootfs: Rootfs,
  owners: Map<string, PackageSearch>,
  pooled: PackageSearch,
  used: (from: PackageRoot) => void,
  arch: Arch = DEFAULT_ARCH,
): Promise<void> {
  const dirs = libraryDirs(arch);
  const queue: TreeEntry[] = rootfs.list().filter((e) => e.type === "file");
  const seen = new Set<string>();
  const missing = new Map<PackageSearch, Missing[]>();
  while (queue.length > 0) {
    const entry = queue.shift()!;
    if (entry.type !== "file" || seen.has(entry.path)) continue;
    seen.add(entry.path);
    let deps;
    try {
      deps = readElfDeps(entry.data);
    } catch (e) {
      throw new ResinError(`${entry.path}: ${(e as Error).message}`, "the package file is damaged; delete it from the cache and build again");
    }
    if (!deps) continue;
    // Every ELF file of an image is its architecture's: another's would not run (or load).
    if (deps.machine !== ARCH[arch].elfMachine) {
      const is = Object.values(ARCH).find((a) => a.elfMachine === deps.machine)?.arch ?? `ELF machine ${deps.machine}`;
      throw new ResinError(`${entry.path} is built for ${is}, not ${arch}, the architecture of this image`, `take it from the package for ${arch}: paths and package names may say $ARCH and $MULTIARCH (see the README's Architectures)`);
    }
    const search = owners.get(entry.path) ?? pooled;
    const wanted = [...(deps.interpreter ? [[deps.interpreter.replace(/^\/+/, "")]] : []), ...deps.needed.map((soname) => dirs.map((d) => `${d}/${soname}`))];
    for (const candidates of wanted) {
      if (candidates.some((c) => rootfs.has(c))) continue;
      const soname = candidates[0]!.split("/").pop()!;
      const found = await search.find(candidates, soname);
      if (!found) {
        missing.set(search, [...(missing.get(search) ?? []), { soname, neededBy: entry.path }]);
        continue;
      }
      rootfs.file(found.path, found.data, 0o755, { kind: "deb", source: found.from.label });
      used(found.from);
      owners.set(found.path, search);
      queue.push(rootfs.get(found.path)!);
    }
  }
  if (missing.size === 0) return;
  const groups = [...missing].map(([search, list]) => {
    const libs = [...new Map(list.map((m) => [m.soname, m])).values()].map((m) => `${m.soname} (needed by ${m.neededBy})`);
    return `${search.owner}: ${libs.join(", ")}; searched: ${search.searched().join(", ")}`;
  });
  const count = [...missing.values()].reduce((n, l) => n + new Set(l.map((m) => m.soname)).size, 0);
  throw new ResinError(
    `${count} shared librar${count === 1 ? "y is" : "ies are"} in none of the packages searched: ${groups.join(" | ")}`,
    "add the Debian package that ships each one (find it with: dpkg -S <library>) to the service's packages, or list them under the service's libraries",
  );
}

/**
 * One path of a package into the image. A symlink goes in as a link, and its target
 * too, followed hop by hop: from the same package, else from the first package of the
 * service's search that has it; a link whose target no package has is an error.
 */
export async function takePath(
  rootfs: Rootfs,
  at: { where: string; pkg: PackageRoot; path: string; search: PackageSearch; owners: Map<string, PackageSearch>; used: (from: PackageRoot) => void },
): Promise<void> {
  const { where, search } = at;
  let from = at.pkg;
  let path = posix.normalize(at.path);
  for (let hops = 0; hops < 20; hops++) {
    const target = await linkInside(from.root, path);
    if (target === undefined) {
      const data = await readInside(from.root, path);
      if (!data) {
        if (hops === 0) throw new ResinError(`${where}: packages: ${from.name} has no file '${path}'`, `list the package's files with: dpkg-deb -c <the .deb>, or look in ${from.root}`);
        throw new ResinError(`${where}: packages: ${at.pkg.name} '${at.path}' leads to '${path}', which is not a file in ${from.name}`, "name the file itself in paths");
      }
      rootfs.file(path, data, await modeInside(from.root, path), { kind: "deb", source: from.label });
      at.owners.set(path, search);
      at.used(from);
      return;
    }
    rootfs.symlink(path, target, { kind: "deb", source: from.label });
    at.used(from);
    const next = posix.normalize(target.startsWith("/") ? target.slice(1) : posix.join(posix.dirname(path), target));
    const holder = next.startsWith("..") ? undefined : (await existsIn(from, next)) ? from : await search.holder(next);
    if (!holder) {
      throw new ResinError(
        `${where}: packages: ${at.pkg.name} '${at.path}' is a link to '${target}' (${next}), which none of the packages searched has (searched: ${search.searched().join(", ")})`,
        "add the package that ships it to the service's packages, or name the file itself in paths",
      );
    }
    from = holder;
    path = next;
  }
  throw new ResinError(`${where}: packages: ${at.pkg.name} '${at.path}': too many levels of symbolic links`);
}

async function existsIn(from: PackageRoot, path: string): Promise<boolean> {
  return (await linkInside(from.root, path)) !== undefined || (await readInside(from.root, path)) !== undefined;
}
