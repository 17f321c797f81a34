// Builds from Go modules (cli/artifacts/gomodule.ts): the licence and wrapper rules, and a real `go build`
// of a tiny module (no downloads: the module is a local replace) through the same
// path Vault takes, with the real go command checking go.sum and stamping -X values.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ARCH, hostArch } from "../../cli/spec/arch.js";
import { checkLicensedVersion, checkWrapper, ensureGoBuild, goBuildBinary, parseModuleList, pinnedGoEnv, pinnedToolchain, recipeKey, goRecipe, LAST_MPL } from "../../cli/artifacts/gomodule.js";
import type { GoModuleSpec } from "../../cli/spec/schema.js";


describe("licence rule", () => {
  it.each([
    ["vault", "1.14.8", true],
    ["vault", "1.14.9", false],
    ["vault", "1.15.0", false],
    ["vault", "2.0.0", false],
    ["nomad", "1.6.5", true],
    ["nomad", "1.6.6", false],
    ["nomad", "1.7.0", false],
    ["nomad", "1.5.12", true],
  ] as const)("%s %s allowed: %s", (product, version, allowed) => {
    const check = () => checkLicensedVersion({ product, version }, "services/x/build/go.mod");
    if (allowed) expect(check).not.toThrow();
    else expect(check).toThrow(new RegExp(`${product} ${version.replace(/\./g, "\\.")} is under the BUSL-1.1 licence.*≤ ${LAST_MPL[product]!.replace(/\./g, "\\.")}`));
  });
});

