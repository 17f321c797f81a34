// Health-gated rolling upgrade: replace one node at a time with its role's new image,
// followers first and the leader last, and go on only while the cluster can lose a
// node without losing quorum. A failed gate stops with the cluster as it is.
import type { Log } from "../util/log.js";
import { ResinError } from "../util/errors.js";
import { sleep } from "../util/time.js";
import type { Machines } from "../provider/machine.js";
import { localMachines } from "../provider/local.js";
import { agentLeave, autopilotConfig, autopilotHealth, consulEndpoint, consulView, isConsulServer, setDeadServerCleanup, type AutopilotHealth, type ConsulEndpoint, type ConsulKeys } from "./consul.js";
import { requireNode, type ClusterHandle, type ClusterState, type NodeState } from "../state/state.js";
import type { Secrets } from "../bootstrap/secrets.js";
import { hostTls } from "./api.js";
import { VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";
import { ensureVaultReady, vaultAutopilot, vaultHealth, type VaultClientOptions } from "./vault.js";
import { installedImageArch, pruneImages } from "./images.js";
import { grantImageServices } from "./bootstrap.js";

export interface UpgradeStep {
  node: string;
  from: string;
  to: string;
}

/**
 * Which nodes change and in what order: followers by index, then the Consul leader and
 * the active Vault node (by name) last, so each product loses its leader once. Pure.
 */
export function planUpgrade(state: ClusterState, target: Record<string, string>, leaderAddress?: string, vaultActive?: string): UpgradeStep[] {
  const pending = state.nodes.filter((n) => target[n.role] && target[n.role] !== n.image);
  const isLeader = (n: NodeState) => (!!leaderAddress && leaderAddress.startsWith(`${n.address}:`)) || n.name === vaultActive;
  return [...pending.filter((n) => !isLeader(n)), ...pending.filter(isLeader)].map((n) => ({ node: n.name, from: n.image, to: target[n.role]! }));
}

export class GateError extends ResinError {}

export interface ClusterHealth {
  leader?: string;
  autopilot?: AutopilotHealth;
  running: number;
}

/** Running VMs, the leader and autopilot's view, asked through the first server that knows a leader. */
export async function clusterHealth(cluster: ClusterHandle, state: ClusterState, access?: ConsulKeys, machines: Machines = localMachines()): Promise<ClusterHealth> {
  let leader: string | undefined;
  let autopilot: AutopilotHealth | undefined;
  let running = 0;
  for (const node of state.nodes) {
    if ((await machines.status(cluster, node)).state !== "running") continue;
    running++;
    const ep = consulEndpoint(node, access);
    // Autopilot answers to the management token, which only servers get.
    if (!ep || !isConsulServer(ep)) continue;
    const view = await consulView(ep);
    if (view.leader && !leader) {
      leader = view.leader;
      autopilot = await autopilotHealth(ep);
    }
  }
  return { leader, autopilot, running };
}

/** Gate before touching a node: all VMs run, autopilot healthy, and one node may fail. */
async function gateBefore(state: ClusterState, node: NodeState, opts: UpgradeOptions): Promise<ClusterHealth> {
  const deadline = Date.now() + opts.gateTimeoutMs;
  let last: ClusterHealth = { running: 0 };
  for (;;) {
    last = await clusterHealth(opts.cluster, state, opts.access, machinesOf(opts));
    // Servers, not nodes: a cluster of one Consul server and client nodes has no tolerance to keep.
    const ok = last.running === state.nodes.length && last.autopilot?.healthy && (last.autopilot.failureTolerance >= 1 || opts.consulServers === 1);
    const vault = ok ? await vaultGate(state, opts) : undefined;
    if (ok && (vault === undefined || vault.ok)) return last;
    if (vault && !vault.ok && Date.now() > deadline) throw new GateError(`upgrade stopped before ${node.name}: ${vault.why}`);
    if (Date.now() > deadline) {
      const why = last.running !== state.nodes.length
        ? `${state.nodes.length - last.running} node(s) are not running`
        : !last.leader
          ? "the cluster has no leader"
          : !last.autopilot?.healthy
            ? "autopilot does not call every server healthy"
            : `failure tolerance is ${last.autopilot.failureTolerance}: replacing a node now would risk quorum`;
      throw new GateError(`upgrade stopped before ${node.name}: ${why}`);
    }
    await sleep(1000);
  }
}

/** The node whose Vault is active, if any: it is replaced last. */
export async function activeVaultNode(cluster: ClusterHandle, state: ClusterState, secrets?: Secrets, machines: Machines = localMachines()): Promise<string | undefined> {
  if (!secrets?.vault) return undefined;
  const tls: VaultClientOptions = { ...hostTls(secrets, "vault", VAULT_TLS_SERVER_NAME), timeoutMs: 5000 };
  for (const n of await vaultNodes(cluster, state, machines)) if ((await vaultHealth(n.url, tls).catch(() => undefined))?.state === "active") return n.name;
  return undefined;
}

/** The running Vault nodes, as the host reaches them. */
async function vaultNodes(cluster: ClusterHandle, state: ClusterState, machines: Machines): Promise<{ name: string; url: string }[]> {
  const nodes = [];
  for (const n of state.nodes) {
    const port = n.ports["vault.https"];
    if (port && (await machines.status(cluster, n)).state === "running") nodes.push({ name: n.name, url: `https://127.0.0.1:${port}` });
  }
  return nodes;
}

/**
 * Vault's part of a gate, where the cluster runs an initialised Vault: every node
 * unsealed, raft autopilot healthy with every Vault server a voter, and (before a node
 * goes) one server allowed to fail. Undefined where there is no Vault to gate on.
 */
export async function vaultGate(state: ClusterState, opts: UpgradeOptions, before = true): Promise<{ ok: boolean; why: string } | undefined> {
  const token = opts.secrets?.vault?.rootToken;
  const servers = state.nodes.filter((n) => n.ports["vault.https"]).length;
  if (!token || servers === 0) return undefined;
  const tls: VaultClientOptions = { ...hostTls(opts.secrets!, "vault", VAULT_TLS_SERVER_NAME), timeoutMs: 5000 };
  const nodes = await vaultNodes(opts.cluster, state, machinesOf(opts));
  for (const n of nodes) {
    const h = await vaultHealth(n.url, tls).catch(() => undefined);
    if (h?.state !== "active" && h?.state !== "standby") return { ok: false, why: `Vault on ${n.name} is ${h?.state ?? "not answering"}` };
  }
  const active = nodes[0] && (await vaultAutopilot(nodes[0].url, token, tls).catch((e: Error) => e.message));
  if (!active || typeof active === "string") return { ok: false, why: `Vault's raft autopilot does not answer${active ? ` (${active})` : ""}` };
  if (!active.healthy || active.voters.length !== servers) return { ok: false, why: `Vault's raft autopilot counts ${active.voters.length} of ${servers} voters${active.healthy ? "" : ", not healthy"}` };
  if (before && servers > 1 && active.failureTolerance < 1) return { ok: false, why: `Vault's failure tolerance is ${active.failureTolerance}: replacing a node now would risk its quorum` };
  return { ok: true, why: "" };
}

/** Gate after booting a node: it is back as a raft peer, and autopilot calls every server healthy. */
async function gateAfter(state: ClusterState, node: NodeState, opts: UpgradeOptions, phases = new Phases()): Promise<void> {
  const timeoutMs = opts.gateTimeoutMs;
  let peer = false;
  let healthy = false;
  const deadline = Date.now() + timeoutMs;
  let why = "it did not answer";
  for (;;) {
    const vm = await machinesOf(opts).status(opts.cluster, node);
    if (vm.state !== "running") throw new GateError(`node ${node.name} did not stay up on its new image: ${vm.reason ?? vm.state}`);
    const ep = consulEndpoint(node, opts.access)!;
    const view = await consulView(ep);
    if (view.leader && view.peers?.includes(`${node.address}:8300`)) {
      if (!peer) phases.end("→ raft peer");
      peer = true;
      const autopilot = await autopilotHealth(ep);
      if (!healthy && autopilot?.healthy && autopilot.servers.length === opts.consulServers) {
        phases.end("→ healthy");
        healthy = true;
      }
      // Every server a voter again (autopilot promotes a returning server once it has been
      // stable), and every node naming the same leader: the cluster is as whole as before.
      const settled = autopilot?.healthy && autopilot.servers.length === opts.consulServers && autopilot.servers.every((s) => s.voter);
      if (settled && !(await oneLeader(state, opts))) {
        why = "its nodes do not yet agree on one leader";
      } else if (settled) {
        phases.end("→ voter, one leader");
        // A node that runs Vault comes back sealed: unseal it, then wait for Vault's raft.
        if (!node.ports["vault.https"] || !opts.secrets?.vault) return;
        await ensureVaultReady(await vaultNodes(opts.cluster, state, machinesOf(opts)), opts.secrets, () => Promise.reject(new Error("Vault is initialised already")), { timeoutMs: Math.max(1000, deadline - Date.now()), log: opts.log, serverName: VAULT_TLS_SERVER_NAME });
        const vault = await vaultGate(state, opts, false);
        if (!vault || vault.ok) return;
        why = vault.why;
      } else {
        why = autopilot?.healthy && autopilot.servers.length === opts.consulServers ? "it rejoined, but autopilot has not yet made it a voter again" : "it rejoined, but autopilot does not yet call every server healthy";
      }
    } else {
      why = view.error ? `its Consul is ${view.error}` : "it has not rejoined the raft peers";
    }
    if (Date.now() > deadline) throw new GateError(`node ${node.name} failed its health gate after ${timeoutMs / 1000}s on the new image: ${why}`);
    await sleep(500);
  }
}

/** Whether every node that runs Consul names the same leader. */
async function oneLeader(state: ClusterState, opts: UpgradeOptions): Promise<boolean> {
  const leaders = new Set<string | undefined>();
  for (const n of state.nodes) {
    const ep = consulEndpoint(n, opts.access);
    if (ep) leaders.add((await consulView(ep)).leader);
  }
  return leaders.size === 1 && !leaders.has(undefined);
}

export interface UpgradeOptions {
  /** The cluster being upgraded: where its images, nodes and state are. */
  cluster: ClusterHandle;
  /** Re-renders the node's config drive for the image it is about to boot. */
  writeConfig: (node: NodeState) => Promise<void>;
  gateTimeoutMs: number;
  /** How many Consul servers autopilot must count healthy. */
  consulServers: number;
  access?: ConsulKeys;
  /** The cluster's secrets: Vault's keys and token, where it runs Vault. */
  secrets?: Secrets;
  log: Log;
  /** Where the nodes run: this host's machines unless given. */
  machines?: Machines;
}

const machinesOf = (opts: UpgradeOptions): Machines => opts.machines ?? localMachines();

/**
 * Whether every other voter holds the leader's last raft log entry, as autopilot reports
 * it. Consul 1.8 has no leadership transfer; a leader stopped only once its followers
 * have everything leaves servers that can win the next election at once. Pure.
 */
export function followersCaughtUp(health: AutopilotHealth | undefined, leaderAddress: string): boolean {
  const leader = health?.servers.find((s) => s.address === leaderAddress);
  if (!health || !leader) return false;
  return health.servers.filter((s) => s !== leader && s.voter).every((s) => s.healthy && s.lastIndex >= leader.lastIndex);
}

/** Before the leader is stopped: wait (up to `ms`) until its followers have caught up; go on regardless after. */
async function awaitFollowers(ep: ConsulEndpoint, node: NodeState, opts: UpgradeOptions, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const health = await autopilotHealth(ep);
    const leader = health?.servers.find((s) => s.leader);
    if (!leader || !leader.address.startsWith(`${node.address}:`)) return; // not the leader (any more)
    if (followersCaughtUp(health, leader.address)) return;
    if (Date.now() > deadline) {
      opts.log(`  ${node.name}: its followers had not caught up after ${ms / 1000}s; stopping it anyway`);
      return;
    }
    await sleep(100);
  }
}

