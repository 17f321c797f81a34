// `resin status`: each node's VM state and Consul's view of the cluster.
import { consulView, type ConsulView } from "../cluster/consul.js";
import { describeView } from "../cluster/health.js";
import { requireCluster } from "../cluster/state.js";
import { vmState, type VmState } from "../provider/qemu/provider.js";

export interface NodeStatus {
  name: string;
  role: string;
  address: string;
  image: string;
  vm: VmState;
  pid?: number;
  ports: Record<string, number>;
  consul?: ConsulView;
}

export interface ClusterStatus {
  name: string;
  nodes: NodeStatus[];
  /** True when every node runs and all agree on one leader with every server as a raft peer. */
  healthy: boolean;
  leader?: string;
}

export async function clusterStatus(name: string): Promise<ClusterStatus> {
  const state = await requireCluster(name);
  const nodes = await Promise.all(
    state.nodes.map(async (node): Promise<NodeStatus> => {
      const vm = await vmState(state.name, node);
      const port = node.ports["consul.http"];
      const consul = vm.state === "running" && port ? await consulView(port) : undefined;
      return { name: node.name, role: node.role, address: node.address, image: node.image, vm: vm.state, pid: vm.pid, ports: node.ports, consul };
    }),
  );
  const leaders = new Set(nodes.map((n) => n.consul?.leader));
  const leader = nodes[0]?.consul?.leader || undefined;
  const healthy = nodes.every((n) => n.vm === "running" && n.consul?.peers?.length === nodes.length) && leaders.size === 1 && !!leader;
  return { name: state.name, nodes, healthy, leader };
}

export function formatStatus(status: ClusterStatus): string {
  const rows = [["NODE", "ROLE", "ADDRESS", "VM", "CONSUL HTTP", "CONSUL"]];
  for (const n of status.nodes) {
    const port = n.ports["consul.http"];
    rows.push([n.name, n.role, n.address, n.vm, n.vm === "running" && port ? `127.0.0.1:${port}` : "-", n.consul ? describeView(n.consul) : "-"]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
  const summary = status.healthy ? `cluster ${status.name}: healthy, leader ${status.leader}` : `cluster ${status.name}: NOT healthy`;
  return `${table}\n${summary}`;
}
