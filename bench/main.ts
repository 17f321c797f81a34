// `npm run bench`: Resin images against a generic-distro image (Debian bookworm minbase
// + systemd, same kernel, same Consul .deb, same config drive), side by side in one run:
// boot to quorum, memory once ready, image size and build time. Each number is the
// median of BENCH_RUNS runs (default 3), with generic ÷ Resin measured in the same run.
// It prints a table, writes out/bench/latest.json and a dated copy, and never fails on
// a number; a step that fails exits non-zero. Every VM and temporary directory is
// cleaned up, on failure and on SIGINT/SIGTERM too. Each boot run also boots the floor
// (bench/floor: the same kernel, an initramfs of busybox + Consul, nothing else), the
// limit Resin's boot is measured against; BENCH_ONLY=floor boots the floor alone, and
// BENCH_ONLY=verity weighs dm-verity against the same image without it (bench/verity.ts). The
// same cluster booted as arm64 nodes (TCG) is measured beside it, BENCH_ARM64_RUNS times
// (default 1: emulation is slow), with every debian role's arm64 image size;
// BENCH_ONLY=arm64 boots one amd64 and BENCH_ARM64_RUNS arm64 clusters alone.
// See bench/README.md.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { servicePorts, type ImageManifest } from "../cli/image/manifest.js";
import { chooseAccel } from "../cli/provider/qemu/accel.js";
import { loadRole } from "../cli/spec/load.js";
import { bootFloorCluster, floorAppend, floorPlan, type FloorBoot } from "./floor/cluster.js";
import { buildFloorImage, FLOOR_APPLETS, FLOOR_MODULES, type FloorImage, type FloorRaft } from "./floor/image.js";
import { bootGenericCluster, GENERIC_APPEND, type GenericBoot } from "./generic/cluster.js";
import { buildGenericImage } from "./generic/image.js";
import { arm64Boots, arm64ImageSizes, arm64Results, arm64Table, type Arm64Results } from "./arch.js";
import { bootResinCluster, measureBuilds, SECOND_ROLE, type BuildRun, type ResinBoot } from "./resin-side.js";
import { measureResilience, upgradeImageSet, type ResilienceRun } from "./resilience.js";
import { buildUnverifiedImage, verityRounds, veritySizes } from "./verity.js";
import { log, ratio, repoRoot, resin, runCleanups, sample, stopChildren, tempDirCleanup, waitForChildren, type Sample, type VmMemory } from "./util.js";

const SCHEMA = 3;
const CLUSTER = "bench";

/** Raft's timing as the consul-server role sets it: the floor runs Consul with the same. */
function floorRaft(options: Record<string, Record<string, unknown>>): FloorRaft {
  const consul = options.consul ?? {};
  return { raftMultiplier: Number(consul.raft_multiplier), serverStabilizationSeconds: Number(consul.server_stabilization_seconds) };
}

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${raw}: want a positive integer`);
  return n;
}

/** What every results file starts with: the schema, which part of the bench ran (all when absent), when, where and how many runs. */
function resultsHeader(only: string | undefined, started: Date, accel: string, runs: number) {
  return { schema: SCHEMA, ...(only ? { only } : {}), date: started.toISOString(), finished: new Date().toISOString(), machine: machine(accel), runs };
}

function machine(accel: string) {
  const thp = readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8").match(/\[(\w+)\]/)?.[1];
  let qemu = "";
  try {
    qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]!;
  } catch {
    // reported as empty
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    accelerator: accel,
    hostKernel: release(),
    qemu,
    transparentHugepages: thp ?? "",
  };
}

interface ImageSizes {
  kernelBytes: number;
  initrdBytes: number;
  /** Resin: the squashfs root; generic: the ext4 disk's allocated blocks. */
  rootfsAsShippedBytes: number;
  rootfsSquashfsBytes: number;
  rootfsUncompressedBytes: number;
  consulBinaryBytes: number;
  /** Uncompressed root filesystem minus the consul binary: what the image adds around the service. */
  overheadBytes: number;
  /** kernel + initrd + root as shipped. */
  totalAsShippedBytes: number;
  /** kernel + initrd + squashfs (zstd) root: the same packing for both. */
  totalSquashfsBytes: number;
  packages: number;
}

function resinSizes(m: ImageManifest): ImageSizes {
  const rootfsUncompressedBytes = m.files.reduce((n, f) => n + ((f as { size?: number }).size ?? 0), 0);
  const consulBinaryBytes = (m.files.find((f) => f.path === "usr/bin/consul") as { size?: number } | undefined)?.size ?? 0;
  const total = m.kernel.size + m.initrd.size + m.rootfs.size;
  return {
    kernelBytes: m.kernel.size,
    initrdBytes: m.initrd.size,
    rootfsAsShippedBytes: m.rootfs.size,
    rootfsSquashfsBytes: m.rootfs.size,
    rootfsUncompressedBytes,
    consulBinaryBytes,
    overheadBytes: rootfsUncompressedBytes - consulBinaryBytes,
    totalAsShippedBytes: total,
    totalSquashfsBytes: total,
    packages: m.packages.length,
  };
}

const mib = (kib: number | undefined) => (kib === undefined ? NaN : kib / 1024);
function memorySamples(boots: { memory: VmMemory[] }[]) {
  const nodes = boots.flatMap((b) => b.memory);
  return {
    qemuRssMiB: sample(nodes.map((m) => mib(m.qemuRssKiB)).filter(Number.isFinite)),
    guestRamResidentMiB: sample(nodes.map((m) => mib(m.guestRamResidentKiB)).filter(Number.isFinite)),
  };
}

/** The floor's sizes as the results (and the table) give them. */
function floorSizes(f: FloorImage) {
  return {
    kernelBytes: f.sizes.kernelBytes,
    initramfsBytes: f.sizes.initramfsBytes,
    initramfsCompression: "none",
    initramfsSha256: f.initrdSha256,
    consulBinaryBytes: f.sizes.consulBinaryBytes,
    /** The initramfs minus the consul binary. */
    overheadBytes: f.sizes.overheadBytes,
    totalAsShippedBytes: f.sizes.kernelBytes + f.sizes.initramfsBytes,
    files: f.files.filter((e) => e.type === "file").length,
    entries: f.files.length,
    modules: f.modules,
    buildSeconds: f.buildSeconds,
  };
}

/** Medians of the floor's boots, and the guest uptime at each step its /init printed (over every node of every run). */
function floorBootSamples(boots: FloorBoot[]) {
  const steps = [...new Set(boots.flatMap((b) => b.consoleTimeline.flatMap((t) => t.steps.map((s) => s.step))))];
  const uptimes = (step: string) => boots.flatMap((b) => b.consoleTimeline.flatMap((t) => t.steps.filter((s) => s.step === step).map((s) => s.uptime)));
  return {
    launchToQuorumSeconds: sample(boots.map((b) => b.quorumSeconds)),
    launchToHealthySeconds: sample(boots.map((b) => b.healthySeconds)),
    initUptimeSeconds: Object.fromEntries(steps.map((s) => [s, sample(uptimes(s))])),
    consoleTimelines: boots.map((b) => b.consoleTimeline),
  };
}

const floorDescription = `Resin's kernel, and an uncompressed initramfs holding only busybox (applets ${FLOOR_APPLETS.map((a) => a.split("/").pop()).join(", ")}), the consul binary with its glibc files, the ${FLOOR_MODULES.join(", ")} modules (and their dependencies), a static Consul config (no TLS, no ACLs) and a small /init (bench/floor/init); no runit, metadata, config drive or disks`;

