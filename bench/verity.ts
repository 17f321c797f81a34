// What dm-verity costs, measured in one run (issue #24's targets: launch → quorum at most
// 5 % slower, the image at most 2 % larger): Resin's consul-server image as built, against
// the same image built without it. That image comes from a temporary project copy whose
// `base` service is the stock one with dm-verity taken out of its initramfs (no dm_verity
// module, no dmsetup and its four libraries) and verity.sh replaced by
// bench/verity/unverified.sh, whose verity_open hands /init the root disk itself. Only the
// bench makes it: no command, flag or spec of Resin's boots an unverified root, and the
// production /init is the same file in both images. Both boot through `resin up` as a
// user's cluster does (fresh state, first boot), in rounds that alternate which goes first.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDocument } from "yaml";
import type { ImageManifest } from "../cli/image/manifest.js";
import { overrideStock, userProject } from "./project.js";
import { bootResinCluster, type ResinBoot } from "./resin-side.js";
import { log, onCleanup, repoRoot, resin, rmDirNow } from "./util.js";

/** What the stock base service has for dm-verity, taken out of the bench's copy. */
const VERITY_MODULE = "dm_verity";
const VERITY_PACKAGE = "dmsetup";
const VERITY_LIBRARIES = ["libdevmapper1.02.1", "libselinux1", "libudev1", "libpcre2-8-0"];

/** Remove `value` from the YAML sequence at `path`; it must be there (the stock spec changed otherwise). */
function removeFrom(doc: ReturnType<typeof parseDocument>, path: string[], match: (item: unknown) => boolean, what: string): void {
  const seq = doc.getIn(path, true) as { items: unknown[] } | undefined;
  const index = seq?.items.findIndex((item) => match((item as { toJSON?: () => unknown }).toJSON ? (item as { toJSON: () => unknown }).toJSON() : item)) ?? -1;
  if (index < 0) throw new Error(`services/base/service.yml has no ${what} under ${path.join(".")}: update bench/verity.ts`);
  seq!.items.splice(index, 1);
}

/** The base service's spec text without what dm-verity brings into the initramfs (its module, dmsetup and dmsetup's libraries). */
export function unverifiedBaseSpec(text: string): string {
  const doc = parseDocument(text);
  removeFrom(doc, ["initramfs", "modules"], (m) => m === VERITY_MODULE, VERITY_MODULE);
  removeFrom(doc, ["packages"], (p) => (p as { name?: string }).name === VERITY_PACKAGE, `package ${VERITY_PACKAGE}`);
  for (const lib of VERITY_LIBRARIES) removeFrom(doc, ["libraries"], (l) => l === lib, lib);
  return doc.toString();
}

/** A project copy that builds consul-server without dm-verity; its image is built here. */
export async function buildUnverifiedImage(keepOnFailure: boolean): Promise<{ project: string; manifest: ImageManifest; release: () => Promise<void> }> {
  const project = userProject("resin-bench-noverity-");
  const release = onCleanup(`project copy ${project}`, () => rmDirNow(project));
  overrideStock(project, "services/base");
  const specFile = join(project, "services", "base", "service.yml");
  writeFileSync(specFile, unverifiedBaseSpec(readFileSync(specFile, "utf8")));
  writeFileSync(join(project, "services", "base", "verity.sh"), readFileSync(join(repoRoot, "bench", "verity", "unverified.sh")));
  try {
    await resin(["build", "consul-server", "--channel", "debian", "--offline"], { RESIN_PROJECT: project }, { echo: true });
  } catch (e) {
    if (keepOnFailure) log(`BENCH_KEEP: the project copy stays in ${project}`);
    else await release();
    throw e;
  }
  const manifest = JSON.parse(readFileSync(join(project, "out", "images", "debian", "consul-server", "manifest.json"), "utf8")) as ImageManifest;
  return { project, manifest, release };
}

export interface VerityRound {
  /** Which image booted first in this round. */
  first: "verity" | "unverified";
  verity: ResinBoot;
  unverified: ResinBoot;
}

/** `runs` rounds: a fresh three-node cluster of each image, the order alternating. */
export async function verityRounds(runs: number, timeoutS: number, keep: boolean, unverifiedProject: string): Promise<VerityRound[]> {
  const rounds: VerityRound[] = [];
  for (let i = 0; i < runs; i++) {
    const order: ("verity" | "unverified")[] = i % 2 === 0 ? ["verity", "unverified"] : ["unverified", "verity"];
    const boots: Partial<Record<"verity" | "unverified", ResinBoot>> = {};
    for (const which of order) {
      log(`verity round ${i + 1}/${runs}: ${which === "verity" ? "the image as built (dm-verity)" : "the same image without dm-verity"}`);
      const r = await bootResinCluster({ name: "bench-verity", timeoutS, keepOnFailure: keep, ...(which === "unverified" ? { project: unverifiedProject } : {}) });
      await r.release();
      boots[which] = r.boot;
    }
    rounds.push({ first: order[0]!, verity: boots.verity!, unverified: boots.unverified! });
    log(`verity round ${i + 1}/${runs}: launch → quorum ${boots.verity!.quorumSeconds.toFixed(1)}s with dm-verity, ${boots.unverified!.quorumSeconds.toFixed(1)}s without`);
  }
  return rounds;
}

/** Bytes per boot file, with and without dm-verity; the unverified image has no tree, and its disk.raw's resin-verity partition is not counted. */
export function veritySizes(withVerity: ImageManifest, without: ImageManifest) {
  const partitionBytes = (m: ImageManifest, name: string) => {
    const p = m.disk?.partitions.find((x) => x.name === name);
    return p ? (p.lastLba - p.firstLba + 1) * 512 : 0;
  };
  const files = (m: ImageManifest, tree: boolean) => ({
    vmlinuz: m.kernel.size,
    "initrd.img": m.initrd.size,
    "rootfs.squashfs": m.rootfs.size,
    "rootfs.verity": tree ? (m.verity?.size ?? 0) : 0,
  });
  const w = files(withVerity, true);
  const wo = files(without, false);
  const bootWith = Object.values(w).reduce((a, b) => a + b, 0);
  const bootWithout = Object.values(wo).reduce((a, b) => a + b, 0);
  const rawWith = withVerity.disk?.raw.size ?? 0;
  const rawWithout = (without.disk?.raw.size ?? 0) - partitionBytes(without, "resin-verity");
  return {
    withVerity: { ...w, bootFiles: bootWith, "disk.raw": rawWith },
    without: { ...wo, bootFiles: bootWithout, "disk.raw": rawWithout },
    growth: { bootFiles: bootWith / bootWithout - 1, "disk.raw": rawWith / rawWithout - 1 },
  };
}
