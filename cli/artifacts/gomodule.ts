// Programs built here by the go command from their Go modules, through the Go module
// proxy only. A committed wrapper module pins each (go.mod + go.sum: go.sum is the
// hash lock the go command checks), so the same checkout builds from the same source
// everywhere. Today the test suite's OpenTofu is built this way (test/tools); it is
// the path Nomad and Vault will take into images once the module proxy serves what
// their MPL-2.0 releases need (it refuses Nomad v1.6.5, and the release commits of
// Vault's nested sdk/api modules; see services/{nomad,vault}/service.yml).
//
// A build is named by its whole recipe (Go version, go.mod, go.sum, cgo and the C
// compiler, tags, ldflags, flags, platform). The binary goes into the sha256-addressed
// cache with an index per recipe, <cache>/gomodules/<recipe key>.json, so a warm build
// never compiles again. Each build records its sha256 and its module list (from
// `go version -m`); a rebuild of a recipe pinned to a sha256 (`locked`) that gives
// other bytes is refused.
//
// Licence rule: only releases under MPL-2.0 (Nomad ≤ 1.6.5, Vault ≤ 1.14.8) are built;
// later ones are BUSL-1.1. The LICENSE in the downloaded module is checked as well.
//
// Failure rule: nothing reaches the cache unless the build finished and its bytes
// agree with the lock; a failure removes only this run's temp files.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { z } from "zod";
import type { GoModuleSpec } from "../spec/schema.js";
import { ResinError } from "../util/errors.js";
import { canonicalJson, sha256 } from "../util/hash.js";
import { writeFileAtomic } from "../util/files.js";
import type { Log } from "../util/log.js";
import { cacheHome } from "../util/paths.js";
import { putBlob, verifiedBlob } from "./cache.js";
import { ARCH, ARCHES, DEFAULT_ARCH, hostArch, type Arch } from "../spec/arch.js";

/**
 * The last release of each HashiCorp product published under MPL-2.0; every later one
 * is BUSL-1.1. OpenTofu (the test suite's Terraform engine) is MPL-2.0 throughout.
 */
export const LAST_MPL: Partial<Record<GoModuleSpec["product"], string>> = { nomad: "1.6.5", vault: "1.14.8" };

/** Flags every build uses: no paths of this machine and no VCS stamp in the binary. */
export const GO_FLAGS = ["-trimpath", "-buildvcs=false"] as const;

export const GoRecipeSchema = z
  .object({
    product: z.enum(["nomad", "vault", "opentofu"]),
    version: z.string(),
    module: z.string(),
    /** The main package built, only when it is not the module's root (so older recipes keep their keys). */
    package: z.string().optional(),
    /** `go env GOVERSION`: the toolchain is part of what the bytes depend on. */
    go: z.string(),
    goos: z.literal("linux"),
    /** GOARCH, from cli/spec/arch.ts (amd64, arm64): the same recipe for another architecture is another build. */
    goarch: z.enum(ARCHES.map((a) => ARCH[a].goarch) as [string, ...string[]]),
    goMod: z.string().regex(/^[0-9a-f]{64}$/),
    goSum: z.string().regex(/^[0-9a-f]{64}$/),
    cgo: z.boolean(),
    /** The C compiler's version line, for cgo builds (its output is linked in). */
    cc: z.string().optional(),
    tags: z.array(z.string()),
    ldflags: z.string(),
    flags: z.array(z.string()),
  })
  .strict();
export type GoRecipe = z.infer<typeof GoRecipeSchema>;

export const GoBuildSchema = z
  .object({
    recipe: GoRecipeSchema,
    key: z.string().regex(/^[0-9a-f]{64}$/),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    size: z.number().int().positive(),
    /** `go version -m`: every module linked in, as path@version. */
    modules: z.array(z.string()),
  })
  .strict();
export type GoBuild = z.infer<typeof GoBuildSchema>;

const semver = (v: string) => v.split(".").map(Number) as [number, number, number];
function newer(a: string, b: string): boolean {
  const [x, y] = [semver(a), semver(b)];
  for (let i = 0; i < 3; i++) if (x[i]! !== y[i]!) return x[i]! > y[i]!;
  return false;
}

/** Refuses a release this channel must not build (BUSL-1.1), naming the newest it may. */
export function checkLicensedVersion(spec: Pick<GoModuleSpec, "product" | "version">, where: string): void {
  const last = LAST_MPL[spec.product];
  if (last && newer(spec.version, last)) {
    throw new ResinError(
      `${where}: ${spec.product} ${spec.version} is under the BUSL-1.1 licence; Resin builds only MPL-2.0 releases from Go modules (${spec.product} ≤ ${last})`,
      `pin ${spec.product} ${last} in the wrapper module, or use --channel official for HashiCorp's own releases`,
    );
  }
}