/** The image the floor is made from and measured against: Resin's consul-server (debian channel), built now. */
async function buildResinImage(): Promise<{ repoImage: string; manifest: ImageManifest }> {
  await resin(["build", "consul-server", "--channel", "debian"], {}, { echo: true });
  const repoImage = join(repoRoot, "out", "images", "debian", "consul-server");
  return { repoImage, manifest: JSON.parse(readFileSync(join(repoImage, "manifest.json"), "utf8")) as ImageManifest };
}

/** BENCH_ONLY=floor: the floor alone, BENCH_RUNS times; prints its numbers and writes out/bench/floor-latest.json. */
async function floorOnly(runs: number, timeoutS: number, keep: boolean): Promise<void> {
  const started = new Date();
  log(`BENCH_ONLY=floor: ${runs} floor boot(s); Resin's consul-server image first (the floor is made from its packages)`);
  const { repoImage, manifest } = await buildResinImage();
  const accel = await chooseAccel(repoImage, log);
  const role = await loadRole(repoRoot, "consul-server", "debian");
  const vm = role.spec.vm;
  const work = mkdtempSync(join(tmpdir(), "resin-bench-floor-image-"));
  tempDirCleanup(work);
  const floor = await buildFloorImage({ dir: work, packages: manifest.packages, kernelSha256: manifest.kernel.sha256, raft: floorRaft(role.options) });
  log(`floor image: initramfs ${(floor.sizes.initramfsBytes / 1e6).toFixed(1)} MB (${floor.initrdSha256.slice(0, 12)}), built in ${floor.buildSeconds.toFixed(1)}s; accelerator ${accel}`);
  const boots: FloorBoot[] = [];
  for (let i = 0; i < runs; i++) {
    log(`floor run ${i + 1}/${runs}`);
    const f = await bootFloorCluster({ image: floor, accel, memoryMib: vm.memory_mib, cpus: vm.cpus, timeoutMs: timeoutS * 1000, keepOnFailure: keep });
    boots.push(f);
    log(`floor run ${i + 1}/${runs}: launch → quorum ${f.quorumSeconds.toFixed(1)}s, → autopilot healthy ${f.healthySeconds.toFixed(1)}s`);
  }
  const boot = floorBootSamples(boots);
  const results = {
    ...resultsHeader("floor", started, accel, runs),
    resinImage: { digest: manifest.digest, kernelSha256: manifest.kernel.sha256 },
    floorImage: { description: floorDescription, kernelAppend: floorAppend(floorPlan(), floorPlan().nodes[0]!), sameKernel: floor.kernelSha256 === manifest.kernel.sha256 },
    boot: { floor: boot },
    memory: { floor: memorySamples(boots) },
    image: { floor: floorSizes(floor) },
  };
  const steps = Object.entries(boot.initUptimeSeconds).map(([s, x]) => `${s} ${x.median.toFixed(2)}s`).join(", ");
  process.stdout.write(
    [
      `Floor alone (BENCH_ONLY=floor), ${results.date}, accelerator ${accel}, median of ${runs}`,
      `  launch → 3-peer quorum       ${boot.launchToQuorumSeconds.median.toFixed(1)} s   (all: ${boot.launchToQuorumSeconds.all.map((x) => x.toFixed(1)).join(", ")})`,
      `  launch → autopilot healthy   ${boot.launchToHealthySeconds.median.toFixed(1)} s`,
      `  guest uptime at /init steps  ${steps}`,
      `  QEMU RSS per node            ${results.memory.floor.qemuRssMiB.median.toFixed(0)} MiB`,
      `  initramfs                    ${(floor.sizes.initramfsBytes / 1e6).toFixed(1)} MB (kernel ${(floor.sizes.kernelBytes / 1e6).toFixed(1)} MB, Resin's)`,
    ].join("\n") + "\n",
  );
  mkdirSync(join(repoRoot, "out", "bench"), { recursive: true });
  writeFileSync(join(repoRoot, "out", "bench", "floor-latest.json"), JSON.stringify(results, null, 2) + "\n");
  log("results in out/bench/floor-latest.json (out/bench/latest.json is left as it was)");
}