/**
 * Boot `node` on `image` in place of what it runs: a server's followers catch up (a
 * client agent leaves), stop, swap, start.
 * The intent is recorded before the node is stopped, so an interruption anywhere in
 * between leaves a state that `--resume` (and `rollback`) can finish.
 */
async function replace(state: ClusterState, node: NodeState, image: string, opts: UpgradeOptions, phases = new Phases()): Promise<Phases> {
  state.upgrade!.replacing = { node: node.name, image };
  await opts.cluster.write(state);
  const ep = consulEndpoint(node, opts.access);
  const machines = machinesOf(opts);
  // The new image may register other Consul services than the old: its token's policy says so first.
  const server = opts.access ? await anyConsul(state, opts) : undefined;
  if (server && (await grantImageServices(server, opts.cluster, node.name, image)) === "updated") {
    opts.log(`  ${node.name}: its Consul agent policy now names the services of ${image.slice(7, 19)}`);
  }
  if (ep && (await machines.status(opts.cluster, node)).state === "running") {
    // A Consul server keeps its raft seat while it reboots (autopilot's dead-server
    // cleanup is off for the upgrade): it comes back a voter, with no leave to propagate
    // and no promotion to wait for. The leader goes only once its followers have its
    // last entry, so either can win the election at once. Client agents leave.
    const view = await consulView(ep);
    if (view.peers?.includes(`${node.address}:8300`)) {
      await awaitFollowers(ep, node, opts);
      phases.end("catch-up");
    } else {
      await agentLeave(ep).catch((e: Error) => opts.log(`  ${node.name}: leave failed (${e.message}); stopping anyway`));
      phases.end("leave");
    }
  }
  await machines.stop(opts.cluster, node);
  phases.end("stop");
  node.image = image;
  // The new image may be of another architecture: the provider boots it as what it is.
  node.arch = await installedImageArch(opts.cluster, image);
  await opts.cluster.write(state);
  await opts.writeConfig(node);
  await machines.start(opts.cluster, state, node, opts.log);
  phases.end("launch");
  state.upgrade!.replacing = undefined;
  await opts.cluster.write(state);
  return phases;
}

