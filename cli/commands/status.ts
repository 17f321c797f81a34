// `resin status`: per node the VM's state, the node's own view of its supervised
// services, Consul's view of the cluster (leader, raft peers, autopilot), and Vault's
// state (active, standby, sealed) with its raft peers.
// The JSON form (--json) follows StatusSchema and is kept stable.
import { z } from "zod";
import { autopilotHealth, consulChecks, consulEndpoint, consulKeys, consulView, isConsulServer, type ConsulCheck } from "../cluster/consul.js";
import { VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { hostTls } from "../cluster/api.js";
import { unsealed, vaultRaftPeers, vaultView, VAULT_STATES } from "../cluster/vault.js";
import { describeView } from "../cluster/health.js";
import { guestStatus, GuestServiceSchema } from "../cluster/guest.js";
import type { ClusterHandle } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import type { Machines } from "../provider/machine.js";
import { formatTable } from "../util/table.js";
import { ArchSchema, archOf, DEFAULT_ARCH } from "../spec/arch.js";
import { printable } from "../util/text.js";

export const NodeStatusSchema = z.object({
  name: z.string(),
  role: z.string(),
  address: z.string(),
  /** Digest of the image the node boots. */
  image: z.string(),
  /** That image's architecture (always written; a reader of older status JSON without it: amd64). */
  arch: ArchSchema.optional(),
  vm: z.object({
    state: z.enum(["running", "stopped", "crashed"]),
    pid: z.number().int().nullable(),
    /** Why a crashed VM ended (from its console), else null. */
    reason: z.string().nullable(),
  }),
  /** Host ports on 127.0.0.1 forwarded to the node, by "<service>.<port>". */
  ports: z.record(z.string(), z.number().int()),
  /** "ready" once the node's boot script finished; null when the node does not answer. */
  boot: z.string().nullable(),
  services: z.array(GuestServiceSchema).nullable(),
  /**
   * The boot timeline: the guest's uptime (seconds since its kernel started) when boot
   * first reached each step (kernel → /init, modules, root, stage1, metadata, network,
   * persist, stage2, each service's start, the first Consul leader it knew). Empty for
   * an image from before the timeline; null when the node does not answer.
   */
  timeline: z.array(z.object({ step: z.string(), uptimeSeconds: z.number() })).nullable().default(null),
  /**
   * What comes before the timeline, measured by the host: seconds from the VM's launch
   * until the guest kernel's clock started (firmware, loading and unpacking the kernel).
   * Null when the provider does not know the launch time or the node does not answer.
   */
  launchToKernelSeconds: z.number().nullable().default(null),
  consul: z
    .object({ leader: z.string().nullable(), peers: z.array(z.string()).nullable(), error: z.string().nullable() })
    .nullable(),
  /** Vault on this node (sys/health): active, standby, sealed, uninitialised; null where it runs no Vault or is down. */
  vault: z
    .object({ state: z.enum(VAULT_STATES).nullable(), version: z.string().nullable(), error: z.string().nullable() })
    .nullable()
    .default(null),
  /** The Consul services registered on this node with the worst status of their checks (passing, warning, critical); null when Consul did not answer. */
  registered: z.array(z.object({ service: z.string(), status: z.string() })).nullable().default(null),
});

export const StatusSchema = z.object({
  name: z.string(),
  channel: z.string(),
  /** Every node runs, all agree on one leader, and every server is a raft peer. */
  healthy: z.boolean(),
  leader: z.string().nullable(),
  /** Consul autopilot: how many servers may fail without losing quorum (null if unknown). */
  failureTolerance: z.number().int().nullable(),
  /** Vault's raft peers as its active node reports them; null without an initialised, active Vault. */
  vault: z
    .object({ active: z.string().nullable(), peers: z.array(z.object({ node: z.string(), voter: z.boolean(), leader: z.boolean() })) })
    .nullable()
    .default(null),
  nodes: z.array(NodeStatusSchema),
});

export type NodeStatus = z.infer<typeof NodeStatusSchema>;
export type ClusterStatus = z.infer<typeof StatusSchema>;

export async function clusterStatus(cluster: ClusterHandle, machines: Pick<Machines, "status"> = localMachines()): Promise<ClusterStatus> {
  const state = await cluster.require();
  const secrets = await readSecrets(cluster.secrets);
  // Per node what it may have: a Consul server the management token, a client agent its own.
  const keys = consulKeys(secrets, state.datacenter);
  const tls = hostTls(secrets, "vault", VAULT_TLS_SERVER_NAME);
  const vaultUrl = (port: number) => `https://127.0.0.1:${port}`;
  const nodes = await Promise.all(
    state.nodes.map(async (node): Promise<NodeStatus> => {
      const vm = await machines.status(cluster, node);
      const running = vm.state === "running";
      const endpoint = consulEndpoint(node, keys);
      const statusPort = node.ports["base.status"];
      const asked = Date.now();
      const guest = running && statusPort ? await guestStatus(statusPort) : undefined;
      const answered = Date.now();
      const consul = running && endpoint ? await consulView(endpoint) : undefined;
      const vaultPort = node.ports["vault.https"];
      const vault = running && vaultPort ? await vaultView(vaultUrl(vaultPort), { ...tls, timeoutMs: 5000 }) : null;
      return {
        name: node.name,
        role: node.role,
        address: node.address,
        image: node.image,
        arch: archOf(node),
        vm: { state: vm.state, pid: vm.pid ?? null, reason: vm.reason ?? null },
        ports: running ? node.ports : {},
        boot: guest && "boot" in guest ? guest.boot : null,
        services: guest && "services" in guest ? guest.services : null,
        timeline: guest && "timeline" in guest ? guest.timeline : null,
        launchToKernelSeconds: guest && "uptimeSeconds" in guest ? launchToKernel(vm.startedAt, guest.uptimeSeconds, asked, answered) : null,
        consul: consul ? { leader: consul.leader ?? null, peers: consul.peers ?? null, error: consul.error ?? null } : null,
        vault,
        registered: null,
      };
    }),
  );
  // Healthy: every VM runs, every node names the same leader, and autopilot (asked
  // through a server that knows the leader) reports every server healthy.
  const leaders = new Set(nodes.filter((n) => n.consul).map((n) => n.consul!.leader));
  const leader = leaders.size === 1 ? [...leaders][0] || null : null;
  const answering = state.nodes.map((n, i) => (nodes[i]!.consul?.leader ? consulEndpoint(n, keys) : undefined)).find((ep) => ep && isConsulServer(ep));
  const autopilot = answering ? await autopilotHealth(answering) : undefined;
  const checks = answering ? await consulChecks(answering).catch(() => undefined) : undefined;
  if (checks) for (const n of nodes) n.registered = registeredHealth(checks, n.name);
  const active = nodes.find((n) => n.vault?.state === "active");
  const activePort = state.nodes.find((n) => n.name === active?.name)?.ports["vault.https"];
  const peers = activePort && secrets.vault ? await vaultRaftPeers(vaultUrl(activePort), secrets.vault.rootToken, { ...tls, timeoutMs: 5000 }).catch(() => undefined) : undefined;
  const vault = peers ? { active: active!.name, peers } : null;
  // Where Vault runs, healthy also means every node of it is unsealed.
  const vaultUnsealed = nodes.every((n) => !n.vault || (n.vault.state !== null && unsealed(n.vault.state)));
  const healthy = nodes.every((n) => n.vm.state === "running") && !!leader && autopilot?.healthy === true && vaultUnsealed;
  return { name: state.name, channel: state.channel, healthy, leader, failureTolerance: autopilot?.failureTolerance ?? null, vault, nodes };
}

const SEVERITY = ["passing", "warning", "critical"];

/** Pure: per service registered on `node` (Consul's own excepted), the worst status of its checks. */
export function registeredHealth(checks: ConsulCheck[], node: string): { service: string; status: string }[] {
  const worst = new Map<string, string>();
  for (const c of checks) {
    if (c.node !== node || !c.serviceName || c.serviceName === "consul") continue;
    const before = worst.get(c.serviceName);
    if (before === undefined || SEVERITY.indexOf(c.status) > SEVERITY.indexOf(before)) worst.set(c.serviceName, c.status);
  }
  return [...worst].sort(([a], [b]) => a.localeCompare(b)).map(([service, status]) => ({ service: printable(service), status: printable(status) }));
}

/**
 * Pure: seconds from a VM's launch (ms since the epoch) to its kernel's clock starting,
 * from the guest's uptime as it answered between `asked` and `answered` (the midpoint is
 * taken). Null when either is unknown.
 */
export function launchToKernel(startedAt: number | undefined, uptimeSeconds: number | null, asked: number, answered: number): number | null {
  if (startedAt === undefined || uptimeSeconds === null) return null;
  const kernelStarted = (asked + answered) / 2 - uptimeSeconds * 1000;
  return Math.round(kernelStarted - startedAt) / 1000;
}

/** `resin status --timeline`: per node, the guest's uptime at each step of its boot. */
export function formatTimeline(status: ClusterStatus): string {
  const steps: string[] = [];
  for (const n of status.nodes) for (const t of n.timeline ?? []) if (!steps.includes(t.step)) steps.push(t.step);
  if (steps.length === 0) return `cluster ${status.name}: no node reports a boot timeline (not running, or an image from before it)`;
  const rows = [["NODE", "LAUNCH→KERNEL", ...steps.map((s) => s.toUpperCase())]];
  for (const n of status.nodes) {
    const at = new Map((n.timeline ?? []).map((t) => [t.step, t.uptimeSeconds]));
    rows.push([n.name, n.launchToKernelSeconds === null ? "-" : n.launchToKernelSeconds.toFixed(1), ...steps.map((s) => (at.has(s) ? at.get(s)!.toFixed(1) : "-"))]);
  }
  return `${formatTable(rows)}
seconds of guest uptime at each step of boot (the kernel starts at 0); LAUNCH→KERNEL: seconds
from the VM's launch until then (firmware, loading and unpacking the kernel), measured by the host`;
}

function servicesColumn(n: NodeStatus): string {
  if (n.vm.state === "crashed") return `crashed: ${n.vm.reason}`;
  if (!n.services) return n.vm.state === "running" ? "not answering yet" : "-";
  return n.services
    .filter((s) => s.name !== "status")
    .map((s) => `${s.name} ${s.state}${s.uptimeSeconds !== null ? ` ${s.uptimeSeconds}s` : ""}${s.restarts ? ` (${s.restarts} restart${s.restarts > 1 ? "s" : ""})` : ""}`)
    .join(", ");
}

export function formatStatus(status: ClusterStatus): string {
  const withVault = status.nodes.some((n) => n.vault);
  const withRegistered = status.nodes.some((n) => n.registered?.length);
  // The architecture is shown once a node is not amd64 (every cluster was amd64 before).
  const withArch = status.nodes.some((n) => (n.arch ?? DEFAULT_ARCH) !== DEFAULT_ARCH);
  const rows = [["NODE", "ROLE", ...(withArch ? ["ARCH"] : []), "ADDRESS", "VM", "SERVICES", "CONSUL", ...(withRegistered ? ["IN CONSUL"] : []), ...(withVault ? ["VAULT"] : [])]];
  for (const n of status.nodes) {
    const consul = n.consul ? describeView({ leader: n.consul.leader ?? undefined, peers: n.consul.peers ?? undefined, error: n.consul.error ?? undefined }) : "-";
    const vault = n.vault ? (n.vault.state ?? `not answering (${n.vault.error})`) : "-";
    const registered = n.registered?.length ? n.registered.map((r) => `${r.service} ${r.status}`).join(", ") : "-";
    rows.push([n.name, n.role, ...(withArch ? [n.arch ?? DEFAULT_ARCH] : []), n.address, n.vm.state, servicesColumn(n), consul, ...(withRegistered ? [registered] : []), ...(withVault ? [vault] : [])]);
  }
  const table = formatTable(rows);
  const tolerance = status.failureTolerance !== null ? `, failure tolerance ${status.failureTolerance}` : "";
  const summary = status.healthy ? `cluster ${status.name}: healthy, leader ${status.leader}${tolerance}` : `cluster ${status.name}: NOT healthy${tolerance}`;
  const vault = status.vault
    ? `\nvault: active ${status.vault.active}, raft ${status.vault.peers.map((p) => `${p.node}${p.voter ? "" : " (non-voter)"}`).join(", ")}`
    : "";
  return `${table}\n${summary}${vault}`;
}
