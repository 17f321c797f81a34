// Node and cluster lifecycle: stop, start and restart one node; list clusters;
// destroy a cluster (the only command that deletes persist disks and secrets).
import { existsSync } from "node:fs";
import { lstat, open, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline/promises";
import { statusToken } from "../bootstrap/node-secrets.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { clustersDir, listClusters, requireNode, type ClusterHandle, type ClusterState, type NodeState } from "../state/state.js";
import { guestLog, guestSv } from "../cluster/guest.js";
import { unsealAgain } from "../cluster/bootstrap.js";
import { localMachines } from "../provider/local.js";
import { printable } from "../util/text.js";
import { ResinError } from "../util/errors.js";
import { formatTable } from "../util/table.js";
import { sleep } from "../util/time.js";
import type { Log } from "../util/log.js";

export async function stopNodeCommand(cluster: ClusterHandle, nodeName: string, log: Log): Promise<void> {
  const state = await cluster.require();
  const node = requireNode(state, nodeName);
  await localMachines().stop(cluster, node);
  log(`node ${nodeName}: stopped (its disk is kept; \`resin start ${nodeName}\` boots it again)`);
}

export async function startNodeCommand(cluster: ClusterHandle, nodeName: string, log: Log): Promise<void> {
  const state = await cluster.require();
  const node = requireNode(state, nodeName);
  const machines = localMachines();
  if ((await machines.status(cluster, node)).state === "running") throw new ResinError(`node ${nodeName} is already running`);
  await machines.start(cluster, state, node, log);
  await cluster.write(state);
  await unsealAgain(cluster, state, log);
}

/** Restart a node's VM, or (with `service`) one supervised service inside it. */
export async function restartCommand(cluster: ClusterHandle, nodeName: string, service: string | undefined, log: Log): Promise<void> {
  const state = await cluster.require();
  const node = requireNode(state, nodeName);
  const machines = localMachines();
  if (service) {
    const port = node.ports["base.status"];
    if ((await machines.status(cluster, node)).state !== "running" || !port) throw new ResinError(`node ${nodeName} is not running`);
    await guestSv(port, await nodeToken(cluster, node), service, "restart");
    log(`node ${nodeName}: asked runit to restart ${service}`);
    if (service === "vault") await unsealAgain(cluster, state, log);
    return;
  }
  await machines.stop(cluster, node);
  await machines.start(cluster, state, node, log);
  await cluster.write(state);
  await unsealAgain(cluster, state, log);
}

/** What the node's status endpoint wants before it controls a service or shows a log. */
async function nodeToken(cluster: ClusterHandle, node: NodeState): Promise<string> {
  return statusToken(await readSecrets(cluster.secrets), node.name);
}

export async function listCommand(): Promise<string> {
  const rows = [["CLUSTER", "CHANNEL", "NODES", "RUNNING", "CRASHED", "STATE DIRECTORY"]];
  const machines = localMachines();
  for (const cluster of await listClusters()) {
    const state = await cluster.require();
    const states = await Promise.all(state.nodes.map((n) => machines.status(cluster, n)));
    rows.push([
      cluster.name,
      state.channel,
      String(state.nodes.length),
      String(states.filter((s) => s.state === "running").length),
      String(states.filter((s) => s.state === "crashed").length),
      cluster.dir,
    ]);
  }
  if (rows.length === 1) return "no clusters (start one with `resin up`)";
  return formatTable(rows);
}

export async function destroyCommand(cluster: ClusterHandle, yes: boolean, log: Log): Promise<void> {
  const { dir, stateFile, secrets } = cluster;
  // Only ever a direct child of the clusters directory, a real directory, and one that
  // looks like a cluster: its state file or secrets are there.
  const info = await lstat(dir).catch(() => undefined);
  if (!info) throw new ResinError(`no cluster named '${cluster.name}'`, `nothing to destroy in ${clustersDir()}`);
  if (dirname(resolve(dir)) !== resolve(clustersDir()) || !info.isDirectory() || !(existsSync(stateFile) || existsSync(secrets))) {
    throw new ResinError(`${dir} does not look like a cluster (no cluster.json or secrets.json); not deleted`, "remove it by hand if you are sure");
  }
  let state: ClusterState | undefined;
  try {
    state = await cluster.require();
  } catch {
    // A damaged state file must not make a cluster impossible to remove.
  }
  if (!yes) {
    if (!process.stdin.isTTY) {
      throw new ResinError(`refusing to destroy cluster '${cluster.name}' without confirmation`, "run it in a terminal to be asked, or pass --yes");
    }
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    const answer = await rl.question(`Destroy cluster '${cluster.name}' and delete its persist disks, secrets and logs in ${dir}? [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) throw new ResinError("not destroyed");
  }
  if (state) await localMachines().stopCluster(cluster, state, { graceMs: 0 });
  else await localMachines().stopLeftovers(cluster);
  await rm(dir, { recursive: true, force: true });
  log(`cluster ${cluster.name}: destroyed (disks, secrets and logs deleted)`);
}

export async function logsCommand(cluster: ClusterHandle, nodeName: string, opts: { service?: string; follow?: boolean; lines: number }): Promise<void> {
  const state = await cluster.require();
  const node = requireNode(state, nodeName);
  const machines = localMachines();
  if (opts.service) {
    const port = node.ports["base.status"];
    if ((await machines.status(cluster, node)).state !== "running" || !port) {
      throw new ResinError(`node ${nodeName} is not running`, "service logs live on its persist disk; the console log is still readable: resin logs " + nodeName);
    }
    process.stdout.write(await guestLog(port, await nodeToken(cluster, node), opts.service, opts.lines));
    return;
  }
  const tail = await machines.consoleTail(cluster, node.name, opts.lines);
  if (tail) process.stdout.write(`${tail}\n`);
  if (opts.follow) await followFile(machines.logFiles(cluster, node.name).console);
}

/** Print what is appended to a file until interrupted. */
async function followFile(path: string): Promise<never> {
  const handle = await open(path, "r");
  let position = (await handle.stat()).size;
  for (;;) {
    const { size } = await handle.stat();
    if (size > position) {
      const buffer = Buffer.alloc(size - position);
      await handle.read(buffer, 0, buffer.length, position);
      process.stdout.write(printable(buffer.toString("utf8")));
      position = size;
    }
    await sleep(500);
  }
}