/** Issue #24's targets for dm-verity: launch → quorum at most 5 % slower, the image at most 2 % larger. */
const VERITY_TARGETS = { launchToQuorumSlowdown: 0.05, imageGrowth: 0.02 };

/**
 * BENCH_ONLY=verity: Resin's consul-server image against the same image without dm-verity
 * (bench/verity.ts), BENCH_RUNS rounds alternating which boots first; prints both and
 * writes out/bench/verity-latest.json.
 */
async function verityOnly(runs: number, timeoutS: number, keep: boolean): Promise<void> {
  const started = new Date();
  log(`BENCH_ONLY=verity: ${runs} round(s) of a cluster with dm-verity and one without, alternating which goes first`);
  const { repoImage, manifest } = await buildResinImage();
  const accel = await chooseAccel(repoImage, log);
  const unverified = await buildUnverifiedImage(keep);
  const rounds = await verityRounds(runs, timeoutS, keep, unverified.project);
  await unverified.release();
  const side = (which: "verity" | "unverified") => ({
    launchToQuorumSeconds: sample(rounds.map((r) => r[which].quorumSeconds)),
    launchToHealthySeconds: sample(rounds.map((r) => r[which].healthySeconds)),
    timelineUptimeSeconds: timelineSamples(rounds.flatMap((r) => r[which].timelines)),
  });
  const boot = { verity: side("verity"), unverified: side("unverified") };
  // Per round, with ÷ without: the two clusters of a round ran back to back on the same machine.
  const perRound = rounds.map((r) => r.verity.quorumSeconds / r.unverified.quorumSeconds);
  const sizes = veritySizes(manifest, unverified.manifest);
  const results = {
    ...resultsHeader("verity", started, accel, runs),
    images: { verity: manifest.digest, unverified: unverified.manifest.digest },
    order: rounds.map((r) => r.first),
    boot,
    slowdown: {
      launchToQuorumOfMedians: boot.verity.launchToQuorumSeconds.median / boot.unverified.launchToQuorumSeconds.median - 1,
      launchToQuorumPerRound: sample(perRound.map((x) => x - 1)),
    },
    sizes,
    targets: VERITY_TARGETS,
  };
  const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} %`;
  const mb = (x: number) => `${(x / 1e6).toFixed(3)} MB`;
  const steps = (t: Record<string, Sample>) => ["initramfs-modules", "verity", "root", "stage1"].filter((s) => t[s]).map((s) => `${s} ${t[s]!.median.toFixed(2)}`).join(", ");
  const lines = [
    `dm-verity against the same image without it (BENCH_ONLY=verity), ${results.date}, accelerator ${accel}, ${runs} round(s), order ${results.order.join(", ")}`,
    `  launch → 3-peer quorum      with ${boot.verity.launchToQuorumSeconds.median.toFixed(1)} s (all: ${boot.verity.launchToQuorumSeconds.all.map((x) => x.toFixed(1)).join(", ")}), without ${boot.unverified.launchToQuorumSeconds.median.toFixed(1)} s (all: ${boot.unverified.launchToQuorumSeconds.all.map((x) => x.toFixed(1)).join(", ")})`,
    `  slower by                   ${pct(results.slowdown.launchToQuorumOfMedians)} (medians); per round ${perRound.map((x) => pct(x - 1)).join(", ")}; target ≤ ${pct(VERITY_TARGETS.launchToQuorumSlowdown)}`,
    `  launch → autopilot healthy  with ${boot.verity.launchToHealthySeconds.median.toFixed(1)} s, without ${boot.unverified.launchToHealthySeconds.median.toFixed(1)} s`,
    `  guest uptime at steps (s)   with: ${steps(boot.verity.timelineUptimeSeconds)}; without: ${steps(boot.unverified.timelineUptimeSeconds)}`,
    ...(["vmlinuz", "initrd.img", "rootfs.squashfs", "rootfs.verity", "bootFiles", "disk.raw"] as const).map(
      (f) => `  ${(f === "bootFiles" ? "boot files (sum)" : f).padEnd(28)}with ${mb(sizes.withVerity[f])}, without ${mb(sizes.without[f])}${f === "bootFiles" || f === "disk.raw" ? ` (${pct(sizes.growth[f])}; target ≤ ${pct(VERITY_TARGETS.imageGrowth)})` : ""}`,
    ),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  mkdirSync(join(repoRoot, "out", "bench"), { recursive: true });
  writeFileSync(join(repoRoot, "out", "bench", "verity-latest.json"), JSON.stringify(results, null, 2) + "\n");
  log("results in out/bench/verity-latest.json (out/bench/latest.json is left as it was)");
}

/** Issue #15's targets, shown beside the figures (the bench never fails on a number). */
const TARGETS = { resinOverFloorLaunchToQuorum: 1.25, leaderFailoverSeconds: 5, upgradeTotalSeconds: 90, upgradeLongestLeaderlessSeconds: 2, upgradeLostWrites: 0 };

/** Median per boot step over every node of every run. */
function timelineSamples(timelines: { step: string; uptimeSeconds: number }[][]): Record<string, Sample> {
  const byStep = new Map<string, number[]>();
  for (const t of timelines) for (const { step, uptimeSeconds } of t) byStep.set(step, [...(byStep.get(step) ?? []), uptimeSeconds]);
  return Object.fromEntries([...byStep].map(([step, all]) => [step, sample(all)]));
}

/** The faults and upgrade keys of latest.json, medians over the runs. */
function resilienceSamples(runs: ResilienceRun[]) {
  const leaderless = runs.map((r) => r.upgradeLongestLeaderlessSeconds);
  return {
    faults: {
      leaderFailoverSeconds: sample(runs.map((r) => r.leaderFailoverSeconds)),
      lostWrites: sample(runs.map((r) => r.failoverLostWrites)),
    },
    upgrade: {
      totalSeconds: sample(runs.map((r) => r.upgradeSeconds)),
      longestLeaderlessSeconds: { ...sample(leaderless), max: Math.max(...leaderless) },
      longestWriteGapSeconds: sample(runs.map((r) => r.upgradeLongestWriteGapSeconds)),
      lostWrites: sample(runs.map((r) => r.upgradeLostWrites)),
      ackedWrites: sample(runs.map((r) => r.upgradeAckedWrites)),
      refusedWrites: sample(runs.map((r) => r.upgradeRefusedWrites)),
      nodeSeconds: runs.map((r) => r.upgradeNodeSeconds),
      nodePhases: runs.map((r) => r.upgradeNodePhases),
    },
  };
}

/** Faults and upgrade, BENCH_RUNS times, each on a fresh cluster; image set B built once. */
async function resilienceRuns(runs: number, timeoutS: number, keep: boolean): Promise<ResilienceRun[]> {
  log("image set B for the upgrade: consul-server with one setting changed (log_level DEBUG), in a project copy");
  const setB = await upgradeImageSet(keep);
  const all: ResilienceRun[] = [];
  for (let i = 0; i < runs; i++) {
    log(`faults and upgrade, run ${i + 1}/${runs}: a fresh cluster, its leader's VM SIGKILLed, then resin upgrade to ${setB.digest.slice(0, 19)} under writes`);
    all.push(await measureResilience({ name: `${CLUSTER}-r`, timeoutS, imageSet: setB.dir, keepOnFailure: keep }));
  }
  return all;
}