/** Where a node's replacement spent its time, for the log: "leave 1.2s, stop 3.0s, …". */
class Phases {
  private last = Date.now();
  private readonly parts: string[] = [];
  end(name: string): void {
    const now = Date.now();
    this.parts.push(`${name} ${((now - this.last) / 1000).toFixed(1)}s`);
    this.last = now;
  }
  toString(): string {
    return this.parts.join(", ");
  }
}

/**
 * Before an upgrade goes on (--resume): finish the replacement an interruption cut
 * short, and start every node that is not running, each on the image the state records.
 */
export async function resumeInterrupted(state: ClusterState, opts: UpgradeOptions): Promise<void> {
  const replacing = state.upgrade?.replacing;
  if (replacing) {
    const node = state.nodes.find((n) => n.name === replacing.node);
    if (node) {
      opts.log(`  ${node.name}: finishing its interrupted replacement (${replacing.image.slice(7, 19)})`);
      await replace(state, node, replacing.image, opts);
      await gateAfter(state, node, opts);
    }
  }
  for (const node of state.nodes) {
    if ((await machinesOf(opts).status(opts.cluster, node)).state === "running") continue;
    opts.log(`  ${node.name}: not running; starting it on ${node.image.slice(7, 19)}`);
    await opts.writeConfig(node);
    await machinesOf(opts).start(opts.cluster, state, node, opts.log);
    await opts.cluster.write(state);
  }
}

