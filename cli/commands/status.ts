// `resin status`: per node the VM's state, the node's own view of its supervised
// services, and Consul's view of the cluster (leader, raft peers, autopilot).
// The JSON form (--json) follows StatusSchema and is kept stable.
import { z } from "zod";
import { autopilotHealth, consulAccess, consulEndpoint, consulView } from "../cluster/consul.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { describeView } from "../cluster/health.js";
import { guestStatus } from "../cluster/guest.js";
import { clusterPaths, requireCluster } from "../cluster/state.js";
import { vmState } from "../provider/qemu/provider.js";
import { formatTable } from "../util/table.js";

const GuestServiceSchema = z.object({
  name: z.string(),
  state: z.enum(["up", "down", "restarting", "unknown"]),
  pid: z.number().int().nullable(),
  uptimeSeconds: z.number().int().nullable(),
  restarts: z.number().int(),
});

export const NodeStatusSchema = z.object({
  name: z.string(),
  role: z.string(),
  address: z.string(),
  /** Digest of the image the node boots. */
  image: z.string(),
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
  consul: z
    .object({ leader: z.string().nullable(), peers: z.array(z.string()).nullable(), error: z.string().nullable() })
    .nullable(),
});

export const StatusSchema = z.object({
  name: z.string(),
  channel: z.string(),
  /** Every node runs, all agree on one leader, and every server is a raft peer. */
  healthy: z.boolean(),
  leader: z.string().nullable(),
  /** Consul autopilot: how many servers may fail without losing quorum (null if unknown). */
  failureTolerance: z.number().int().nullable(),
  nodes: z.array(NodeStatusSchema),
});

export type NodeStatus = z.infer<typeof NodeStatusSchema>;
export type ClusterStatus = z.infer<typeof StatusSchema>;

export async function clusterStatus(name: string): Promise<ClusterStatus> {
  const state = await requireCluster(name);
  const access = consulAccess(await readSecrets(clusterPaths(name).secrets));
  const nodes = await Promise.all(
    state.nodes.map(async (node): Promise<NodeStatus> => {
      const vm = await vmState(state.name, node);
      const running = vm.state === "running";
      const endpoint = consulEndpoint(node, access);
      const statusPort = node.ports["base.status"];
      const guest = running && statusPort ? await guestStatus(statusPort) : undefined;
      const consul = running && endpoint ? await consulView(endpoint) : undefined;
      return {
        name: node.name,
        role: node.role,
        address: node.address,
        image: node.image,
        vm: { state: vm.state, pid: vm.pid ?? null, reason: vm.reason ?? null },
        ports: running ? node.ports : {},
        boot: guest && "boot" in guest ? guest.boot : null,
        services: guest && "services" in guest ? (guest.services as NodeStatus["services"]) : null,
        consul: consul ? { leader: consul.leader ?? null, peers: consul.peers ?? null, error: consul.error ?? null } : null,
      };
    }),
  );
  // Healthy: every VM runs, every node names the same leader, and autopilot (asked
  // through any node that knows the leader) reports every server healthy.
  const leaders = new Set(nodes.filter((n) => n.consul).map((n) => n.consul!.leader));
  const leader = leaders.size === 1 ? [...leaders][0] || null : null;
  const answering = state.nodes.find((_, i) => nodes[i]!.consul?.leader);
  const autopilot = answering ? await autopilotHealth(consulEndpoint(answering, access)!) : undefined;
  const healthy = nodes.every((n) => n.vm.state === "running") && !!leader && autopilot?.healthy === true;
  return { name: state.name, channel: state.channel, healthy, leader, failureTolerance: autopilot?.failureTolerance ?? null, nodes };
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
  const rows = [["NODE", "ROLE", "ADDRESS", "VM", "SERVICES", "CONSUL"]];
  for (const n of status.nodes) {
    const consul = n.consul ? describeView({ leader: n.consul.leader ?? undefined, peers: n.consul.peers ?? undefined, error: n.consul.error ?? undefined }) : "-";
    rows.push([n.name, n.role, n.address, n.vm.state, servicesColumn(n), consul]);
  }
  const table = formatTable(rows);
  const tolerance = status.failureTolerance !== null ? `, failure tolerance ${status.failureTolerance}` : "";
  const summary = status.healthy ? `cluster ${status.name}: healthy, leader ${status.leader}${tolerance}` : `cluster ${status.name}: NOT healthy${tolerance}`;
  return `${table}\n${summary}`;
}