/** The licence text of a module must be the MPL-2.0, and not the BUSL. */
export function checkLicenceText(text: string, what: string): void {
  if (/Business Source License/i.test(text) || !/Mozilla Public License,? (version|Version) 2\.0/.test(text)) {
    throw new ResinError(`${what}: its LICENSE is not the Mozilla Public License 2.0`, "Resin builds only MPL-2.0 releases from Go modules; nothing was built or cached");
  }
}

/** The wrapper's go.mod must require exactly the module and version the service names. */
export function checkWrapper(goMod: string, spec: Pick<GoModuleSpec, "module" | "version">, where: string): void {
  const escaped = spec.module.replace(/[.]/g, "\\.");
  const m = new RegExp(`^\\s*(?:require\\s+)?${escaped}\\s+(v\\S+)`, "m").exec(goMod);
  if (!m) throw new ResinError(`${where}: go.mod does not require ${spec.module}`, `add: require ${spec.module} v${spec.version}, then run go mod tidy there`);
  if (m[1] !== `v${spec.version}`) {
    throw new ResinError(`${where}: go.mod requires ${spec.module} ${m[1]}, but service.yml says ${spec.version}`, "make them equal, then run go mod tidy there");
  }
}

/** The -ldflags string: symbols and DWARF stripped, then the -X stamps in sorted order. */
export function ldflagsFor(spec: Pick<GoModuleSpec, "x">): string {
  return ["-s", "-w", ...Object.keys(spec.x).sort().map((k) => `-X ${k}=${spec.x[k]}`)].join(" ");
}

export function recipeKey(recipe: GoRecipe): string {
  return sha256(canonicalJson(recipe));
}

/** `go version -m` output → the main module and its dependencies as path@version (replacements resolved). */
export function parseModuleList(text: string): string[] {
  const modules: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[0] === "mod" || f[0] === "dep") modules.push(`${f[1]}@${f[2]}`);
    else if (f[0] === "=>" && modules.length) modules[modules.length - 1] += ` => ${f[1]}@${f[2]}`;
  }
  return modules;
}

/**
 * GOTOOLCHAIN for Resin's builds: an exact toolchain the caller pinned (go1.26.8, which
 * the go command takes from the module proxy once; scripts/go-env.sh sets it where the
 * machine's Go is older than a wrapper needs), else this machine's own ("local"). Never
 * "auto" or "path": a build must not pick its Go by itself. The recipe records the
 * version that ran (go env GOVERSION). Pure.
 */
export function pinnedToolchain(requested: string | undefined): string {
  return requested && /^go1\.\d+\.\d+$/.test(requested) ? requested : "local";
}

/**
 * Pure: the go command's environment from the inherited one and the module proxies to
 * use. This machine's toolchain (or an exact one pinned: pinnedToolchain); modules only
 * through the proxies, every sum checked against the checksum database: whatever the caller's environment or go env file says,
 * nothing names modules to fetch directly (GONOPROXY, GOPRIVATE), to skip the checksum
 * database (GONOSUMDB, GOPRIVATE, GOSUMDB=off) or to fetch insecurely (GOINSECURE), and
 * no go.work replaces the wrapper's modules. GOENV=off: the go env file (`go env -w`)
 * cannot bring any of them back, as an empty variable would let it.
 */
export function pinnedGoEnv(inherited: NodeJS.ProcessEnv, cgo: boolean, proxies: string[], arch: Arch = DEFAULT_ARCH): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    GOENV: "off",
    GOTOOLCHAIN: pinnedToolchain(inherited.GOTOOLCHAIN),
    GOFLAGS: "-mod=readonly",
    GOOS: "linux",
    GOARCH: ARCH[arch].goarch,
    CGO_ENABLED: cgo ? "1" : "0",
    GOPROXY: proxies.join(","),
    GONOPROXY: "",
    GONOSUMDB: "",
    GOPRIVATE: "",
    GOINSECURE: "",
    GOWORK: "off",
  };
  // A named checksum database stays; "off" (or nothing) is Go's default one.
  const sumdb = inherited.GOSUMDB?.trim();
  if (!sumdb || sumdb === "off") delete env.GOSUMDB;
  return env;
}