/** Any Consul server that answers with a leader: the way in for cluster-wide settings. */
async function anyConsul(state: ClusterState, opts: UpgradeOptions): Promise<ConsulEndpoint | undefined> {
  for (const n of state.nodes) {
    const ep = consulEndpoint(n, opts.access);
    if (ep && isConsulServer(ep) && (await machinesOf(opts).status(opts.cluster, n)).state === "running" && (await consulView(ep)).leader) return ep;
  }
  return undefined;
}

/**
 * For the length of an upgrade, autopilot must not prune a server that is only
 * rebooting onto its new image. Turn its dead-server cleanup off, once, and record
 * whether it was on (endUpgrade turns it back on).
 */
async function holdDeadServerCleanup(state: ClusterState, opts: UpgradeOptions): Promise<void> {
  if (state.upgrade!.restoreDeadServerCleanup !== undefined || opts.consulServers < 2) return;
  const ep = await anyConsul(state, opts);
  if (!ep) return; // the gate before the first node says why
  const on = (await autopilotConfig(ep)).CleanupDeadServers === true;
  state.upgrade!.restoreDeadServerCleanup = on;
  await opts.cluster.write(state);
  if (on) {
    await setDeadServerCleanup(ep, false);
    opts.log("  autopilot's dead-server cleanup is off until the upgrade ends (servers keep their raft seats while they reboot)");
  }
}

