import { describe, expect, it } from "vitest";
import { compareVersions, dependencyClosure, indexPackages, parsePackages, parseRelations } from "../../cli/artifacts/depends.js";
import { packagesNamedFor, searchOrder } from "../../cli/image/libraries.js";

// A service without `libraries:` takes its shared libraries from what its packages
// Depend/Pre-Depend on. The resolver reads a suite's Packages index; here, fake ones.

const stanza = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n");

/** A Packages file as Debian's archive writes it: stanzas, a folded Description, blank lines between. */
function packages(...stanzas: Record<string, string>[]): string {
  return stanzas.map((s) => `${stanza({ Architecture: "amd64", ...s })}\nDescription: something\n a body line\n .\n another\n`).join("\n");
}

describe("parsing a Packages index", () => {
  it("reads Package, Version, Depends, Pre-Depends and Provides, also folded over lines", () => {
    const text = "Package: a\nVersion: 1.0-1\nPre-Depends: init-system-helpers (>= 1.54~)\nDepends: b,\n c (>= 2)\nProvides: v\nDescription: x\n body\n\nPackage: b\nVersion: 2\n";
    expect(parsePackages(text)).toEqual([
      { name: "a", version: "1.0-1", depends: "b, c (>= 2)", preDepends: "init-system-helpers (>= 1.54~)", provides: "v" },
      { name: "b", version: "2", depends: "", preDepends: "", provides: "" },
    ]);
  });

  it("splits relations into groups of alternatives, with versions and without architecture qualifiers", () => {
    expect(parseRelations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo (<< 3~)")).toEqual([
      [{ name: "libc6", op: ">=", version: "2.34" }],
      [{ name: "debconf", op: ">=", version: "0.5" }, { name: "debconf-2.0" }],
      [{ name: "python3" }],
      [{ name: "foo", op: "<<", version: "3~" }],
    ]);
    expect(parseRelations("")).toEqual([]);
  });
});

describe("dpkg's version order", () => {
  it.each([
    ["1.0", "1.0", 0],
    ["1.0", "1.1", -1],
    ["1.10", "1.9", 1],
    ["1:1.0", "2.0", 1], // epoch first
    ["1.0~rc1", "1.0", -1], // ~ sorts before the end
    ["1.0-1", "1.0-2", -1],
    ["1.0+b1", "1.0", 1],
    ["5:7.0.15-1~deb12u7", "5:7.0.15-1", -1],
    ["2.36-9+deb12u10", "2.36-9+deb12u9", 1],
    ["1.0a", "1.0+", -1], // letters before other characters
  ])("%s vs %s", (a, b, want) => {
    expect(Math.sign(compareVersions(a, b))).toBe(want);
    expect(Math.sign(compareVersions(b, a))).toBe(0 - want);
  });
});