/** The go command's environment (pinnedGoEnv), with the module proxies this machine's go is set to use. */
export async function goEnv(cgo: boolean, arch: Arch = DEFAULT_ARCH): Promise<NodeJS.ProcessEnv> {
  const { stdout } = await execa("go", ["env", "GOPROXY"], { env: { ...process.env, GOTOOLCHAIN: pinnedToolchain(process.env.GOTOOLCHAIN), GOFLAGS: "-mod=readonly" } }).catch(() => {
    throw new ResinError("the go command is not installed", "install Go (1.21 or newer) and put it on PATH, with GOTOOLCHAIN=go1.X.Y where it is older than a wrapper's go.mod needs (in a clone of Resin: sh scripts/ensure-deps.sh, then . scripts/go-env.sh)");
  });
  // Never "direct": source comes from the module proxy and nowhere else.
  const proxies = stdout.trim().split(/[,|]/).filter((p) => p && p !== "direct" && p !== "off");
  if (proxies.length === 0) {
    throw new ResinError(`GOPROXY names no module proxy (${stdout.trim() || "empty"})`, "set GOPROXY to your Go module proxy; Resin takes modules only from a proxy, never directly from version control");
  }
  return pinnedGoEnv(process.env, cgo, proxies, arch);
}

/** The recipe for a service's Go module on this machine, for an architecture (amd64 when absent). */
export async function goRecipe(spec: GoModuleSpec, wrapperDir: string, arch: Arch = DEFAULT_ARCH): Promise<GoRecipe> {
  const env = await goEnv(spec.cgo, arch);
  const go = (await execa("go", ["env", "GOVERSION"], { env })).stdout.trim();
  const cc = spec.cgo ? (await execa("gcc", ["--version"], { env })).stdout.split("\n")[0]!.trim() : undefined;
  const recipe: GoRecipe = {
    product: spec.product,
    version: spec.version,
    module: spec.module,
    ...(spec.package && spec.package !== spec.module ? { package: spec.package } : {}),
    go,
    goos: "linux",
    goarch: ARCH[arch].goarch,
    goMod: sha256(await readFile(join(wrapperDir, "go.mod"))),
    goSum: sha256(await readFile(join(wrapperDir, "go.sum"))),
    cgo: spec.cgo,
    ...(cc ? { cc } : {}),
    tags: [...spec.tags].sort(),
    ldflags: ldflagsFor(spec),
    flags: [...GO_FLAGS],
  };
  return recipe;
}

const indexPath = (key: string) => join(cacheHome(), "gomodules", `${key}.json`);

/** The cached build of this recipe, its blob re-hashed; undefined when there is none. */
export async function cachedGoBuild(recipe: GoRecipe): Promise<GoBuild | undefined> {
  const key = recipeKey(recipe);
  const path = indexPath(key);
  if (!existsSync(path)) return undefined;
  const parsed = GoBuildSchema.safeParse(JSON.parse(await readFile(path, "utf8").catch(() => "null")));
  if (!parsed.success || parsed.data.key !== key) return undefined;
  await verifiedBlob(parsed.data.sha256, `${recipe.product} ${recipe.version} build`);
  return parsed.data;
}

/** The cached binary's bytes. */
export async function goBuildBinary(build: GoBuild): Promise<Buffer> {
  return readFile(await verifiedBlob(build.sha256, `${build.recipe.product} ${build.recipe.version} build`));
}

export interface GoBuildOptions {
  log: Log;
  /** The sha256 resin.lock.json pins for this recipe, if any: other bytes are refused. */
  locked?: { key: string; sha256: string };
  /** Seconds between progress lines while compiling. */
  progressSeconds?: number;
  /** The architecture to build for (GOARCH from cli/spec/arch.ts); amd64 when absent. */
  arch?: Arch;
}

/**
 * Build the service's program from its wrapper module, or take it from the cache.
 * Prints progress while compiling: a cold Vault build takes tens of minutes.
 */
