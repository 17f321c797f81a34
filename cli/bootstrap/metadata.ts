// A node's metadata: the last per-cluster facts, as a LinuxKit metadata tree
// ({"name": {"content": …}} files, {"name": {"entries": …}} directories) that the
// boot script writes out under /run/config.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Role } from "../spec/load.js";
import { renderTemplate } from "../spec/template.js";
import { canonicalJson } from "../util/hash.js";
import type { ClusterPlan, NodePlan } from "./plan.js";
import type { Secrets } from "./secrets.js";
import { nodeSecrets, serviceRolesOf, statusToken } from "./node-secrets.js";

export type MetadataNode = { content: string; perm?: string } | { entries: Record<string, MetadataNode>; perm?: string };
export type MetadataTree = Record<string, MetadataNode>;

/** Put a file at a slash-separated path, creating directories on the way. */
export function addFile(tree: MetadataTree, path: string, content: string, perm = "0644"): void {
  const parts = path.split("/");
  let entries = tree;
  for (const dir of parts.slice(0, -1)) {
    const existing = entries[dir];
    if (existing && "content" in existing) throw new Error(`metadata: ${dir} is a file, cannot hold ${path}`);
    if (!existing) entries[dir] = { entries: {} };
    entries = (entries[dir] as { entries: Record<string, MetadataNode> }).entries;
  }
  const name = parts[parts.length - 1]!;
  if (entries[name]) throw new Error(`metadata: ${path} is set twice`);
  entries[name] = { content, perm };
}

export interface ServiceVersions {
  [service: string]: { version: string };
}

export interface NodeContext {
  plan: ClusterPlan;
  node: NodePlan;
  secrets: Secrets;
  role: Role;
  versions: ServiceVersions;
  /** Per service, the nodes that run it as a server (the role sets its `server` option). */
  servers: Record<string, NodePlan[]>;
}

/** Which nodes serve which service: a node serves S when its role includes S with option server = true. */
export function serversByService(nodes: NodePlan[], roleOf: (node: NodePlan) => Role): Record<string, NodePlan[]> {
  const servers: Record<string, NodePlan[]> = {};
  for (const node of nodes) {
    const role = roleOf(node);
    for (const service of role.services) {
      if (role.options[service.name]?.server === true) (servers[service.name] ??= []).push(node);
    }
  }
  return servers;
}

/**
 * A node's stable UUID, derived from the cluster's secret and the node's name: the same
 * across reboots and image replacements, so an agent never has to keep one on disk.
 */
export function nodeId(secrets: Secrets, nodeName: string): string {
  const h = createHash("sha256").update(`${secrets.gossipKey}\0${nodeName}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * On a dhcp cluster an agent learns its address when it starts: go-sockaddr's template
 * (which Consul and Nomad evaluate in their config) names the private address of the
 * NIC with the default route.
 */
export const DHCP_BIND_ADDRESS = "{{ GetPrivateIP }}";

/**
 * The template context: what a node template may refer to. Of the bundle, only what the
 * node's role may hold (nodeSecrets): a template asking for more fails to render.
 */
export function templateContext(ctx: NodeContext, serviceName: string) {
  const servers = ctx.servers[serviceName] ?? [];
  const { files: _files, ...secrets } = nodeSecrets(ctx.secrets, ctx.node, serviceRolesOf(ctx.role));
  const network = ctx.plan.network;
  // Where an agent finds its servers: their planned addresses, or the cloud auto-join string.
  const joinTargets = (nodes: NodePlan[]) => (network.mode === "dhcp" ? [network.join] : nodes.map((n) => n.address));
  return {
    node: {
      name: ctx.node.name,
      id: nodeId(ctx.secrets, ctx.node.name),
      /** This node's own Consul agent token (write on this node only), where it runs Consul. */
      ...(secrets.consul.agentToken ? { consulAgentToken: secrets.consul.agentToken } : {}),
      address: network.mode === "dhcp" ? DHCP_BIND_ADDRESS : ctx.node.address,
      index: ctx.node.index,
      role: ctx.node.role,
    },
    cluster: {
      name: ctx.plan.name,
      datacenter: ctx.plan.datacenter,
      serverAddresses: joinTargets(servers),
      serverCount: servers.length,
      servers: Object.fromEntries(Object.entries(ctx.servers).map(([name, nodes]) => [name, joinTargets(nodes)])),
      /** The cloud auto-join string on a dhcp cluster, else empty. */
      autoJoin: network.mode === "dhcp" ? network.join : "",
    },
    secrets,
    service: { name: serviceName, version: ctx.versions[serviceName]?.version ?? "" },
    options: ctx.role.options[serviceName],
  };
}

/**
 * What the boot script does with each NIC: "MAC ADDRESS/PREFIX PURPOSES" lines. A static
 * node has a cluster NIC and a host NIC (QEMU's user-mode NIC, for the status endpoint);
 * a dhcp node has one NIC, the first, which serves both.
 */
export function networkFile(plan: ClusterPlan, node: NodePlan): string {
  if (plan.network.mode === "dhcp") return "* dhcp cluster,host\n";
  return `${node.clusterMac} ${node.address}/${node.prefix} cluster\n${node.hostMac} ${node.hostAddress} host\n`;
}

/**
 * The services whose agents find their peers by cloud auto-join on a DHCP cluster
 * (Consul's retry_join, Vault's raft retry_join): go-discover asks the cloud's metadata
 * service for the instance's region and credentials, as the service's own user.
 */
const AUTO_JOIN_SERVICES = ["consul", "vault"];

/**
 * Pure: the service users that may still reach the cloud's metadata service once stage
 * 1 has closed it (resin/metadata-users): on a DHCP cluster, the users of the services
 * of this role that join by cloud auto-join; on a static cluster, none (root only).
 */
export function metadataUsers(plan: Pick<ClusterPlan, "network">, role: Pick<Role, "services">): string[] {
  if (plan.network.mode !== "dhcp") return [];
  return role.services.filter((s) => AUTO_JOIN_SERVICES.includes(s.name) && s.user).map((s) => s.user!.name);
}

export async function nodeMetadata(ctx: NodeContext): Promise<MetadataTree> {
  const tree: MetadataTree = {};
  addFile(tree, "hostname", `${ctx.node.name}\n`);
  addFile(tree, "resin/network", networkFile(ctx.plan, ctx.node));
  // Certificates and keys: only those of the services this node's role runs.
  for (const file of nodeSecrets(ctx.secrets, ctx.node, serviceRolesOf(ctx.role)).files) addFile(tree, file.path, file.content, file.perm);
  // What the node's status endpoint asks of the host before it controls a service.
  addFile(tree, "resin/status-token", `${statusToken(ctx.secrets, ctx.node.name)}\n`, "0600");
  // Who besides root may reach a cloud's metadata service after boot (services/base/metadata/close).
  const users = metadataUsers(ctx.plan, ctx.role);
  if (users.length > 0) addFile(tree, "resin/metadata-users", `${users.join("\n")}\n`);
  for (const service of ctx.role.services) {
    for (const t of service.templates.node) {
      const source = await readFile(join(service.dir, t.src), "utf8");
      addFile(tree, t.dst, renderTemplate(source, templateContext(ctx, service.name), `${service.name}/${t.src}`), t.mode);
    }
  }
  return tree;
}

export function serialiseMetadata(tree: MetadataTree): Buffer {
  return Buffer.from(`${canonicalJson(tree, 0)}\n`);
}
