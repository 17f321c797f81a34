import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Rootfs } from "../../cli/image/rootfs.js";
import { addLibraryClosure, PackageSearch, takePath, type PackageRoot } from "../../cli/image/libraries.js";
import { ResinError } from "../../cli/util/errors.js";
import { synthElf } from "./synth-elf.js";

// A service without `libraries:`: its files' ELF NEEDED closure is satisfied from the
// packages its packages Depend on, opened only when a file is still missing; only what
// the closure reaches goes into the image; links in `paths` bring their targets along.
// The packages here are unpacked trees made by hand, with hand-made ELF files.

const scratch = mkdtempSync(join(tmpdir(), "resin-libraries-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type Tree = Record<string, Buffer | { link: string }>;

function pkg(name: string, tree: Tree): PackageRoot {
  const root = join(scratch, name);
  for (const [path, what] of Object.entries(tree)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    if (Buffer.isBuffer(what)) writeFileSync(join(root, path), what, { mode: 0o755 });
    else symlinkSync(what.link, join(root, path));
  }
  mkdirSync(root, { recursive: true });
  return { name, root, label: `${name} 1.0` };
}

const LIB = "usr/lib/x86_64-linux-gnu";
const INTERP = "/lib64/ld-linux-x86-64.so.2";

const app = pkg("app", { "usr/bin/app": { link: "app-real" } });
const appCore = pkg("app-core", {
  "usr/bin/app-real": synthElf({ interpreter: INTERP, needed: ["libfoo.so.1", "libc.so.6"] }),
  "usr/bin/unrelated": synthElf({ interpreter: INTERP, needed: ["libunrelated.so.9"] }),
});
const libfoo = pkg("libfoo1", {
  [`${LIB}/libfoo.so.1`]: { link: "libfoo.so.1.2.3" },
  [`${LIB}/libfoo.so.1.2.3`]: synthElf({ needed: ["libbar.so.0", "libc.so.6"] }),
  [`${LIB}/libfoo-extra.so.1`]: synthElf({ needed: [] }),
});
const libbar = pkg("libbar0", { [`${LIB}/libbar.so.0`]: synthElf({ needed: [] }) });
const libc = pkg("libc6", { "lib/x86_64-linux-gnu/libc.so.6": synthElf({ needed: [] }), "lib64/ld-linux-x86-64.so.2": synthElf({ static: true }), "lib/x86_64-linux-gnu/libm.so.6": synthElf({ needed: [] }) });
const big = pkg("bigpkg", { "usr/share/big/data": Buffer.from("not a library") });
const all = new Map([app, appCore, libfoo, libbar, libc, big].map((p) => [p.name, p]));

/** A search like a service's without `libraries:`: its own package, then its Depends closure. */
function serviceSearch(closure: string[], fixed: PackageRoot[] = [app]) {
  const opened: string[] = [];
  const search = new PackageSearch("service 'app'", fixed, closure.map((name) => ({ name, suite: "bookworm" })), async (name) => {
    opened.push(name);
    return all.get(name)!;
  });
  return { search, opened };
}

async function build(search: PackageSearch, path = "usr/bin/app"): Promise<{ rootfs: Rootfs; used: string[] }> {
  const rootfs = new Rootfs();
  const owners = new Map<string, PackageSearch>();
  const used: string[] = [];
  const note = (from: PackageRoot) => void (used.includes(from.name) || used.push(from.name));
  await takePath(rootfs, { where: "services/app/service.yml", pkg: app, path, search, owners, used: note });
  await addLibraryClosure(rootfs, owners, new PackageSearch("the role's libraries", []), note);
  return { rootfs, used };
}

const paths = (rootfs: Rootfs) => rootfs.manifest().filter((f) => f.type !== "dir").map((f) => `${f.type === "symlink" ? `${f.path} -> ${f.target}` : f.path} (${f.from})`);

describe("a service's libraries from its packages' Depends", () => {
  it("takes the link and its target from another package, and only the libraries the ELF closure reaches", async () => {
    const { search, opened } = serviceSearch(["app-core", "bigpkg", "libc6", "libfoo1", "libbar0"]);
    const { rootfs, used } = await build(search);
    expect(paths(rootfs).sort()).toEqual([
      "lib/x86_64-linux-gnu/libc.so.6 (deb:libc6 1.0)",
      "lib64/ld-linux-x86-64.so.2 (deb:libc6 1.0)",
      "usr/bin/app -> app-real (deb:app 1.0)",
      "usr/bin/app-real (deb:app-core 1.0)",
      `${LIB}/libbar.so.0 (deb:libbar0 1.0)`,
      // The soname's link is followed inside its package: the library goes in under its soname.
      `${LIB}/libfoo.so.1 (deb:libfoo1 1.0)`,
    ]);
    // Not taken: libm (nobody needs it), libfoo-extra, the package's other program.
    expect(rootfs.has("lib/x86_64-linux-gnu/libm.so.6")).toBe(false);
    expect(rootfs.has(`${LIB}/libfoo-extra.so.1`)).toBe(false);
    expect(rootfs.has("usr/bin/unrelated")).toBe(false);
    // A package nothing needs is never opened (so never fetched or locked).
    expect(opened).not.toContain("bigpkg");
    // The interpreter first (a lib* package, nearest first), then each soname's own package.
    expect(opened).toEqual(["app-core", "libc6", "libfoo1", "libbar0"]);
    expect(used.sort()).toEqual(["app", "app-core", "libbar0", "libc6", "libfoo1"]);
  });

  it("names every library still missing in one error, with the packages searched", async () => {
    const { search } = serviceSearch(["app-core", "bigpkg", "libc6"]);
    const err = await build(search).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResinError);
    const message = (err as ResinError).message;
    expect(message).toMatch(/^1 shared library is in none of the packages searched: service 'app': libfoo\.so\.1 \(needed by usr\/bin\/app-real\); searched: app, app-core, bigpkg, libc6$/);
    expect((err as ResinError).hint).toContain("dpkg -S");
  });

  it("collects every missing library, also below one that was found", async () => {
    const core = pkg("app-core2", { "usr/bin/app-real": synthElf({ needed: ["libfoo.so.1", "libqux.so.7", "libzip.so.4"] }) });
    all.set(core.name, core);
    const { search } = serviceSearch(["app-core2", "libfoo1", "libc6"]);
    const err = (await build(search).catch((e: unknown) => e)) as ResinError;
    expect(err.message).toContain("3 shared libraries are in none of the packages searched");
    for (const lib of ["libqux.so.7 (needed by usr/bin/app-real)", "libzip.so.4 (needed by usr/bin/app-real)", `libbar.so.0 (needed by ${LIB}/libfoo.so.1)`]) expect(err.message).toContain(lib);
    expect(err.message.split("\n")).toHaveLength(1);
  });

  it("refuses a link whose target is in none of the packages, naming the link and its target", async () => {
    const { search } = serviceSearch(["bigpkg", "libc6"]);
    const err = (await build(search).catch((e: unknown) => e)) as ResinError;
    expect(err).toBeInstanceOf(ResinError);
    expect(err.message).toBe("services/app/service.yml: packages: app 'usr/bin/app' is a link to 'app-real' (usr/bin/app-real), which none of the packages searched has (searched: app, bigpkg, libc6)");
  });

  it("refuses a link that points out of the root", async () => {
    const escape = pkg("escape", { "usr/bin/esc": { link: "../../../../etc/passwd" } });
    const search = new PackageSearch("service 'app'", [escape]);
    const rootfs = new Rootfs();
    const err = await takePath(rootfs, { where: "s.yml", pkg: escape, path: "usr/bin/esc", search, owners: new Map(), used: () => {} }).catch((e: unknown) => e);
    expect((err as Error).message).toContain("is a link to '../../../../etc/passwd'");
  });
});

describe("a service with `libraries:` (the override, and every stock service)", () => {
  it("is searched in the listed packages only, role-wide, and opens nothing else", async () => {
    const rootfs = new Rootfs();
    rootfs.file("usr/bin/app-real", synthElf({ interpreter: INTERP, needed: ["libfoo.so.1", "libc.so.6"] }), 0o755, { kind: "deb", source: "app-core 1.0" });
    const pooled = new PackageSearch("the role's libraries", [libc, libfoo, libbar]);
    await addLibraryClosure(rootfs, new Map(), pooled, () => {});
    expect(rootfs.has(`${LIB}/libfoo.so.1`)).toBe(true);
    expect(rootfs.has(`${LIB}/libbar.so.0`)).toBe(true);
    expect(rootfs.has("lib64/ld-linux-x86-64.so.2")).toBe(true);
  });
});
