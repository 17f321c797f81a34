// `npm run bench`: time from `resin up` to Consul quorum (warm cache) and image
// sizes, as medians over several runs. Prints a table and writes out/bench/latest.json.
// It reports numbers; it never fails on them. A step that fails exits non-zero.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..", "..");
const cli = join(root, "dist", "cli", "main.js");
const runs = Number(process.env.BENCH_RUNS ?? 3);

function resin(args: string[], env: Record<string, string> = {}) {
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, env: { ...process.env, ...env }, encoding: "utf8" });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    throw new Error(`resin ${args.join(" ")} failed (exit ${r.status})`);
  }
  return { seconds, stderr: r.stderr };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function main(): void {
  process.stderr.write(`bench: ${runs} runs; building images (warm cache expected)\n`);
  const build = resin(["build", "consul-server", "--channel", "debian"]);
  const noop = resin(["build", "consul-server", "--channel", "debian"]);
  const manifest = JSON.parse(readFileSync(join(root, "out", "images", "debian", "consul-server", "manifest.json"), "utf8"));

  const upSeconds: number[] = [];
  const quorumSeconds: number[] = [];
  const readySeconds: number[] = [];
  for (let i = 0; i < runs; i++) {
    const state = mkdtempSync(join(tmpdir(), "resin-bench-"));
    const env = { RESIN_STATE_HOME: state };
    try {
      const up = resin(["up", "--name", "bench", "--nodes", "3", "--role", "consul-server", "--channel", "debian"], env);
      // up prints seconds from VM launch to quorum and to autopilot-healthy; what came
      // before launch (image check, config drives, disks) is the rest of its wall time.
      const m = up.stderr.match(/quorum in ([\d.]+)s, ready \(autopilot healthy\) in ([\d.]+)s/);
      if (!m) throw new Error(`resin up did not report its timings:\n${up.stderr}`);
      const [quorum, ready] = [Number(m[1]), Number(m[2])];
      const toQuorum = up.seconds - ready + quorum;
      upSeconds.push(toQuorum);
      quorumSeconds.push(quorum);
      readySeconds.push(up.seconds);
      process.stderr.write(`bench: run ${i + 1}: resin up → quorum ${toQuorum.toFixed(1)}s, → autopilot healthy ${up.seconds.toFixed(1)}s\n`);
    } finally {
      spawnSync(process.execPath, [cli, "destroy", "bench", "--yes"], { env: { ...process.env, ...env } });
      rmSync(state, { recursive: true, force: true });
    }
  }

  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    runs,
    upToQuorumSeconds: { median: median(upSeconds), all: upSeconds },
    launchToQuorumSeconds: { median: median(quorumSeconds), all: quorumSeconds },
    upToAutopilotHealthySeconds: { median: median(readySeconds), all: readySeconds },
    image: {
      role: "consul-server",
      initrdBytes: manifest.initrd.size,
      rootfsSquashfsBytes: manifest.rootfs.size,
      kernelBytes: manifest.kernel.size,
      rootfsBytes: manifest.files.reduce((n: number, f: { size?: number }) => n + (f.size ?? 0), 0),
      consulBinaryBytes: manifest.files.find((f: { path: string }) => f.path === "usr/bin/consul")?.size,
    },
    buildSeconds: { first: build.seconds, noop: noop.seconds },
  };

  const rows: [string, string][] = [
    ["resin up → 3-peer quorum (median, s)", results.upToQuorumSeconds.median.toFixed(1)],
    ["VM launch → quorum (median, s)", results.launchToQuorumSeconds.median.toFixed(1)],
    ["resin up → autopilot healthy (median, s)", results.upToAutopilotHealthySeconds.median.toFixed(1)],
    ["initramfs, gzip (MB)", (results.image.initrdBytes / 1e6).toFixed(1)],
    ["root filesystem, squashfs zstd (MB)", (results.image.rootfsSquashfsBytes / 1e6).toFixed(1)],
    ["root filesystem, uncompressed (MB)", (results.image.rootfsBytes / 1e6).toFixed(1)],
    ["  of which the consul binary (MB)", ((results.image.consulBinaryBytes ?? 0) / 1e6).toFixed(1)],
    ["kernel (MB)", (results.image.kernelBytes / 1e6).toFixed(1)],
    ["resin build, no-op (s)", results.buildSeconds.noop.toFixed(2)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n") + "\n");
  mkdirSync(join(root, "out", "bench"), { recursive: true });
  writeFileSync(join(root, "out", "bench", "latest.json"), JSON.stringify(results, null, 2) + "\n");
  process.stderr.write(`bench: results in out/bench/latest.json\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
}