/** The upgrade is over: autopilot's cleanup back as it was, and no upgrade in the state. */
export async function endUpgrade(state: ClusterState, opts: UpgradeOptions): Promise<void> {
  if (state.upgrade?.restoreDeadServerCleanup) {
    const ep = await anyConsul(state, opts);
    if (!ep) throw new GateError("the upgrade is done, but no node's Consul answers to turn autopilot's dead-server cleanup back on");
    await setDeadServerCleanup(ep, true);
    opts.log("  autopilot's dead-server cleanup is on again");
  }
  state.upgrade = undefined;
  await opts.cluster.write(state);
}

export async function runUpgrade(state: ClusterState, opts: UpgradeOptions): Promise<{ steps: UpgradeStep[] }> {
  const target = state.upgrade!.target;
  const done: UpgradeStep[] = [];
  await holdDeadServerCleanup(state, opts);
  for (;;) {
    const before = await clusterHealth(opts.cluster, state, opts.access, machinesOf(opts));
    const [step] = planUpgrade(state, target, before.leader, await activeVaultNode(opts.cluster, state, opts.secrets, machinesOf(opts)));
    if (!step) break;
    const node = state.nodes.find((n) => n.name === step.node)!;
    const started = Date.now();
    const phases = new Phases();
    await gateBefore(state, node, opts);
    phases.end("gate");
    opts.log(`  ${node.name}: ${step.from.slice(7, 19)} → ${step.to.slice(7, 19)}`);
    await replace(state, node, step.to, opts, phases);
    await gateAfter(state, node, opts, phases);
    opts.log(`  ${node.name}: healthy on the new image after ${((Date.now() - started) / 1000).toFixed(1)}s (${phases})`);
    done.push(step);
  }
  await endUpgrade(state, opts);
  const removed = await pruneImages(opts.cluster, state);
  if (removed.length) opts.log(`  removed ${removed.length} image(s) no node boots any more`);
  return { steps: done };
}

/** Boot a node on the image it ran before the unfinished upgrade. */
export async function rollbackNode(state: ClusterState, nodeName: string, opts: UpgradeOptions): Promise<void> {
  const node = requireNode(state, nodeName);
  const previous = state.upgrade?.previous[nodeName];
  // A node whose replacement was cut short may still be on its previous image, stopped.
  const interrupted = state.upgrade?.replacing?.node === nodeName && (await machinesOf(opts).status(opts.cluster, node)).state !== "running";
  if (!previous || (previous === node.image && !interrupted)) {
    throw new ResinError(`node ${nodeName} has no earlier image to go back to`, "rollback works on a node an unfinished upgrade has replaced");
  }
  opts.log(`  ${node.name}: back to ${previous.slice(7, 19)}`);
  await replace(state, node, previous, opts);
  await gateAfter(state, node, opts);
  opts.log(`  ${node.name}: healthy on its previous image`);
}