describe("the go command's environment", () => {
  // What an operator's shell or CI may carry, each re-opening direct fetches or unchecked sums.
  const hostile = {
    PATH: "/usr/bin:/bin",
    HOME: "/root",
    GONOPROXY: "*",
    GOPRIVATE: "*",
    GONOSUMDB: "*",
    GOINSECURE: "*",
    GOSUMDB: "off",
    GOWORK: "/tmp/evil/go.work",
    GOFLAGS: "-insecure -mod=mod",
    GOTOOLCHAIN: "auto",
  };

  it("clears what skips the proxy or the checksum database, turns go.work and the go env file off, keeps the rest", () => {
    const env = pinnedGoEnv(hostile, false, ["https://proxy.example"]);
    expect(env).toMatchObject({
      PATH: "/usr/bin:/bin",
      HOME: "/root",
      GOPROXY: "https://proxy.example",
      GONOPROXY: "",
      GOPRIVATE: "",
      GONOSUMDB: "",
      GOINSECURE: "",
      GOWORK: "off",
      GOENV: "off",
      GOFLAGS: "-mod=readonly",
      GOTOOLCHAIN: "local",
      CGO_ENABLED: "0",
    });
    expect("GOSUMDB" in env, "GOSUMDB=off is dropped: Go's default checksum database is on").toBe(false);
    expect(pinnedGoEnv({ GOSUMDB: "" }, true, ["p"])).not.toHaveProperty("GOSUMDB");
    expect(pinnedGoEnv({ GOSUMDB: " off " }, true, ["p"])).not.toHaveProperty("GOSUMDB");
    // A checksum database named by the operator still checks every sum: it stays.
    expect(pinnedGoEnv({ GOSUMDB: "sumdb.example+abcdef01+AAAA" }, true, ["p"]).GOSUMDB).toBe("sumdb.example+abcdef01+AAAA");
    expect(pinnedGoEnv(hostile, true, ["a", "b"])).toMatchObject({ GOPROXY: "a,b", CGO_ENABLED: "1" });
    // GOARCH is the architecture's (cli/spec/arch.ts), amd64 when none is given.
    expect(pinnedGoEnv(hostile, false, ["p"]).GOARCH).toBe("amd64");
    expect(pinnedGoEnv(hostile, false, ["p"], "arm64").GOARCH).toBe("arm64");
    // The inherited environment is not changed.
    expect(hostile.GOSUMDB).toBe("off");
  });

  it("is what the real go command then uses, whatever a go env file says", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-goenv-"));
    try {
      writeFileSync(join(dir, "env"), "GOSUMDB=off\nGONOSUMDB=*\nGOPRIVATE=*\nGONOPROXY=*\nGOINSECURE=*\n");
      const env = pinnedGoEnv({ ...process.env, ...hostile, PATH: process.env.PATH, GOENV: join(dir, "env") }, false, ["https://proxy.example"]);
      const seen = JSON.parse(execFileSync("go", ["env", "-json", "GONOPROXY", "GOPRIVATE", "GONOSUMDB", "GOINSECURE", "GOSUMDB", "GOWORK", "GOPROXY", "GOFLAGS"], { env, encoding: "utf8" }));
      expect(seen).toMatchObject({ GONOPROXY: "", GOPRIVATE: "", GONOSUMDB: "", GOINSECURE: "", GOPROXY: "https://proxy.example", GOFLAGS: "-mod=readonly" });
      expect(seen.GOSUMDB).not.toBe("off");
      expect(seen.GOSUMDB).not.toBe("");
      expect(["", "off"]).toContain(seen.GOWORK);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the toolchain a build runs", () => {
  it("keeps an exact pinned Go, and otherwise the machine's own", () => {
    expect(pinnedToolchain("go1.26.8")).toBe("go1.26.8");
    expect(pinnedToolchain("go1.27.3")).toBe("go1.27.3");
    for (const chosen of [undefined, "", "local", "auto", "path", "go1.26.8+auto", "go1.26.8+path", "go1.26", "default"]) expect(pinnedToolchain(chosen), String(chosen)).toBe("local");
  });
});

describe("wrapper go.mod", () => {
  const spec = { module: "github.com/hashicorp/vault", version: "1.14.8" };
  it("accepts a go.mod that requires the service's version, in a block or alone", () => {
    expect(() => checkWrapper("module w\n\nrequire github.com/hashicorp/vault v1.14.8\n", spec, "go.mod")).not.toThrow();
    expect(() => checkWrapper("module w\n\nrequire (\n\tgithub.com/hashicorp/vault v1.14.8\n)\n", spec, "go.mod")).not.toThrow();
  });
  it("refuses another version or a missing require, naming both versions", () => {
    expect(() => checkWrapper("module w\nrequire github.com/hashicorp/vault v1.14.7\n", spec, "go.mod")).toThrow(/requires github.com\/hashicorp\/vault v1.14.7, but service.yml says 1.14.8/);
    expect(() => checkWrapper("module w\nrequire github.com/hashicorp/vault/api v1.9.2\n", spec, "go.mod")).toThrow(/does not require github.com\/hashicorp\/vault$/);
  });
});

// Go is a requirement of the suite, never a reason to skip: scripts/ensure-deps.sh installs
// it where there is none, and the unit suite's global setup puts it on PATH
// (scripts/go-env.sh). Without it these tests fail with goEnv's message and its fix.
describe("a real go build through the cache", () => {
  let work: string;
  let wrapper: string;
  const saved = process.env.RESIN_CACHE_HOME;
  const spec: GoModuleSpec = {
    product: "vault",
    version: "1.0.0",
    module: "example.test/hello",
    dir: "build",
    cgo: false,
    tags: [],
    x: { "main.greeting": "stamped" },
    binary: "usr/bin/hello",
  };
  const lines: string[] = [];
  const log = (m: string) => lines.push(m);
  const licence = (text: string) => writeFileSync(join(work, "hello", "LICENSE"), text);

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "resin-gomodule-"));
    process.env.RESIN_CACHE_HOME = join(work, "cache");
    wrapper = join(work, "build");
    mkdirSync(join(work, "hello"), { recursive: true });
    mkdirSync(wrapper);
    writeFileSync(join(work, "hello", "go.mod"), "module example.test/hello\n\ngo 1.20\n");
    writeFileSync(join(work, "hello", "main.go"), 'package main\n\nimport "fmt"\n\nvar greeting = "unstamped"\n\nfunc main() { fmt.Println(greeting) }\n');
    licence("Mozilla Public License, version 2.0\n");
    writeFileSync(join(wrapper, "go.mod"), "module resin.build/hello\n\ngo 1.20\n\nrequire example.test/hello v1.0.0\n\nreplace example.test/hello => ../hello\n");
    writeFileSync(join(wrapper, "go.sum"), "");
    writeFileSync(join(wrapper, "tools.go"), '//go:build tools\n\npackage build\n\nimport _ "example.test/hello"\n');
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.RESIN_CACHE_HOME;
    else process.env.RESIN_CACHE_HOME = saved;
    rmSync(work, { recursive: true, force: true });
  });

  it("builds once, stamps the -X values, records the modules, and serves the cache the second time", async () => {
    const first = await ensureGoBuild(spec, wrapper, { log });
    expect(lines.join("\n")).toMatch(/building vault 1\.0\.0 from example\.test\/hello/);
    const bin = join(work, "hello-bin");
    writeFileSync(bin, await goBuildBinary(first), { mode: 0o755 });
    expect(execFileSync(bin, { encoding: "utf8" })).toBe("stamped\n");
    const real = execFileSync("go", ["version", "-m", bin], { encoding: "utf8" });
    expect(parseModuleList(real)).toEqual(first.modules);
    expect(first.modules.some((m) => m.startsWith("example.test/hello@v1.0.0 => ../hello"))).toBe(true);
    expect(first.recipe.flags).toEqual(["-trimpath", "-buildvcs=false"]);
    expect(first.recipe.ldflags).toBe("-s -w -X main.greeting=stamped");
    expect(first.key).toBe(recipeKey(await goRecipe(spec, wrapper)));

    lines.length = 0;
    const second = await ensureGoBuild(spec, wrapper, { log });
    expect(second).toEqual(first);
    expect(lines, "a warm build must not compile again").toEqual([]);
  });

  it("builds for arm64 as another recipe: an AArch64 executable, its own cache key, the amd64 one untouched", async () => {
    const amd = await ensureGoBuild(spec, wrapper, { log });
    const arm = await ensureGoBuild(spec, wrapper, { log, arch: "arm64" });
    expect(arm.recipe.goarch).toBe("arm64");
    expect(amd.recipe.goarch).toBe("amd64");
    expect(arm.key).not.toBe(amd.key);
    expect(arm.key).toBe(recipeKey(await goRecipe(spec, wrapper, "arm64")));
    const machine = (bin: Buffer) => bin.readUInt16LE(18); // ELF e_machine
    expect(machine(await goBuildBinary(arm))).toBe(ARCH.arm64.elfMachine);
    expect(machine(await goBuildBinary(amd))).toBe(ARCH.amd64.elfMachine);
    expect(await ensureGoBuild(spec, wrapper, { log })).toEqual(amd);
  });

  it("refuses a cgo build for another architecture than this machine's, naming the fix", async () => {
    const other = hostArch() === "arm64" ? "amd64" : "arm64";
    await expect(ensureGoBuild({ ...spec, cgo: true }, wrapper, { log, arch: other })).rejects.toThrow(new RegExp(`built with cgo, which cannot be built for ${other}`));
  });

  it("a second build of the same recipe gives the same bytes (reproducible)", async () => {
    const first = await ensureGoBuild(spec, wrapper, { log });
    rmSync(join(work, "cache", "gomodules"), { recursive: true });
    const again = await ensureGoBuild(spec, wrapper, { log });
    expect(again.sha256).toBe(first.sha256);
  });

  it("refuses bytes that differ from the lock for the same recipe, and leaves the index as it was", async () => {
    const first = await ensureGoBuild(spec, wrapper, { log });
    const index = join(work, "cache", "gomodules", `${first.key}.json`);
    const before = execFileSync("cat", [index], { encoding: "utf8" });
    rmSync(index);
    await expect(ensureGoBuild(spec, wrapper, { log, locked: { key: first.key, sha256: "0".repeat(64) } })).rejects.toThrow(/not reproducible here/);
    expect(existsSync(index)).toBe(false);
    writeFileSync(index, before);
  });

  it("refuses a module whose LICENSE is the BUSL, and caches nothing new", async () => {
    licence("Business Source License 1.1\n");
    const changed = { ...spec, x: { "main.greeting": "busl" } };
    const before = readdirSync(join(work, "cache", "gomodules")).sort();
    await expect(ensureGoBuild(changed, wrapper, { log })).rejects.toThrow(/LICENSE is not the Mozilla Public License 2\.0/);
    expect(readdirSync(join(work, "cache", "gomodules")).sort()).toEqual(before);
    licence("Mozilla Public License, version 2.0\n");
  });

  it("builds a main package below the module's root when the spec names one; refuses a package outside the module", async () => {
    mkdirSync(join(work, "hello", "cmd", "hi"), { recursive: true });
    writeFileSync(join(work, "hello", "cmd", "hi", "main.go"), 'package main\n\nimport "fmt"\n\nvar who = "nobody"\n\nfunc main() { fmt.Println("hi from cmd/hi,", who) }\n');
    try {
      const sub: GoModuleSpec = { ...spec, package: "example.test/hello/cmd/hi", x: { "main.who": "stamped" } };
      lines.length = 0;
      const build = await ensureGoBuild(sub, wrapper, { log });
      expect(lines.join("\n")).toMatch(/building vault 1\.0\.0 from example\.test\/hello\/cmd\/hi/);
      const bin = join(work, "hi-bin");
      writeFileSync(bin, await goBuildBinary(build), { mode: 0o755 });
      expect(execFileSync(bin, { encoding: "utf8" })).toBe("hi from cmd/hi, stamped\n");
      expect(build.recipe.package).toBe("example.test/hello/cmd/hi");
      // Without a package, or with the module's own path, the recipe has no package field:
      // the keys of recipes made before the field existed stay the same.
      expect("package" in (await goRecipe(spec, wrapper))).toBe(false);
      expect(recipeKey(await goRecipe({ ...spec, package: spec.module }, wrapper))).toBe(recipeKey(await goRecipe(spec, wrapper)));
      for (const pkg of ["example.test/other/cmd/x", "example.test/hello2"]) {
        await expect(ensureGoBuild({ ...spec, package: pkg }, wrapper, { log })).rejects.toThrow(`the package ${pkg} is not in the module example.test/hello`);
      }
    } finally {
      rmSync(join(work, "hello", "cmd"), { recursive: true, force: true });
    }
  });

  it("says what failed when the code does not compile, and caches nothing", async () => {
    writeFileSync(join(work, "hello", "broken.go"), "package main\n\nfunc broken() { undefinedThing() }\n");
    try {
      const changed = { ...spec, x: { "main.greeting": "broken" } };
      await expect(ensureGoBuild(changed, wrapper, { log })).rejects.toThrow(/go build of vault 1\.0\.0 failed: .*undefined: undefinedThing/);
    } finally {
      rmSync(join(work, "hello", "broken.go"));
    }
  });
});
