// The node plan: names, addresses and MACs of a cluster's nodes. Pure and
// deterministic in its inputs, so the same cluster always gets the same plan.
import { createHash } from "node:crypto";
import { ResinError } from "../util/errors.js";
import { validateClusterName, type Network } from "../state/state.js";

/** A node's address on a `dhcp` cluster: not known until it boots. */
export const DHCP_ADDRESS = "dhcp";

/** The cloud auto-join string a dhcp cluster uses unless told otherwise: instances tagged with the cluster's name. */
export function defaultJoin(cluster: string): string {
  return `provider=aws tag_key=resin-cluster tag_value=${cluster}`;
}

export interface NodePlan {
  name: string;
  index: number;
  role: string;
  /** Address on the cluster segment, or DHCP_ADDRESS. */
  address: string;
  prefix: number;
  clusterMac: string;
  /** The host-facing user-mode NIC (10.0.2.15/24, QEMU's slirp default). */
  hostMac: string;
  hostAddress: string;
}

export interface ClusterPlan {
  name: string;
  datacenter: string;
  subnet: string;
  network: Network;
  nodes: NodePlan[];
}

export const DEFAULT_SUBNET = "10.88.0.0/24";
const HOST_NIC_ADDRESS = "10.0.2.15/24";

function parseSubnet(subnet: string): { base: number[]; prefix: number } {
  const m = subnet.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const prefix = m ? Number(m[5]) : NaN;
  if (!m || octets.some((o) => o > 255) || prefix < 16 || prefix > 28) {
    throw new ResinError(`invalid subnet '${subnet}'`, "give an IPv4 network such as 10.88.0.0/24 (prefix 16 to 28)");
  }
  return { base: octets, prefix };
}

function mac(seed: string, nic: number, index: number): string {
  // Locally administered and derived from the cluster name: stable across restarts, and
  // unlikely to repeat between clusters (which are on separate switches anyway).
  const h = createHash("sha256").update(seed).digest();
  const bytes = [0x52, 0x54, h[0]!, h[1]!, nic, index];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

export function planCluster(name: string, roles: string[], subnet = DEFAULT_SUBNET, network: Network = { mode: "static" }): ClusterPlan {
  validateClusterName(name);
  const { base, prefix } = parseSubnet(subnet);
  const hostCount = 2 ** (32 - prefix) - 2;
  if (roles.length < 1 || roles.length + 10 > hostCount || roles.length > 200) {
    throw new ResinError(`cannot place ${roles.length} nodes in ${subnet}`, "use 1 to 200 nodes and a subnet large enough for them");
  }
  const baseValue = ((base[0]! << 24) | (base[1]! << 16) | (base[2]! << 8) | base[3]!) >>> 0;
  const networkBase = (baseValue & ~((1 << (32 - prefix)) - 1)) >>> 0;
  const nodes = roles.map((role, i) => {
    const value = networkBase + 11 + i; // .11, .12, … leaves the low addresses free
    const address = network.mode === "dhcp" ? DHCP_ADDRESS : [24, 16, 8, 0].map((s) => (value >>> s) & 255).join(".");
    return {
      name: `${name}-${i + 1}`,
      index: i + 1,
      role,
      address,
      prefix,
      clusterMac: mac(name, 1, i + 1),
      hostMac: mac(name, 2, i + 1),
      hostAddress: HOST_NIC_ADDRESS,
    };
  });
  return { name, datacenter: "dc1", subnet, network, nodes };
}