function resilienceTable(r: ReturnType<typeof resilienceSamples>, runs: number): string[] {
  const target = (x: number, max: number, unit: string) => `${x.toFixed(1)}${unit}  (target ≤ ${max}${unit}: ${x <= max ? "met" : "NOT met"})`;
  return [
    `Under change: 3 × consul-server, Resin (median of ${runs})`,
    `  leader failover (SIGKILL → a new leader accepts a write)   ${target(r.faults.leaderFailoverSeconds.median, TARGETS.leaderFailoverSeconds, " s")}; writes lost ${r.faults.lostWrites.median}`,
    `  rolling upgrade of 3 nodes                                 ${target(r.upgrade.totalSeconds.median, TARGETS.upgradeTotalSeconds, " s")}`,
    `  longest window without a leader during it                  ${target(r.upgrade.longestLeaderlessSeconds.median, TARGETS.upgradeLongestLeaderlessSeconds, " s")}; max ${r.upgrade.longestLeaderlessSeconds.max.toFixed(1)} s`,
    `  longest time between acknowledged writes during it         ${r.upgrade.longestWriteGapSeconds.median.toFixed(1)} s (a writer's outage; the writer puts a key every 100 ms)`,
    `  acknowledged writes lost during it                         ${r.upgrade.lostWrites.median} (of ${r.upgrade.ackedWrites.median}; target 0)`,
  ];
}

/** BENCH_ONLY=resilience: faults and upgrade alone; prints them and writes out/bench/resilience-latest.json. */
async function resilienceOnly(runs: number, timeoutS: number, keep: boolean): Promise<void> {
  const started = new Date();
  const { manifest } = await buildResinImage();
  const samples = resilienceSamples(await resilienceRuns(runs, timeoutS, keep));
  const results = { ...resultsHeader("resilience", started, await chooseAccel(), runs), resinImage: { digest: manifest.digest }, targets: TARGETS, ...samples };
  process.stdout.write(resilienceTable(samples, runs).join("\n") + "\n");
  mkdirSync(join(repoRoot, "out", "bench"), { recursive: true });
  writeFileSync(join(repoRoot, "out", "bench", "resilience-latest.json"), JSON.stringify(results, null, 2) + "\n");
  log("results in out/bench/resilience-latest.json (out/bench/latest.json is left as it was)");
}

/** BENCH_ONLY=arm64: one amd64 cluster and `runs` arm64 clusters, in that order, and the arm64 image sizes. */
async function arm64Only(runs: number, timeoutS: number, keep: boolean): Promise<void> {
  log(`arm64 beside amd64: one amd64 cluster, then ${runs} arm64 (TCG); accelerator for amd64 ${await chooseAccel()}`);
  const amd = await bootResinCluster({ name: CLUSTER, timeoutS, keepOnFailure: keep });
  await amd.release();
  log(`amd64: launch → quorum ${amd.boot.quorumSeconds.toFixed(1)}s, → autopilot healthy ${amd.boot.healthySeconds.toFixed(1)}s`);
  const a = arm64Results(await arm64Boots(runs, CLUSTER, timeoutS * 3, keep), await arm64ImageSizes());
  process.stdout.write(`${arm64Table(a, { launchToQuorum: amd.boot.quorumSeconds, launchToHealthy: amd.boot.healthySeconds, upToQuorum: amd.boot.upToQuorumSeconds }).join("\n")}\n`);
}

