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
import { nodeSecretFiles, serviceRolesOf } from "./node-secrets.js";

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

/** The template context: what a node template may refer to. */
export function templateContext(ctx: NodeContext, serviceName: string) {
  const servers = ctx.servers[serviceName] ?? [];
  return {
    node: { name: ctx.node.name, id: nodeId(ctx.secrets, ctx.node.name), address: ctx.node.address, index: ctx.node.index, role: ctx.node.role },
    cluster: {
      name: ctx.plan.name,
      datacenter: ctx.plan.datacenter,
      serverAddresses: servers.map((n) => n.address),
      serverCount: servers.length,
      servers: Object.fromEntries(Object.entries(ctx.servers).map(([name, nodes]) => [name, nodes.map((n) => n.address)])),
    },
    secrets: ctx.secrets,
    service: { name: serviceName, version: ctx.versions[serviceName]?.version ?? "" },
    options: ctx.role.options[serviceName],
  };
}

export async function nodeMetadata(ctx: NodeContext): Promise<MetadataTree> {
  const tree: MetadataTree = {};
  addFile(tree, "hostname", `${ctx.node.name}\n`);
  addFile(
    tree,
    "resin/network",
    `${ctx.node.clusterMac} ${ctx.node.address}/${ctx.node.prefix} cluster\n${ctx.node.hostMac} ${ctx.node.hostAddress} host\n`,
  );
  // Certificates and keys: only those of the services this node's role runs.
  for (const file of nodeSecretFiles(ctx.secrets, ctx.node, serviceRolesOf(ctx.role))) addFile(tree, file.path, file.content, file.perm);
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
