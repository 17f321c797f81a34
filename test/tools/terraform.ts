// The Terraform engine the tests run, found in one place. In order:
//
//   1. RESIN_TERRAFORM, if set: a terraform or tofu binary (anything else is refused);
//   2. `terraform`: /usr/local/bin/terraform, then PATH;
//   3. `tofu` on PATH;
//   4. OpenTofu (MPL-2.0) built here from its Go module, by Resin's own
//      Go build (cli/artifacts/gomodule.ts): the wrapper module test/tools/opentofu
//      pins it (go.mod + go.sum), the go command fetches only through the module proxy,
//      and the binary is cached by its whole recipe, so only the first run compiles.
//      The cached binary is copied to <resin cache>/tools/tofu-<sha256 prefix>.
//
// So the Terraform tests never skip for want of a binary.
import { constants, existsSync, statSync } from "node:fs";
import { access, chmod, mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { ensureGoBuild, goBuildBinary, type GoBuild } from "../../cli/artifacts/gomodule.js";
import { GoModuleSchema, type GoModuleSpec } from "../../cli/spec/schema.js";
import { cacheHome } from "../../cli/util/paths.js";
import type { Log } from "../../cli/util/log.js";

export type Engine = "terraform" | "tofu";

export interface TerraformBinary {
  path: string;
  engine: Engine;
  /** As the binary reports it, e.g. "1.11.4". */
  version: string;
  /** Where it was found: "RESIN_TERRAFORM", "/usr/local/bin", "PATH" or "built from github.com/opentofu/opentofu@v1.12.6". */
  source: string;
}

/** The wrapper module that pins OpenTofu. */
export const OPENTOFU_DIR = fileURLToPath(new URL("./opentofu/", import.meta.url));

/** OpenTofu as Resin's Go-module build makes it: its release ldflags (`version.dev=no`), no cgo. */
export const OPENTOFU: GoModuleSpec = GoModuleSchema.parse({
  product: "opentofu",
  version: "1.12.6",
  module: "github.com/opentofu/opentofu",
  package: "github.com/opentofu/opentofu/cmd/tofu",
  dir: "opentofu",
  cgo: false,
  tags: [],
  x: { "github.com/opentofu/opentofu/version.dev": "no" },
  binary: "tofu",
});

/**
 * What every test run of the engine gets: no version check, no prompts, and an empty
 * CLI configuration (a test that needs one passes its own TF_CLI_CONFIG_FILE). The
 * machine's ~/.terraformrc must not change results, and a TF_CLI_CONFIG_FILE naming a
 * missing file makes OpenTofu print a warning on stdout, even before `output -json`.
 */
export const ENGINE_ENV = { CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1", TF_INPUT: "0", TF_CLI_CONFIG_FILE: "/dev/null" } as const;

const stderrLog: Log = (m) => process.stderr.write(`${m}\n`);

async function executable(path: string): Promise<boolean> {
  try {
    if (!statSync(path).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Ask the binary what it is: `terraform version` says "Terraform v…", `tofu version` "OpenTofu v…". */
export async function identify(path: string, env: NodeJS.ProcessEnv = process.env): Promise<{ engine: Engine; version: string }> {
  const r = await execa(path, ["version"], { env: { ...env, ...ENGINE_ENV }, reject: false, timeout: 30_000, stdin: "ignore" }).catch((e: Error) => ({ exitCode: -1, stdout: "", stderr: e.message }));
  // Its version line, wherever it is: warnings about the CLI configuration may come first.
  const m = /^(Terraform|OpenTofu) v(\d+\.\d+\.\d+\S*)\s*$/m.exec(String(r.stdout));
  if (r.exitCode !== 0 || !m) {
    const said = `${r.stdout}\n${r.stderr}`.split("\n").map((l) => l.trim()).find(Boolean) ?? `exit ${r.exitCode}`;
    throw new Error(`${path} is not a Terraform or OpenTofu binary (\`${path} version\` said: ${said})`);
  }
  return { engine: m[1] === "OpenTofu" ? "tofu" : "terraform", version: m[2]! };
}

/** A tiny cross-process lock, so that two test files never compile OpenTofu at once. */
async function withLock<T>(path: string, log: Log, fn: () => Promise<T>): Promise<T> {
  await mkdir(resolve(path, ".."), { recursive: true });
  let said = false;
  for (;;) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
      let alive = false;
      try {
        if (pid > 0) process.kill(pid, 0);
        alive = pid > 0;
      } catch {
        alive = false;
      }
      if (!alive) {
        await rm(path, { force: true });
        continue;
      }
      if (!said) log(`  opentofu: waiting for process ${pid}, which is building OpenTofu (${path})`);
      said = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

/**
 * OpenTofu built from its Go module (or taken from the cache), as an executable file
 * under the resin cache. A cold build compiles for many minutes and says so.
 */
export async function buildOpenTofu(opts: { log?: Log } = {}): Promise<TerraformBinary & { build: GoBuild }> {
  const log = opts.log ?? stderrLog;
  const tools = join(cacheHome(), "tools");
  return withLock(join(tools, "opentofu.lock"), log, async () => {
    const build = await ensureGoBuild(OPENTOFU, OPENTOFU_DIR, { log });
    const path = join(tools, `tofu-${build.sha256.slice(0, 16)}`);
    if (!existsSync(path)) {
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, await goBuildBinary(build), { mode: 0o755 });
      await chmod(tmp, 0o755);
      await rename(tmp, path);
    }
    const id = await identify(path);
    if (id.engine !== "tofu" || id.version !== OPENTOFU.version) {
      throw new Error(`${path} says it is ${id.engine} ${id.version}, not OpenTofu ${OPENTOFU.version}; delete it and run the tests again`);
    }
    return { path, ...id, source: `built from ${OPENTOFU.module}@v${OPENTOFU.version}`, build };
  });
}

export interface FindOptions {
  /** The environment to read RESIN_TERRAFORM and PATH from (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Fixed places tried before PATH for `terraform` (default: /usr/local/bin/terraform). */
  wellKnown?: string[];
  log?: Log;
}

/** The engine the Terraform tests run: see the order at the top of this file. */
export async function terraformBinary(opts: FindOptions = {}): Promise<TerraformBinary> {
  const env = opts.env ?? process.env;
  const chosen = env.RESIN_TERRAFORM;
  if (chosen !== undefined) {
    const path = resolve(chosen);
    if (!chosen || !(await executable(path))) {
      throw new Error(`RESIN_TERRAFORM=${chosen} is not an executable file: point it at a terraform or tofu binary, or unset it to use terraform, tofu or a built OpenTofu`);
    }
    const id = await identify(path, env).catch((e: Error) => {
      throw new Error(`RESIN_TERRAFORM=${chosen}: ${e.message}; point it at a terraform or tofu binary, or unset it`);
    });
    return { path, ...id, source: "RESIN_TERRAFORM" };
  }
  const dirs = (env.PATH ?? "").split(delimiter).filter(Boolean);
  const candidates: [string, string][] = [
    ...(opts.wellKnown ?? ["/usr/local/bin/terraform"]).map((p): [string, string] => [p, p.slice(0, p.lastIndexOf("/")) || "/"]),
    ...dirs.map((d): [string, string] => [join(d, "terraform"), "PATH"]),
    ...dirs.map((d): [string, string] => [join(d, "tofu"), "PATH"]),
  ];
  for (const [path, source] of candidates) {
    if (await executable(path)) return { path, ...(await identify(path, env)), source };
  }
  const { build: _build, ...built } = await buildOpenTofu({ log: opts.log ?? stderrLog });
  return built;
}

/** One line for the test output: which engine ran. */
export function describeEngine(b: TerraformBinary): string {
  return `${b.engine === "tofu" ? "OpenTofu" : "Terraform"} ${b.version} (${b.path}, ${b.source})`;
}