async function main(): Promise<void> {
  const runs = positiveInt("BENCH_RUNS", 3);
  const timeoutS = positiveInt("BENCH_TIMEOUT", 600);
  const keep = process.env.BENCH_KEEP === "1";
  const only = process.env.BENCH_ONLY ?? "";
  if (only === "floor") return floorOnly(runs, timeoutS, keep);
  if (only === "resilience") return resilienceOnly(runs, timeoutS, keep);
  if (only === "verity") return verityOnly(runs, timeoutS, keep);
  const arm64Runs = positiveInt("BENCH_ARM64_RUNS", 1);
  if (only === "arm64") return arm64Only(arm64Runs, timeoutS, keep);
  if (only !== "") throw new Error(`BENCH_ONLY=${only}: the choices are 'floor', 'resilience', 'verity' and 'arm64' (or unset for the whole bench)`);
  const accel = await chooseAccel();
  const started = new Date();
  log(`${runs} runs, accelerator ${accel}; Resin's consul-server image first (fetches what the cache lacks)`);

  // The image both sides are measured against: Resin's consul-server on the debian channel.
  const { repoImage, manifest } = await buildResinImage();
  // A private copy of what the bench reads from it later, so a concurrent rebuild of
  // out/images (someone else's `resin build`) cannot change it under the bench.
  const work = mkdtempSync(join(tmpdir(), "resin-bench-generic-image-"));
  tempDirCleanup(work);
  const imageDir = join(work, "resin-image");
  mkdirSync(imageDir);
  copyFileSync(join(repoImage, "rootfs.squashfs"), join(imageDir, "rootfs.squashfs"));
  if (createHash("sha256").update(readFileSync(join(imageDir, "rootfs.squashfs"))).digest("hex") !== manifest.rootfs.sha256) {
    throw new Error(`out/images/debian/consul-server changed while the bench read it (another build?): run the bench again`);
  }
  const guestPorts = servicePorts(manifest);
  const role = await loadRole(repoRoot, "consul-server", "debian");
  const vm = role.spec.vm;
  const persistGib = vm.persist_disk_gib;

  // Build times: a fresh project copy per run (artifacts cached, no image built yet).
  const builds: BuildRun[] = [];
  for (let i = 0; i < runs; i++) {
    const b = await measureBuilds(keep);
    builds.push(b);
    log(
      `build run ${i + 1}/${runs}: cold ${b.coldSeconds.toFixed(1)}s, no-op ${b.noopSeconds.toFixed(2)}s, ` +
        `after edit ${b.afterEditSeconds.toFixed(1)}s (built: ${b.afterEdit.built.join(", ") || "none"}; up to date: ${b.afterEdit.upToDate.join(", ") || "none"})`,
    );
  }

  // The generic image, once (its cold build time is one sample; see bench/README.md).
  const generic = await buildGenericImage({ work, resinImageDir: imageDir, manifest });
  // The floor, from the same image's packages (seconds; see bench/floor/image.ts).
  const floor = await buildFloorImage({ dir: join(work, "floor"), packages: manifest.packages, kernelSha256: manifest.kernel.sha256, raft: floorRaft(role.options) });
  log(`floor image: initramfs ${(floor.sizes.initramfsBytes / 1e6).toFixed(1)} MB, built in ${floor.buildSeconds.toFixed(1)}s`);

  // Boots: per run a fresh Resin cluster, then the generic cluster on its config drives.
  const resinBoots: ResinBoot[] = [];
  const genericBoots: GenericBoot[] = [];
  const floorBoots: FloorBoot[] = [];
  const bootedDigests = new Set<string>();
  for (let i = 0; i < runs; i++) {
    log(`boot run ${i + 1}/${runs}: Resin (resin up --role consul-server --channel debian)`);
    const r = await bootResinCluster({ name: CLUSTER, timeoutS, keepOnFailure: keep });
    resinBoots.push(r.boot);
    const state = JSON.parse(readFileSync(join(r.stateHome, "clusters", CLUSTER, "cluster.json"), "utf8")) as { accel?: string; nodes: { image: string }[] };
    for (const n of state.nodes) bootedDigests.add(n.image);
    log(`boot run ${i + 1}/${runs}: generic (same plan, secrets, config drives, QEMU flags)`);
    const g = await bootGenericCluster({
      resinStateHome: r.stateHome,
      name: CLUSTER,
      image: generic,
      accel: state.accel === "kvm" ? "kvm" : state.accel === "tcg" ? "tcg" : accel,
      guestPorts,
      persistGib,
      timeoutMs: timeoutS * 1000,
      keepOnFailure: keep,
    });
    genericBoots.push(g);
    await r.release();
    log(`boot run ${i + 1}/${runs}: the floor (same kernel, busybox + Consul initramfs, same QEMU flags, accelerator, memory and CPUs)`);
    const f = await bootFloorCluster({
      image: floor,
      accel: state.accel === "kvm" ? "kvm" : state.accel === "tcg" ? "tcg" : accel,
      memoryMib: vm.memory_mib,
      cpus: vm.cpus,
      timeoutMs: timeoutS * 1000,
      keepOnFailure: keep,
    });
    floorBoots.push(f);
    log(
      `boot run ${i + 1}/${runs}: launch → quorum Resin ${r.boot.quorumSeconds.toFixed(1)}s, generic ${g.quorumSeconds.toFixed(1)}s, floor ${f.quorumSeconds.toFixed(1)}s; ` +
        `→ autopilot healthy Resin ${r.boot.healthySeconds.toFixed(1)}s, generic ${g.healthySeconds.toFixed(1)}s, floor ${f.healthySeconds.toFixed(1)}s`,
    );
  }

  // Faults and upgrade on fresh Resin clusters (the floor and generic sides have no upgrade).
  const resilience = resilienceSamples(await resilienceRuns(runs, timeoutS, keep));

  // The same cluster as arm64 nodes under TCG, and every debian role's arm64 image.
  const arm64 = arm64Results(await arm64Boots(arm64Runs, CLUSTER, timeoutS * 3, keep), await arm64ImageSizes());

  // ---- results
  // Specs edited while the bench ran make `resin up` rebuild: say so, the sizes are step 1's.
  const changedDuringRun = [...bootedDigests].some((d) => d !== manifest.digest);
  if (changedDuringRun) log(`note: the Resin clusters booted ${[...bootedDigests].join(", ")}, not the image measured in step 1 (${manifest.digest}): the specs changed during the run`);
  const resinImage = resinSizes(manifest);
  const genericImage: ImageSizes = {
    kernelBytes: generic.sizes.kernelBytes,
    initrdBytes: generic.sizes.initrdBytes,
    rootfsAsShippedBytes: generic.sizes.diskAllocatedBytes,
    rootfsSquashfsBytes: generic.sizes.rootfsSquashfsBytes,
    rootfsUncompressedBytes: generic.sizes.rootfsUncompressedBytes,
    consulBinaryBytes: generic.sizes.consulBinaryBytes,
    overheadBytes: generic.sizes.rootfsUncompressedBytes - generic.sizes.consulBinaryBytes,
    // The ext4 disk holds /boot, so kernel and initrd are already in it.
    totalAsShippedBytes: generic.sizes.diskAllocatedBytes,
    totalSquashfsBytes: generic.sizes.kernelBytes + generic.sizes.initrdBytes + generic.sizes.rootfsSquashfsBytes,
    packages: generic.packages,
  };
  const secondRole = resinSizes(builds[builds.length - 1]!.secondRoleManifest);
  const boot = {
    resin: {
      launchToQuorumSeconds: sample(resinBoots.map((b) => b.quorumSeconds)),
      launchToHealthySeconds: sample(resinBoots.map((b) => b.healthySeconds)),
      upToQuorumSeconds: sample(resinBoots.map((b) => b.upToQuorumSeconds)),
      /** The guest's uptime at each boot step (services/base/timeline.sh), median over every node. */
      timelineUptimeSeconds: timelineSamples(resinBoots.flatMap((b) => b.timelines)),
      /** Before the timeline, host-measured: VM launch → the kernel's clock starting, median over every node. */
      launchToKernelSeconds: sample(resinBoots.flatMap((b) => b.launchToKernelSeconds)),
    },
    generic: {
      launchToQuorumSeconds: sample(genericBoots.map((b) => b.quorumSeconds)),
      launchToHealthySeconds: sample(genericBoots.map((b) => b.healthySeconds)),
    },
    floor: floorBootSamples(floorBoots),
  };
  const memory = { resin: memorySamples(resinBoots), generic: memorySamples(genericBoots), floor: memorySamples(floorBoots) };
  const build = {
    resin: {
      coldSeconds: sample(builds.map((b) => b.coldSeconds)),
      noopSeconds: sample(builds.map((b) => b.noopSeconds)),
      afterEditSeconds: sample(builds.map((b) => b.afterEditSeconds)),
      secondRoleColdSeconds: sample(builds.map((b) => b.secondRoleColdSeconds)),
      edit: builds[0]!.edit,
      afterEdit: builds.map((b) => b.afterEdit),
      onlyEditedRoleRebuilt: builds.every((b) => b.afterEdit.built.join() === "consul-server" && b.afterEdit.upToDate.includes(SECOND_ROLE)),
    },
    generic: { coldSeconds: sample([generic.buildSeconds]), cachedDebs: generic.cachedDebs },
  };
  const results = {
    ...resultsHeader(undefined, started, accel, runs),
    role: "consul-server",
    channel: "debian",
    resinImage: { digest: manifest.digest, bootedDigests: [...bootedDigests], changedDuringRun, kernelSha256: manifest.kernel.sha256 },
    genericImage: {
      description: "Debian bookworm --variant=minbase (mmdebstrap) + systemd-sysv, udev, iproute2, e2fsprogs, initramfs-tools, the locked kernel and consul .debs",
      kernelAppend: GENERIC_APPEND,
      sameKernel: generic.kernelSha256 === manifest.kernel.sha256,
    },
    floorImage: { description: floorDescription, kernelAppend: floorAppend(floorPlan(), floorPlan().nodes[0]!), sameKernel: floor.kernelSha256 === manifest.kernel.sha256 },
    boot,
    arm64,
    ...resilience,
    targets: TARGETS,
    memory,
    image: { resin: resinImage, generic: genericImage, floor: floorSizes(floor), resinSecondRole: { role: SECOND_ROLE, ...secondRole } },
    build,
    ratios: {
      launchToQuorum: ratio(boot.generic.launchToQuorumSeconds.median, boot.resin.launchToQuorumSeconds.median),
      launchToHealthy: ratio(boot.generic.launchToHealthySeconds.median, boot.resin.launchToHealthySeconds.median),
      qemuRss: ratio(memory.generic.qemuRssMiB.median, memory.resin.qemuRssMiB.median),
      guestRamResident: ratio(memory.generic.guestRamResidentMiB.median, memory.resin.guestRamResidentMiB.median),
      totalAsShipped: ratio(genericImage.totalAsShippedBytes, resinImage.totalAsShippedBytes),
      totalSquashfs: ratio(genericImage.totalSquashfsBytes, resinImage.totalSquashfsBytes),
      rootfsUncompressed: ratio(genericImage.rootfsUncompressedBytes, resinImage.rootfsUncompressedBytes),
      overhead: ratio(genericImage.overheadBytes, resinImage.overheadBytes),
      coldBuild: ratio(build.generic.coldSeconds.median, build.resin.coldSeconds.median),
      /** Resin ÷ the floor (the other ratios are generic ÷ Resin): how far Resin's boot is from the limit. */
      resinOverFloorLaunchToQuorum: ratio(boot.resin.launchToQuorumSeconds.median, boot.floor.launchToQuorumSeconds.median),
    },
  };

  const latest = join(repoRoot, "out", "bench", "latest.json");
  let previous: Partial<typeof results> | undefined;
  try {
    previous = existsSync(latest) ? (JSON.parse(readFileSync(latest, "utf8")) as Partial<typeof results>) : undefined;
  } catch {
    log("note: the previous out/bench/latest.json is not valid JSON; not comparing against it");
  }
  process.stdout.write(table(results, previous?.schema === SCHEMA ? (previous as typeof results) : undefined));
  mkdirSync(join(repoRoot, "out", "bench"), { recursive: true });
  const text = JSON.stringify(results, null, 2) + "\n";
  const dated = join(repoRoot, "out", "bench", `${results.date.replace(/[:]/g, "-").replace(/\.\d+Z$/, "Z")}.json`);
  writeFileSync(dated, text);
  writeFileSync(latest, text);
  log(`results in out/bench/latest.json and ${dated.slice(repoRoot.length + 1)}`);
}

