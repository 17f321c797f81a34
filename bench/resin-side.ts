// Resin's side of the bench, through the CLI exactly as a user runs it: `resin up` of a
// fresh three-node consul-server cluster, and `resin build` into fresh project copies.
import { existsSync, mkdtempSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ImageManifest } from "../cli/image/manifest.js";
import type { Arch } from "../cli/spec/arch.js";
import { consoleTail } from "../cli/provider/qemu/vm.js";
import { readPid } from "../cli/provider/qemu/process.js";
import { killLeftovers, log, onCleanup, resin, rmDirNow, vmMemory, type VmMemory } from "./util.js";
import { overrideStock, userProject } from "./project.js";

export interface ResinBoot {
  /** Wall time of `resin up` up to quorum (image check, config drives, disks, launch, quorum). */
  upToQuorumSeconds: number;
  /** As `resin up` reports them: from the moment every VM was launched. */
  quorumSeconds: number;
  healthySeconds: number;
  memory: VmMemory[];
  /** Per node, the guest's uptime at each boot step (`resin status --json`'s timeline). */
  timelines: { step: string; uptimeSeconds: number }[][];
  /** Per node, seconds from its VM's launch to its kernel's clock starting (`resin status --json`). */
  launchToKernelSeconds: number[];
}

/**
 * A fresh Resin cluster in its own RESIN_STATE_HOME. It is left stopped (`resin down`),
 * not destroyed: the generic cluster reuses its config drives and secrets. The returned
 * release() destroys it and removes the directory (also run by the bench's cleanup).
 */
/**
 * A Resin cluster's own RESIN_STATE_HOME, and its cleanup (registered at once, so it runs
 * on failure and on SIGINT too): destroy, kill what is left by pid, remove the directory,
 * unless `failed()` was called and BENCH_KEEP keeps it.
 */
export function scratchCluster(name: string, prefix: string, keepOnFailure: boolean): { stateHome: string; env: Record<string, string>; release: () => Promise<void>; failed: () => void } {
  const stateHome = mkdtempSync(join(tmpdir(), prefix));
  const env = { RESIN_STATE_HOME: stateHome };
  let failed = false;
  const release = onCleanup(`resin cluster in ${stateHome}`, async () => {
    await resin(["destroy", name, "--yes"], env, { allowFail: true });
    const left = killLeftovers(stateHome);
    if (left.length) log(`killed leftover processes ${left.join(", ")} under ${stateHome}`);
    if (!keepOnFailure || !failed) rmDirNow(stateHome);
  });
  return { stateHome, env, release, failed: () => (failed = true) };
}

/** `arch`: the nodes' architecture (`resin up --arch`); amd64 when absent. */
export async function bootResinCluster(opts: {
  name: string;
  timeoutS: number;
  keepOnFailure: boolean;
  /** A project (RESIN_PROJECT) whose specs `resin up` builds and boots instead of the repository's. */
  project?: string;
  arch?: Arch;
}): Promise<{ boot: ResinBoot; stateHome: string; release: () => Promise<void> }> {
  const scratch = scratchCluster(opts.name, "resin-bench-state-", opts.keepOnFailure);
  const { stateHome, release, failed } = scratch;
  const env: Record<string, string> = { ...scratch.env, ...(opts.project ? { RESIN_PROJECT: opts.project } : {}) };
  const nodesDir = join(stateHome, "clusters", opts.name, "nodes");
  try {
    const arch = opts.arch ? ["--arch", opts.arch] : [];
    const up = await resin(["up", "--name", opts.name, "--nodes", "3", "--role", "consul-server", "--channel", "debian", ...arch, "--timeout", String(opts.timeoutS)], env, { echo: true });
    const m = up.stderr.match(/quorum in ([\d.]+)s, ready \(autopilot healthy\) in ([\d.]+)s/);
    if (!m) throw new Error(`resin up did not report its timings:\n${up.stderr}`);
    const [quorumSeconds, healthySeconds] = [Number(m[1]), Number(m[2])];
    const cluster = JSON.parse(await readFile(join(stateHome, "clusters", opts.name, "cluster.json"), "utf8")) as { nodes: { name: string; memoryMib: number }[] };
    const memory: VmMemory[] = [];
    for (const node of cluster.nodes) {
      const pid = await readPid(join(nodesDir, node.name, "qemu.pid"));
      if (!pid) throw new Error(`no QEMU pid for Resin node ${node.name}`);
      memory.push(vmMemory(pid, node.memoryMib));
    }
    const status = JSON.parse((await resin(["status", "--name", opts.name, "--json"], env, { allowFail: true })).stdout) as {
      nodes: { timeline: { step: string; uptimeSeconds: number }[] | null; launchToKernelSeconds: number | null }[];
    };
    const timelines = status.nodes.map((n) => n.timeline ?? []);
    const launchToKernelSeconds = status.nodes.flatMap((n) => (n.launchToKernelSeconds === null ? [] : [n.launchToKernelSeconds]));
    await resin(["down", "--name", opts.name], env);
    // `resin up` returns once autopilot is healthy and the ACL tokens exist; quorum came
    // (healthy − quorum) seconds before that.
    return { boot: { upToQuorumSeconds: up.seconds - healthySeconds + quorumSeconds, quorumSeconds, healthySeconds, memory, timelines, launchToKernelSeconds }, stateHome, release };
  } catch (e) {
    failed();
    for (const n of ["1", "2", "3"]) {
      const dir = join(nodesDir, `${opts.name}-${n}`);
      if (!existsSync(dir)) continue;
      const tail = await consoleTail(dir, 25);
      if (tail.trim()) process.stderr.write(`--- console of Resin node ${opts.name}-${n} (last lines):\n${tail}\n`);
    }
    if (opts.keepOnFailure) log(`BENCH_KEEP: the Resin cluster's files stay in ${stateHome}`);
    throw e;
  }
}