export async function ensureGoBuild(spec: GoModuleSpec, wrapperDir: string, opts: GoBuildOptions): Promise<GoBuild> {
  const where = join(wrapperDir, "go.mod");
  checkLicensedVersion(spec, where);
  checkWrapper(await readFile(where, "utf8"), spec, where);
  const pkg = spec.package ?? spec.module;
  if (pkg !== spec.module && !pkg.startsWith(`${spec.module}/`)) {
    throw new ResinError(`${where}: the package ${pkg} is not in the module ${spec.module}`, `name a package under ${spec.module}/, such as ${spec.module}/cmd/NAME`);
  }
  const arch = opts.arch ?? DEFAULT_ARCH;
  // Go cross-compiles pure Go by itself; cgo would need the other architecture's C compiler.
  if (spec.cgo && arch !== hostArch()) {
    throw new ResinError(`${where}: ${spec.product} ${spec.version} is built with cgo, which cannot be built for ${arch} on this ${hostArch() ?? process.arch} machine`, `build it on an ${arch} machine, or set cgo: false in its go_module if it builds without C`);
  }
  const recipe = await goRecipe(spec, wrapperDir, arch);
  const key = recipeKey(recipe);
  const cached = await cachedGoBuild(recipe);
  if (cached && (!opts.locked || opts.locked.key !== key || opts.locked.sha256 === cached.sha256)) return cached;

  const env = await goEnv(spec.cgo, arch);
  const name = `${spec.product} ${spec.version}`;
  const go = (args: string[]) => execa("go", args, { cwd: wrapperDir, env, reject: false, all: true });
  opts.log(`  go: downloading the modules of ${name} (${recipe.go}, through the module proxy)`);
  const download = await go(["mod", "download"]);
  if (download.exitCode !== 0) {
    throw new ResinError(
      `go mod download for ${name} failed in ${wrapperDir}: ${lastLine(download.all)}`,
      "the module proxy must serve every module go.sum names; nothing was built or cached",
    );
  }
  const info = await go(["list", "-m", "-json", spec.module]);
  const dir = info.exitCode === 0 ? (JSON.parse(info.stdout) as { Dir?: string }).Dir : undefined;
  if (!dir) throw new ResinError(`go list could not find ${spec.module} for ${name}: ${lastLine(info.all)}`, "nothing was built or cached");
  checkLicenceText(await readFile(join(dir, "LICENSE"), "utf8").catch(() => ""), `${spec.module}@v${spec.version}`);

  const total = (await go(["list", "-deps", pkg])).stdout.split("\n").filter(Boolean).length;
  const scratch = await mkdtemp(join(tmpdir(), `resin-go-${spec.product}-`));
  try {
    const out = join(scratch, spec.product);
    const args = ["build", "-v", ...GO_FLAGS, ...(recipe.tags.length ? ["-tags", recipe.tags.join(",")] : []), "-ldflags", recipe.ldflags, "-o", out, pkg];
    opts.log(`  go: building ${name} from ${pkg} (${total} packages; a cold build takes many minutes, later builds come from the cache)`);
    const started = Date.now();
    let compiled = 0;
    const child = execa("go", args, { cwd: wrapperDir, env, reject: false, all: true, buffer: { all: true } });
    child.stderr?.on("data", (chunk: Buffer) => {
      compiled += chunk.toString().split("\n").filter((l) => l && !l.startsWith("#")).length;
    });
    const every = (opts.progressSeconds ?? 30) * 1000;
    const timer = setInterval(() => opts.log(`  go: ${name}: ${compiled} of ${total} packages compiled, ${Math.round((Date.now() - started) / 1000)} s`), every);
    const result = await child.finally(() => clearInterval(timer));
    if (result.exitCode !== 0) {
      throw new ResinError(`go build of ${name} failed: ${lastLine(result.all)}`, `run the same build by hand to see every error: cd ${wrapperDir} && GOTOOLCHAIN=${env.GOTOOLCHAIN} go ${args.join(" ")}; nothing was cached`);
    }
    const modules = parseModuleList((await execa("go", ["version", "-m", out], { env })).stdout);
    const sha = await putBlob(out, cacheHome(), false);
    if (opts.locked && opts.locked.key === key && opts.locked.sha256 !== sha) {
      throw new ResinError(
        `${name} built to sha256 ${sha}, but resin.lock.json pins ${opts.locked.sha256} for the same recipe: this build is not reproducible here`,
        "compare the Go toolchain and C compiler with the machine that wrote the lock; the index was not updated",
      );
    }
    const build: GoBuild = { recipe, key, sha256: sha, size: (await stat(out)).size, modules };
    await writeFileAtomic(indexPath(key), `${canonicalJson(build)}\n`);
    opts.log(`  go: built ${name} in ${Math.round((Date.now() - started) / 1000)} s: ${(build.size / 1e6).toFixed(0)} MB, sha256 ${sha.slice(0, 16)}…`);
    return build;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function lastLine(text: string | undefined): string {
  return (text ?? "").trim().split("\n").filter(Boolean).pop() ?? "no output";
}
