// The Debian packages the unit suite runs for real, made present once before any test
// file starts, the way `resin build` gets them (Resin's own artifact code: the version
// and sha256 resin.lock.json pins, fetched by apt into the content-addressed cache when
// missing, unpacked once): Consul 1.8.7 from bullseye, and the floor's kernel, busybox
// and libc. A cold cache costs one download; a machine that cannot fetch them fails
// here, naming the package, instead of skipping the tests that need them.
//
// Go for the Go-module builds (the OpenTofu the Terraform tests run where there is no
// terraform): scripts/go-env.sh's PATH and GOTOOLCHAIN, so that `npx vitest` finds the Go
// that scripts/ensure-deps.sh installs as `npm test` does. The test workers start after
// this and inherit them.
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureDebs, type DebRequest } from "../../cli/artifacts/debian.js";
import { unpackedDeb } from "../../cli/artifacts/cache.js";
import { readLock } from "../../cli/artifacts/lock.js";
import { stderrLog } from "../../cli/util/log.js";
import { floorDebs } from "../../bench/floor/image.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Absolute path of Consul 1.8.7's binary, unpacked from Debian bullseye's package. */
    consul187: string;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const root = resolve(import.meta.dirname, "..", "..");
  const go = spawnSync("sh", ["-c", `. ./scripts/go-env.sh && printf '%s\\n%s\\n' "$PATH" "\${GOTOOLCHAIN-}"`], { cwd: root, encoding: "utf8" });
  if (go.status !== 0) throw new Error(`scripts/go-env.sh failed: ${go.stderr}`);
  const [path, toolchain] = go.stdout.replace(/\n$/, "").split("\n");
  process.env.PATH = path;
  if (toolchain) process.env.GOTOOLCHAIN = toolchain;
  const lock = await readLock(join(root, "resin.lock.json"));
  // The amd64 entries (the lock pins arm64 ones as "suite/name:arm64"): the floor is this host's.
  const amd64 = Object.fromEntries(Object.entries(lock.debian).filter(([key]) => !key.includes(":")));
  const wanted = new Set(Object.values(floorDebs(Object.values(amd64))).map((d) => d.sha256));
  // Locked entries only: ensureDebs then consults apt for nothing but a missing blob.
  const requests: DebRequest[] = Object.entries(amd64)
    .filter(([, d]) => wanted.has(d.sha256))
    .map(([key]) => ({ suite: key.slice(0, key.indexOf("/")), name: key.slice(key.indexOf("/") + 1), kernel: false, arch: "amd64" }));
  await ensureDebs(requests, lock, stderrLog);
  for (const d of Object.values(amd64).filter((d) => wanted.has(d.sha256))) await unpackedDeb(d.sha256, `${d.package} ${d.version}`);
  const consul = lock.debian["bullseye/consul"];
  if (!consul) throw new Error("resin.lock.json has no bullseye/consul: the unit suite runs Consul 1.8.7 from Debian bullseye");
  const bin = join(await unpackedDeb(consul.sha256, `consul ${consul.version}`), "usr", "bin", "consul");
  const version = spawnSync(bin, ["version"], { encoding: "utf8" });
  if (!/^Consul v1\.8\.7\b/.test(version.stdout ?? "")) throw new Error(`${bin} is not Consul 1.8.7: ${version.stdout}${version.stderr}${version.error?.message ?? ""}`);
  project.provide("consul187", bin);
}