// ---- the table

type Results = {
  date: string;
  runs: number;
  machine: ReturnType<typeof machine>;
  boot: {
    resin: Record<"launchToQuorumSeconds" | "launchToHealthySeconds" | "upToQuorumSeconds", Sample> & { timelineUptimeSeconds: Record<string, Sample>; launchToKernelSeconds?: Sample };
    generic: Record<string, Sample>;
    floor: { launchToQuorumSeconds: Sample; launchToHealthySeconds: Sample; initUptimeSeconds: Record<string, Sample> };
  };
  memory: Record<"resin" | "generic" | "floor", Record<"qemuRssMiB" | "guestRamResidentMiB", Sample>>;
  image: { resin: ImageSizes; generic: ImageSizes; floor: ReturnType<typeof floorSizes>; resinSecondRole: ImageSizes & { role: string } };
  build: {
    resin: Record<"coldSeconds" | "noopSeconds" | "afterEditSeconds" | "secondRoleColdSeconds", Sample> & {
      edit: string;
      afterEdit: { built: string[]; upToDate: string[] }[];
      onlyEditedRoleRebuilt: boolean;
    };
    generic: { coldSeconds: Sample; cachedDebs: { before: number; after: number } };
  };
  faults: ReturnType<typeof resilienceSamples>["faults"];
  upgrade: ReturnType<typeof resilienceSamples>["upgrade"];
  genericImage: { sameKernel: boolean };
  floorImage: { sameKernel: boolean };
  arm64?: Arm64Results;
  resinImage: { digest: string; bootedDigests: string[]; changedDuringRun: boolean };
};

