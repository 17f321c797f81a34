// arm64 beside amd64 (#23): the same three-node consul-server cluster booted as arm64
// nodes, emulated by TCG on this host, in the same run as the amd64 boots; and the size
// of every role's arm64 image the debian channel builds. Figures, no target: emulation
// says how fast QEMU translates, not how fast an arm64 machine is.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { imagesDir, type ImageManifest } from "../cli/image/manifest.js";
import { archOf, type Arch } from "../cli/spec/arch.js";
import type { Channel } from "../cli/spec/schema.js";
import { bootResinCluster, type ResinBoot } from "./resin-side.js";
import { log, repoRoot, resin, sample, type Sample } from "./util.js";

export interface ArchSizes {
  kernelBytes: number;
  initrdBytes: number;
  rootfsBytes: number;
  totalBytes: number;
}

export interface Arm64Results {
  /** launch → quorum and → autopilot healthy of the arm64 clusters, and `resin up` → quorum. */
  launchToQuorumSeconds: Sample;
  launchToHealthySeconds: Sample;
  upToQuorumSeconds: Sample;
  /** Per role, its arm64 image (debian channel). */
  images: Record<string, ArchSizes>;
}

/** Boot `runs` fresh arm64 clusters, one after another, each destroyed after it is measured. */
export async function arm64Boots(runs: number, name: string, timeoutS: number, keep: boolean): Promise<ResinBoot[]> {
  const boots: ResinBoot[] = [];
  for (let i = 0; i < runs; i++) {
    log(`arm64 run ${i + 1}/${runs}: resin up --arch arm64 --role consul-server --channel debian (TCG)`);
    const r = await bootResinCluster({ name, timeoutS, keepOnFailure: keep, arch: "arm64" });
    await r.release();
    log(`arm64 run ${i + 1}/${runs}: launch → quorum ${r.boot.quorumSeconds.toFixed(1)}s, → autopilot healthy ${r.boot.healthySeconds.toFixed(1)}s`);
    boots.push(r.boot);
  }
  return boots;
}

/** Every manifest.json under `dir` (the build output), newest first. */
function manifestsUnder(dir: string): { path: string; mtime: number }[] {
  const out: { path: string; mtime: number }[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 4) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if (e.name === "manifest.json") out.push({ path: p, mtime: statSync(p).mtimeMs });
    }
  };
  walk(dir, 0);
  return out.sort((a, b) => b.mtime - a.mtime);
}

/** The directory of the newest `arch` image of `role` in the build output (imagesDir: out/images/<channel>[-<arch>]), if any. */
export function newestImageDir(role: string, arch: Arch, channel: Channel = "debian"): string | undefined {
  const dir = imagesDir(repoRoot, channel, arch);
  if (!existsSync(dir)) return undefined;
  for (const { path } of manifestsUnder(dir)) {
    const m = JSON.parse(readFileSync(path, "utf8")) as ImageManifest;
    if (m.role === role && archOf(m) === arch) return dirname(path);
  }
  return undefined;
}

/** Build every debian role for arm64 and give each one's sizes (the newest arm64 manifest per role). */
export async function arm64ImageSizes(): Promise<Record<string, ArchSizes>> {
  await resin(["build", "--arch", "arm64", "--channel", "debian"], {}, { echo: true });
  const sizes: Record<string, ArchSizes> = {};
  for (const { path } of manifestsUnder(imagesDir(repoRoot, "debian", "arm64"))) {
    const m = JSON.parse(readFileSync(path, "utf8")) as ImageManifest;
    if (archOf(m) !== "arm64" || sizes[m.role]) continue;
    sizes[m.role] = { kernelBytes: m.kernel.size, initrdBytes: m.initrd.size, rootfsBytes: m.rootfs.size, totalBytes: m.kernel.size + m.initrd.size + m.rootfs.size };
  }
  return sizes;
}

export function arm64Results(boots: ResinBoot[], images: Record<string, ArchSizes>): Arm64Results {
  return {
    launchToQuorumSeconds: sample(boots.map((b) => b.quorumSeconds)),
    launchToHealthySeconds: sample(boots.map((b) => b.healthySeconds)),
    upToQuorumSeconds: sample(boots.map((b) => b.upToQuorumSeconds)),
    images,
  };
}

/** The table's arm64 lines: beside the same run's amd64 medians. */
export function arm64Table(a: Arm64Results, amd64: { launchToQuorum: number; launchToHealthy: number; upToQuorum: number; totalBytes?: number }): string[] {
  const s = (x: number) => x.toFixed(1);
  const times = (x: number, y: number) => (y > 0 ? `${(x / y).toFixed(2)}×` : "–");
  return [
    `arm64 nodes emulated by TCG on this host beside amd64, 3 × consul-server, seconds from VM launch (arm64: median of ${a.launchToQuorumSeconds.all.length}; no target, this is emulation)`,
    `  → 3-peer quorum        amd64 ${s(amd64.launchToQuorum)}   arm64 ${s(a.launchToQuorumSeconds.median)}   arm64/amd64 ${times(a.launchToQuorumSeconds.median, amd64.launchToQuorum)}   (arm64 all: ${a.launchToQuorumSeconds.all.map(s).join(", ")})`,
    `  → autopilot healthy    amd64 ${s(amd64.launchToHealthy)}   arm64 ${s(a.launchToHealthySeconds.median)}   arm64/amd64 ${times(a.launchToHealthySeconds.median, amd64.launchToHealthy)}`,
    `  resin up → quorum      amd64 ${s(amd64.upToQuorum)}   arm64 ${s(a.upToQuorumSeconds.median)}`,
    `arm64 images (debian channel), MB: ` +
      (Object.entries(a.images)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([role, z]) => `${role} ${(z.totalBytes / 1e6).toFixed(1)} (kernel ${(z.kernelBytes / 1e6).toFixed(1)}, initrd ${(z.initrdBytes / 1e6).toFixed(1)}, root ${(z.rootfsBytes / 1e6).toFixed(1)})`)
        .join("; ") || "none built") +
      (amd64.totalBytes ? `; amd64 consul-server ${(amd64.totalBytes / 1e6).toFixed(1)}` : ""),
  ];
}