// ---- builds

/** A second role the debian channel can build, added to the bench's project copies only. */
export const SECOND_ROLE = "bench-consul-client";
const SECOND_ROLE_YAML = `# Added by npm run bench to its temporary project copy (not part of machines/):
# a second role the debian channel can build, to show that editing one role's YAML
# rebuilds only that role.
role: ${SECOND_ROLE}
description: Consul client agent (bench-only role)
services:
  - base
  - consul
config:
  consul:
    server: false
vm:
  memory_mib: 512
  cpus: 1
  persist_disk_gib: 1
`;

export interface BuildRun {
  /** `resin build consul-server`: artifacts cached, no image built yet in this project. */
  coldSeconds: number;
  /** `resin build --channel debian` right after: builds the second role, consul-server is up to date. */
  secondRoleColdSeconds: number;
  /** Every debian role up to date. */
  noopSeconds: number;
  /** After one line changed in machines/consul-server.yml. */
  afterEditSeconds: number;
  edit: string;
  afterEdit: { built: string[]; upToDate: string[] };
  /** The second role's image (consul-server's is the one in the repository's out/images). */
  secondRoleManifest: ImageManifest;
}

function outcome(stderr: string): { built: string[]; upToDate: string[] } {
  const built = [...stderr.matchAll(/^built: (\S+) \(/gm)].map((m) => m[1]!);
  const upToDate = [...stderr.matchAll(/^up to date: (\S+) \(/gm)].map((m) => m[1]!);
  return { built, upToDate };
}

/** One line changed in consul-server.yml: set Consul's log level (changes the image's 00-role.hcl). */
function editRoleYaml(text: string): { text: string; edit: string } {
  const lines = text.split("\n");
  const existing = lines.findIndex((l) => /^\s+log_level:/.test(l));
  if (existing >= 0) {
    const indent = lines[existing]!.match(/^\s+/)![0];
    const value = /WARN/.test(lines[existing]!) ? "ERR" : "WARN";
    lines[existing] = `${indent}log_level: ${value}`;
    return { text: lines.join("\n"), edit: `changed config.consul.log_level to ${value}` };
  }
  const server = lines.findIndex((l) => /^\s+server:\s*true\s*$/.test(l));
  if (server >= 0) {
    const indent = lines[server]!.match(/^\s+/)![0];
    lines.splice(server + 1, 0, `${indent}log_level: WARN`);
    return { text: lines.join("\n"), edit: "added config.consul.log_level: WARN" };
  }
  const description = lines.findIndex((l) => l.startsWith("description:"));
  if (description < 0) throw new Error("machines/consul-server.yml has neither a consul server option nor a description to edit");
  lines[description] = `${lines[description]} (bench edit)`;
  return { text: lines.join("\n"), edit: "changed the description" };
}

export async function measureBuilds(keepOnFailure: boolean): Promise<BuildRun> {
  const project = userProject("resin-bench-project-");
  let failed = false;
  const release = onCleanup(`project copy ${project}`, () => {
    if (!keepOnFailure || !failed) rmDirNow(project);
  });
  try {
    // A user's project: the stock specs beneath it, its own copy of consul-server (to edit
    // below; a copy of a stock role says `override: true`) and a second role.
    overrideStock(project, "machines/consul-server.yml");
    await writeFile(join(project, "machines", `${SECOND_ROLE}.yml`), SECOND_ROLE_YAML);
    const env = { RESIN_PROJECT: project };
    const build = (args: string[]) => resin(["build", ...args, "--channel", "debian", "--offline"], env);

    const cold = await build(["consul-server"]);
    if (!outcome(cold.stderr).built.includes("consul-server")) throw new Error(`cold build did not build consul-server:\n${cold.stderr}`);
    const second = await build([]);
    const noop = await build([]);
    const noopOutcome = outcome(noop.stderr);
    if (noopOutcome.built.length) log(`note: the no-op build rebuilt ${noopOutcome.built.join(", ")}`);

    const roleFile = join(project, "machines", "consul-server.yml");
    const { text, edit } = editRoleYaml(await readFile(roleFile, "utf8"));
    await writeFile(roleFile, text);
    const edited = await build([]);

    const secondRoleManifest = JSON.parse(await readFile(join(project, "out", "images", "debian", SECOND_ROLE, "manifest.json"), "utf8")) as ImageManifest;
    await release();
    return {
      coldSeconds: cold.seconds,
      secondRoleColdSeconds: second.seconds,
      noopSeconds: noop.seconds,
      afterEditSeconds: edited.seconds,
      edit,
      afterEdit: outcome(edited.stderr),
      secondRoleManifest,
    };
  } catch (e) {
    failed = true;
    if (keepOnFailure) log(`BENCH_KEEP: the project copy stays in ${project}`);
    throw e;
  }
}
