// `resin upgrade` and `resin rollback`: wiring for the rolling replacement in
// cli/cluster/upgrade.ts. New images come from a fresh build of the cluster's roles
// or from an image set someone else built (--image-set DIR with DIR/<role>/).
import { loadClusterRoles, writeConfigDrives } from "../bootstrap/config-drive.js";
import { consulKeys, consulServerCount } from "../cluster/consul.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { newImages } from "../cluster/images.js";
import type { ClusterHandle, ClusterState } from "../state/state.js";
import { activeVaultNode, clusterHealth, endUpgrade, GateError, planUpgrade, resumeInterrupted, rollbackNode, runUpgrade, type UpgradeOptions } from "../cluster/upgrade.js";
import { localMachines } from "../provider/local.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";

export interface UpgradeCommandOptions {
  project: string;
  cluster: ClusterHandle;
  imageSet?: string;
  dryRun?: boolean;
  resume?: boolean;
  gateTimeoutMs: number;
  offline?: boolean;
  log: Log;
}

async function upgradeOptions(opts: { project: string; cluster: ClusterHandle; gateTimeoutMs: number; log: Log }, state: ClusterState): Promise<UpgradeOptions> {
  const { cluster } = opts;
  const roles = await loadClusterRoles(opts.project, state);
  const secrets = await readSecrets(cluster.secrets);
  return {
    cluster,
    access: consulKeys(secrets, state.datacenter),
    secrets,
    writeConfig: (node) => writeConfigDrives(opts.project, cluster, state, [node]),
    gateTimeoutMs: opts.gateTimeoutMs,
    consulServers: consulServerCount(state.nodes, roles),
    log: opts.log,
  };
}

function gateFailure(e: GateError, state: ClusterState): ResinError {
  const replaced = state.nodes.filter((n) => state.upgrade?.previous[n.name] && state.upgrade.previous[n.name] !== n.image).map((n) => n.name);
  return new ResinError(
    `${e.message}\nthe cluster is left as it is: ${replaced.length ? `${replaced.join(", ")} on the new image, ` : ""}the other nodes on their old one`,
    [
      `when the cause is fixed, continue:   resin upgrade --resume --name ${state.name}`,
      ...replaced.map((n) => `or put ${n} back on its previous image:   resin rollback ${n} --name ${state.name}`),
    ].join("\n"),
  );
}

export async function upgradeCommand(opts: UpgradeCommandOptions): Promise<void> {
  const { cluster } = opts;
  const state = await cluster.require();
  if (opts.resume && !state.upgrade) throw new ResinError(`cluster '${cluster.name}' has no unfinished upgrade to resume`);
  if (!opts.resume && !(await localMachines().anythingRunning(cluster, state))) throw new ResinError(`cluster '${cluster.name}' is not running`, `start it first: resin up --name ${cluster.name}`);
  if (opts.resume && !opts.dryRun) {
    // Finish what an interruption cut short and start the nodes that are not running.
    await resumeInterrupted(state, await upgradeOptions(opts, state));
  }

  const target = opts.resume ? state.upgrade!.target : await newImages(cluster, state, opts);
  const secrets = await readSecrets(cluster.secrets);
  const steps = planUpgrade(state, target, (await clusterHealth(cluster, state, consulKeys(secrets, state.datacenter))).leader, await activeVaultNode(cluster, state, secrets));
  opts.log(`upgrade plan for ${cluster.name} (followers first, Consul leader and active Vault last):`);
  for (const s of steps) opts.log(`  ${s.node}: ${s.from.slice(0, 19)} → ${s.to.slice(0, 19)}`);
  if (steps.length === 0) {
    opts.log("  nothing to do: every node runs its role's image");
    if (state.upgrade) await endUpgrade(state, await upgradeOptions(opts, state));
    return;
  }
  if (opts.dryRun) return;

  // The images nodes run now stay in the cluster until the upgrade completes (rollback).
  const previous = Object.fromEntries(state.nodes.map((n) => [n.name, state.upgrade?.previous[n.name] ?? n.image]));
  state.upgrade = { target, previous, replacing: state.upgrade?.replacing, restoreDeadServerCleanup: state.upgrade?.restoreDeadServerCleanup };
  await cluster.write(state);
  const started = Date.now();
  try {
    await runUpgrade(state, await upgradeOptions(opts, state));
  } catch (e) {
    if (e instanceof GateError) throw gateFailure(e, state);
    throw e;
  }
  opts.log(`upgrade of ${cluster.name} complete: ${steps.length} node(s) replaced in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

export async function rollbackCommand(opts: { project: string; cluster: ClusterHandle; node: string; gateTimeoutMs: number; log: Log }): Promise<void> {
  const { cluster } = opts;
  const state = await cluster.require();
  try {
    await rollbackNode(state, opts.node, await upgradeOptions(opts, state));
  } catch (e) {
    if (e instanceof GateError) throw new ResinError(e.message, `see its console: resin logs ${opts.node} --name ${cluster.name}`);
    throw e;
  }
}
