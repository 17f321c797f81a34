// `resin artifacts`: look at and fill the cache of official HashiCorp releases.
// `fetch` downloads (online), `import` takes files copied in by hand (air-gapped);
// both verify the same way before anything is cached. See cli/artifacts/official.ts.
import { Option, type Command } from "commander";
import { fetchRelease, importRelease, listCachedReleases, releaseBaseUrl } from "../artifacts/official.js";
import { parseReleaseRef } from "../artifacts/releases.js";
import { ResinError } from "../util/errors.js";
import { ARCH, ARCHES, DEFAULT_ARCH, type Arch } from "../spec/arch.js";
import { stderrLog } from "../util/log.js";

export function registerArtifactsCommand(program: Command): void {
  const artifacts = program
    .command("artifacts")
    .description("list, fetch or import verified official HashiCorp releases (consul, nomad, vault; linux_amd64 or linux_arm64)");

  artifacts
    .command("list")
    .description("print the cached releases: product, version, sha256 of the zip, file name")
    .option("--json", "print machine-readable JSON on stdout")
    .action(async (opts: { json?: boolean }) => {
      const releases = await listCachedReleases();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(releases, null, 2)}\n`);
        return;
      }
      if (releases.length === 0) stderrLog("no official releases cached (`resin artifacts fetch <product>@<version>` adds one)");
      for (const r of releases) process.stdout.write(`${r.product}\t${r.version}\t${r.sha256}\t${r.file}\n`);
    });

  artifacts
    .command("fetch")
    .description(`download releases from ${releaseBaseUrl()} (RESIN_RELEASES_URL), verify their signed SHA256SUMS and cache them`)
    .argument("<releases...>", "product@version, e.g. nomad@1.9.3")
    .option("--force", "download and verify again even when a verified copy is cached")
    .addOption(new Option("--arch <arch>", `the architecture's archives (${ARCHES.map((a) => `${a}: ${ARCH[a].hashicorpPlatform}`).join(", ")})`).choices(ARCHES).default(DEFAULT_ARCH))
    .action(async (releases: string[], opts: { force?: boolean; arch: Arch }) => {
      // Parse every argument first, so a typo in the last one fails before any download.
      const refs = releases.map(parseReleaseRef).map((r) => (opts.arch === DEFAULT_ARCH ? r : { ...r, arch: opts.arch }));
      for (const ref of refs) {
        await fetchRelease(ref, { log: stderrLog, force: !!opts.force });
      }
    });

  artifacts
    .command("import")
    .description("verify and cache release zips copied onto this machine; each needs its SHA256SUMS and SHA256SUMS.sig beside it")
    .argument("<zips...>", "paths of <product>_<version>_<platform>.zip files (linux_amd64 or linux_arm64: the name says the architecture)")
    .option("--sums <file>", "the release's SHA256SUMS, when it is not beside the zip (one zip only)")
    .option("--sig <file>", "the signature of the SHA256SUMS, when it is not beside it (one zip only)")
    .action(async (zips: string[], opts: { sums?: string; sig?: string }) => {
      if ((opts.sums || opts.sig) && zips.length > 1) {
        throw new ResinError("--sums and --sig name the files of one release", "import one zip at a time when giving them");
      }
      for (const zip of zips) {
        await importRelease(zip, { log: stderrLog, sums: opts.sums, sig: opts.sig });
      }
    });
}