function table(r: Results, previous?: Results): string {
  const s = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));
  const mb = (bytes: number | undefined) => s(bytes === undefined ? undefined : bytes / 1e6, 1);
  const times = (g: number | undefined, res: number | undefined) => {
    const q = ratio(g, res);
    return q === undefined ? "" : `${q.toFixed(2)}×`;
  };
  const rows: string[][] = [];
  const head = (title: string) => rows.push([title]);
  // The floor's columns only where the floor has the thing (it has no root fs, no build of its own).
  const row = (label: string, resinValue: number | undefined, genericValue: number | undefined, fmt: (x: number | undefined) => string, floorValue?: number) =>
    rows.push([
      `  ${label}`,
      fmt(resinValue),
      fmt(genericValue),
      times(genericValue, resinValue),
      floorValue === undefined ? "" : fmt(floorValue),
      floorValue === undefined ? "" : times(resinValue, floorValue),
    ]);
  const sec = (x: number | undefined) => s(x, 1);
  const sec2 = (x: number | undefined) => s(x, 2);

  head(`Boot: 3 × consul-server, seconds from VM launch (median of ${r.runs})`);
  row("→ 3-peer quorum", r.boot.resin.launchToQuorumSeconds!.median, r.boot.generic.launchToQuorumSeconds!.median, sec, r.boot.floor.launchToQuorumSeconds.median);
  row("→ autopilot healthy", r.boot.resin.launchToHealthySeconds!.median, r.boot.generic.launchToHealthySeconds!.median, sec, r.boot.floor.launchToHealthySeconds.median);
  row("resin up (whole command) → quorum", r.boot.resin.upToQuorumSeconds!.median, undefined, sec);
  head(`Memory per node once ready, MiB (median of ${r.runs * 3} nodes; host view, see bench/README.md)`);
  row("QEMU RSS on the host (VmRSS)", r.memory.resin.qemuRssMiB.median, r.memory.generic.qemuRssMiB.median, (x) => s(x, 0), r.memory.floor.qemuRssMiB.median);
  row("guest RAM resident on the host", r.memory.resin.guestRamResidentMiB.median, r.memory.generic.guestRamResidentMiB.median, (x) => s(x, 0), r.memory.floor.guestRamResidentMiB.median);
  const [ri, gi, fi] = [r.image.resin, r.image.generic, r.image.floor];
  head("Image size, consul-server role, MB (10^6 bytes; the floor: kernel + uncompressed initramfs, no root fs)");
  row("kernel", ri.kernelBytes, gi.kernelBytes, mb, fi.kernelBytes);
  row("initrd", ri.initrdBytes, gi.initrdBytes, mb, fi.initramfsBytes);
  row("root fs as shipped (squashfs | ext4 used)", ri.rootfsAsShippedBytes, gi.rootfsAsShippedBytes, mb);
  row("total as shipped (kernel+initrd+root)", ri.totalAsShippedBytes, gi.totalAsShippedBytes, mb, fi.totalAsShippedBytes);
  row("total, root as squashfs zstd (same packing)", ri.totalSquashfsBytes, gi.totalSquashfsBytes, mb);
  row("root fs uncompressed", ri.rootfsUncompressedBytes, gi.rootfsUncompressedBytes, mb);
  row("  of which the consul binary", ri.consulBinaryBytes, gi.consulBinaryBytes, mb, fi.consulBinaryBytes);
  row("  overhead beyond the consul binary", ri.overheadBytes, gi.overheadBytes, mb, fi.overheadBytes);
  row("Debian packages used", ri.packages, gi.packages, (x) => s(x, 0));
  row(`${r.image.resinSecondRole.role} total (bench-only role)`, r.image.resinSecondRole.totalAsShippedBytes, undefined, mb);
  head(`Build time, seconds (Resin: median of ${r.runs}; generic: 1 run)`);
  row("cold, artifacts cached (one role)", r.build.resin.coldSeconds.median, r.build.generic.coldSeconds.median, sec);
  row("warm no-op (all debian roles)", r.build.resin.noopSeconds.median, undefined, sec2);
  row("after a one-line edit of consul-server.yml", r.build.resin.afterEditSeconds.median, undefined, sec);
  row(`cold ${r.image.resinSecondRole.role} (second role)`, r.build.resin.secondRoleColdSeconds.median, undefined, sec);

  const header = ["", "Resin", "generic", "generic/Resin", "floor", "Resin/floor"];
  const widths = header.map((h, c) => Math.max(...rows.filter((x) => x.length > 1).map((x) => (x[c] ?? "").length), h.length));
  const line = (cells: string[]) =>
    cells.length === 1 ? cells[0]! : [cells[0]!.padEnd(widths[0]!), ...cells.slice(1).map((c, i) => c.padStart(widths[i + 1]!))].join("   ").trimEnd();
  const m = r.machine;
  const out = [
    `Resin vs generic distro (Debian bookworm minbase + systemd) and the floor (same kernel, busybox + Consul initramfs), ${r.date}`,
    `machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, node ${m.node}, accelerator ${m.accelerator}, ${m.qemu}`,
    "",
    line(header),
    ...rows.map(line),
    "",
    `after the edit (${r.build.resin.edit}): ` +
      r.build.resin.afterEdit.map((a, i) => `run ${i + 1} built ${a.built.join(", ") || "nothing"}, up to date ${a.upToDate.join(", ") || "nothing"}`).join("; ") +
      (r.build.resin.onlyEditedRoleRebuilt ? " — only the edited role rebuilt" : " — NOT only the edited role"),
    `same kernel bytes as Resin: generic ${r.genericImage.sameKernel ? "yes" : "no"}, floor ${r.floorImage.sameKernel ? "yes" : "no"}; generic .debs cached before its build: ${r.build.generic.cachedDebs.before}`,
    `Resin/floor, launch → quorum: ${s(ratio(r.boot.resin.launchToQuorumSeconds.median, r.boot.floor.launchToQuorumSeconds.median), 2)}× (target ≤ ${TARGETS.resinOverFloorLaunchToQuorum}×)`,
    `Resin boot timeline, guest uptime in seconds (median of ${r.runs * 3} nodes): ` +
      (Object.entries(r.boot.resin.timelineUptimeSeconds)
        .map(([step, x]) => `${step} ${sec(x.median)}`)
        .join(", ") || "none reported"),
    `before it, VM launch → kernel clock (host-measured; firmware, loading and unpacking the kernel, the same kernel and QEMU arguments as the floor): ${sec(r.boot.resin.launchToKernelSeconds?.median)} s`,
    "",
    ...(r.arm64
      ? [
          ...arm64Table(r.arm64, {
            launchToQuorum: r.boot.resin.launchToQuorumSeconds.median,
            launchToHealthy: r.boot.resin.launchToHealthySeconds.median,
            upToQuorum: r.boot.resin.upToQuorumSeconds.median,
            totalBytes: r.image.resin.totalAsShippedBytes,
          }),
          "",
        ]
      : []),
    ...resilienceTable({ faults: r.faults, upgrade: r.upgrade }, r.runs),
    "",
    `floor /init, guest uptime in seconds (median of ${r.runs * 3} nodes): ` +
      (Object.entries(r.boot.floor.initUptimeSeconds)
        .map(([step, x]) => `${step} ${sec2(x.median)}`)
        .join(", ") || "none printed"),
  ];
  if (r.resinImage.changedDuringRun) {
    out.push(`note: Resin's specs changed during the run: sizes are of ${r.resinImage.digest.slice(0, 19)}, clusters booted ${r.resinImage.bootedDigests.map((d) => d.slice(0, 19)).join(", ")}`);
  }
  if (previous) {
    const d = (before: number | undefined) => (before === undefined ? "" : ` (was ${before.toFixed(1)})`);
    out.push(
      `vs previous run ${previous.date}: quorum Resin ${sec(r.boot.resin.launchToQuorumSeconds!.median)}s${d(previous.boot.resin.launchToQuorumSeconds?.median)}, ` +
        `generic ${sec(r.boot.generic.launchToQuorumSeconds!.median)}s${d(previous.boot.generic.launchToQuorumSeconds?.median)}, ` +
        `floor ${sec(r.boot.floor.launchToQuorumSeconds.median)}s${d(previous.boot.floor?.launchToQuorumSeconds?.median)}; ` +
        `Resin total image ${mb(ri.totalAsShippedBytes)} MB${d(previous.image.resin.totalAsShippedBytes / 1e6)}; ` +
        `Resin cold build ${sec(r.build.resin.coldSeconds.median)}s${d(previous.build.resin.coldSeconds.median)}`,
    );
  }
  return out.join("\n") + "\n";
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping every VM and removing temporary files`);
    stopChildren();
    void waitForChildren(10_000)
      .then(runCleanups)
      .finally(() => process.exit(130));
  });
}

main()
  .then(runCleanups)
  .catch(async (e: unknown) => {
    log(`FAILED: ${(e as Error).message}`);
    await runCleanups();
    process.exit(1);
  });