describe("the Depends / Pre-Depends closure", () => {
  const index = indexPackages(
    parsePackages(
      packages(
        { Package: "redis-server", Version: "5:7.0.15-1", "Pre-Depends": "init-system-helpers (>= 1.54~)", Depends: "lsb-base (>= 3.2-14), redis-tools (= 5:7.0.15-1)" },
        { Package: "redis-tools", Version: "5:7.0.15-1", Depends: "adduser, libc6 (>= 2.34), libjemalloc2 (>= 3.5.0), libssl3 | libssl1.1, mail-transport-agent | nullmailer" },
        // An older redis-tools in the same index: the newest wins.
        { Package: "redis-tools", Version: "5:6.0.16-1" },
        { Package: "init-system-helpers", Version: "1.65.2", "Pre-Depends": "perl-base (>= 5.20.1-3)" },
        { Package: "perl-base", Version: "5.36.0-7" },
        { Package: "lsb-base", Version: "11.6" },
        { Package: "adduser", Version: "3.134", Depends: "passwd" },
        { Package: "passwd", Version: "1:4.13", Depends: "libc6" },
        { Package: "libc6", Version: "2.36-9", Depends: "libgcc-s1" },
        { Package: "libgcc-s1", Version: "12.2.0", Depends: "gcc-12-base, libc6 (>= 2.35)" },
        { Package: "gcc-12-base", Version: "12.2.0" },
        { Package: "libjemalloc2", Version: "5.3.0-1", Depends: "libc6 (>= 2.34)" },
        { Package: "libssl3", Version: "3.0.20", Depends: "libc6" },
        { Package: "libssl1.1", Version: "1.1.1" },
        // Only virtual: two providers, none real.
        { Package: "postfix", Version: "3.7", Provides: "mail-transport-agent", Depends: "libc6" },
        { Package: "exim4-daemon-light", Version: "4.96", Provides: "mail-transport-agent" },
        { Package: "nullmailer", Version: "1:2.2" },
      ),
    ),
  );

  it("follows Pre-Depends and Depends transitively, nearest first, each package once", () => {
    const { packages: closure, unsatisfied } = dependencyClosure(index, ["redis-server"]);
    expect(closure.slice(0, 3)).toEqual(["init-system-helpers", "lsb-base", "redis-tools"]);
    expect(closure).toContain("perl-base"); // through init-system-helpers' Pre-Depends
    expect(closure).toContain("gcc-12-base"); // four levels down
    expect(new Set(closure).size).toBe(closure.length);
    expect(closure).not.toContain("redis-server");
    expect(unsatisfied).toEqual([]);
  });

  it("takes the first alternative the suite has, not the others", () => {
    const { packages: closure } = dependencyClosure(index, ["redis-tools"]);
    expect(closure).toContain("libssl3");
    expect(closure).not.toContain("libssl1.1");
  });

  it("satisfies a virtual package by its first provider by name, unless one is already chosen", () => {
    const { packages: closure } = dependencyClosure(index, ["redis-tools"]);
    expect(closure).toContain("exim4-daemon-light");
    expect(closure).not.toContain("postfix");
    expect(closure).not.toContain("nullmailer");
    const withPostfix = dependencyClosure(index, ["postfix", "redis-tools"]).packages;
    expect(withPostfix).not.toContain("exim4-daemon-light");
  });

  it("checks version constraints, and says what nothing in the suite satisfies", () => {
    const idx = indexPackages(
      parsePackages(packages({ Package: "app", Version: "1", Depends: "libold (>= 2), libfine (>= 1) | libnone, missing-entirely" }, { Package: "libold", Version: "1.5" }, { Package: "libfine", Version: "1.0" })),
    );
    const { packages: closure, unsatisfied } = dependencyClosure(idx, ["app"]);
    expect(closure).toEqual(["libfine"]);
    expect(unsatisfied).toEqual(["libold (>= 2)", "missing-entirely"]);
  });

  it("needs a versioned Provides for a versioned dependency on a virtual package", () => {
    const idx = indexPackages(
      parsePackages(packages({ Package: "app", Version: "1", Depends: "api (>= 2)" }, { Package: "impl-old", Version: "1", Provides: "api" }, { Package: "impl-new", Version: "1", Provides: "api (= 3)" })),
    );
    expect(dependencyClosure(idx, ["app"]).packages).toEqual(["impl-new"]);
  });
});

describe("which closure package a missing library is looked for in first", () => {
  it("names library packages after their soname, as Debian does", () => {
    expect(packagesNamedFor("libssl.so.3")).toContain("libssl3");
    expect(packagesNamedFor("liblz4.so.1")).toContain("liblz4-1");
    expect(packagesNamedFor("libgcc_s.so.1")).toContain("libgcc-s1");
    expect(packagesNamedFor("libstdc++.so.6")).toContain("libstdc++6");
    expect(packagesNamedFor("ld-linux-x86-64.so.2")).toContain("ld-linux-x86-64-2");
    expect(packagesNamedFor("not-a-library")).toEqual([]);
  });

  it("tries opened packages, then the one named after the soname, then lib* packages, then the rest, nearest first", () => {
    const closure = ["adduser", "libc6", "passwd", "libjemalloc2", "libssl3", "perl-base"];
    expect(searchOrder(closure, new Set(), "libssl.so.3")).toEqual(["libssl3", "libc6", "libjemalloc2", "adduser", "passwd", "perl-base"]);
    expect(searchOrder(closure, new Set(["libc6"]), "libm.so.6")).toEqual(["libc6", "libjemalloc2", "libssl3", "adduser", "passwd", "perl-base"]);
    // A link's target: no soname, so nearest first (opened ones before).
    expect(searchOrder(closure, new Set(["perl-base"]))).toEqual(["perl-base", "adduser", "libc6", "passwd", "libjemalloc2", "libssl3"]);
  });
});
