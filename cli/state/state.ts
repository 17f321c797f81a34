// A cluster's state directory: the plan, which image each node runs, the host ports
// forwarded to it, secrets (0600) and the per-node disks and logs. Nothing here is
// deleted except by `resin destroy`.
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { stateHome } from "../util/paths.js";
import { writeFileAtomic } from "../util/files.js";
import { ResinError } from "../util/errors.js";
import { CHANNELS } from "../spec/schema.js";
import { canonicalJson, DIGEST_PATTERN } from "../util/hash.js";
import { PortSchema } from "../spec/schema.js";
import { ArchSchema } from "../spec/arch.js";

/**
 * How nodes get their addresses. `static`: from the plan (local QEMU clusters, libvirt,
 * metal). `dhcp`: from the network they boot on (clouds), and agents find each other by
 * cloud auto-join (`join`, e.g. "provider=aws tag_key=resin-cluster tag_value=prod").
 */
export const NetworkSchema = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("static") }),
  z.object({ mode: z.literal("dhcp"), join: z.string().min(1) }),
]);
export type Network = z.infer<typeof NetworkSchema>;

export function validateClusterName(name: string): void {
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(name)) {
    throw new ResinError(`invalid cluster name '${name}'`, "use lowercase letters, digits and '-', starting with a letter, at most 31 characters");
  }
}

const digest = z.string().regex(DIGEST_PATTERN, "must be sha256: and 64 lower-case hex digits");

// What reaches QEMU's options, file paths and a node's network file (one "MAC ADDRESS/PREFIX
// PURPOSE" line per NIC) from cluster.json is checked on every read: a comma or a newline
// there would add options or lines.
export const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const mac = z.string().regex(MAC_PATTERN, "must be a MAC address: six pairs of lower-case hex digits joined by ':'");
const ipv4 = /(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}/;
const clusterName = z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, "must be a cluster name: lowercase letters, digits and '-', starting with a letter, at most 31 characters");

export const NodeStateSchema = z.object({
  /** <cluster>-<index>: also a directory name under nodes/. */
  name: z.string().regex(/^[a-z][a-z0-9-]{0,30}-[1-9][0-9]{0,2}$/, "must be a node name such as resin-2"),
  /** A machines/<role>.yml file's name. */
  role: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "must be a role name such as consul-server"),
  index: z.number().int().min(1),
  /** Its planned address, or "dhcp". */
  address: z.string().regex(new RegExp(`^(${ipv4.source}|dhcp)$`), "must be an IPv4 address or dhcp"),
  clusterMac: mac,
  hostMac: mac,
  /** The host NIC's address and prefix, e.g. 10.0.2.15/24. */
  hostAddress: z.string().regex(new RegExp(`^${ipv4.source}/(3[0-2]|[12]?\\d)$`), "must be an IPv4 address with a prefix, such as 10.0.2.15/24"),
  prefix: z.number().int().min(0).max(32),
  /** Digest of the image the node boots; its files are under images/<hex>/. */
  image: digest,
  /** The architecture of that image (amd64, arm64); absent in a cluster.json written before it was recorded: amd64. */
  arch: ArchSchema.optional(),
  memoryMib: z.number().int(),
  cpus: z.number().int(),
  /**
   * Host ports on 127.0.0.1, by service port name ("consul.https"): chosen once, when
   * the node first starts, and kept across stop, start and up, so exported `resin env`
   * lines keep working.
   */
  ports: z.record(z.string(), PortSchema),
});

export const ClusterStateSchema = z.object({
  version: z.literal(1),
  name: clusterName,
  /** Where the nodes' programs come from: official releases or Debian packages. */
  channel: z.enum(CHANNELS),
  datacenter: z.string(),
  subnet: z.string(),
  network: NetworkSchema.default({ mode: "static" }),
  nodes: z.array(NodeStateSchema),
  /**
   * resin up --secure-boot: every node boots its image's signed disk.qcow2 under Secure
   * Boot firmware, with the certificate of this fingerprint enrolled in its variable store.
   */
  secureBoot: z.object({ certSha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict().optional(),
  /** A rolling upgrade under way: what each role moves to, and what each node ran before. */
  upgrade: z
    .object({
      target: z.record(z.string(), digest),
      previous: z.record(z.string(), digest),
      /** The node being replaced and the image it is moving to, recorded before it is stopped. */
      replacing: z.object({ node: z.string(), image: digest }).optional(),
      /**
       * Autopilot's dead-server cleanup was on and the upgrade turned it off, so that a
       * server that is only rebooting is not pruned from raft; the upgrade's end turns it on.
       */
      restoreDeadServerCleanup: z.boolean().optional(),
    })
    .optional(),
});

export type NodeState = z.infer<typeof NodeStateSchema>;
export type ClusterState = z.infer<typeof ClusterStateSchema>;

export function clustersDir(): string {
  return join(stateHome(), "clusters");
}

/**
 * Where a cluster lives. Every command reaches a cluster's files through here, so its
 * name is checked here, once: no empty name, no '.', '..', '/' or leading '-'.
 */
export function clusterPaths(name: string) {
  validateClusterName(name);
  const dir = join(clustersDir(), name);
  return {
    dir,
    stateFile: join(dir, "cluster.json"),
    secrets: join(dir, "secrets.json"),
    images: join(dir, "images"),
    node: (node: string) => join(dir, "nodes", node),
  };
}

/** A node's files in the cluster's state directory. */
export function nodeFiles(cluster: string, node: string) {
  const dir = clusterPaths(cluster).node(node);
  return {
    dir,
    configDrive: join(dir, "cidata.iso"),
    /** The same metadata as plain JSON, for provisioners that pass it as user data (0600). */
    userData: join(dir, "user-data.json"),
    persistDisk: join(dir, "persist.qcow2"),
    /** Present while the node is stopped on purpose (by resin); absent while it should run. */
    stoppedMarker: join(dir, "stopped"),
    /** Written at each start: QEMU removes its own pid file when it exits, so this is what remembers a VM was meant to run. */
    startedMarker: join(dir, "started"),
  };
}

export function imageDirFor(name: string, digest: string): string {
  if (!DIGEST_PATTERN.test(digest)) throw new ResinError(`'${digest}' is not an image digest`, "an image digest is sha256: and 64 lower-case hex digits");
  return join(clusterPaths(name).images, digest.replace(/^sha256:/, ""));
}

/** The cluster's directory, readable by its owner only (it holds secrets and disks). */
export async function ensureClusterDir(name: string): Promise<string> {
  const { dir } = clusterPaths(name);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  return dir;
}

export async function readClusterState(name: string): Promise<ClusterState | undefined> {
  const { stateFile } = clusterPaths(name);
  if (!existsSync(stateFile)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(await readFile(stateFile, "utf8"));
  } catch (e) {
    throw new ResinError(`cluster state ${stateFile} is not valid JSON: ${(e as Error).message}`, "restore it from a backup, or stop its VMs and delete the directory by hand (this deletes its data)");
  }
  const parsed = ClusterStateSchema.safeParse(data);
  const hint = "restore it from a backup, or correct the field named (`resin plan` writes every field; nothing was started)";
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ResinError(`cluster state ${stateFile} is damaged: ${issue.path.join(".") || "(the whole file)"}: ${issue.message}`, hint);
  }
  if (parsed.data.name !== name) throw new ResinError(`cluster state ${stateFile} is damaged: name: '${parsed.data.name}' is not the cluster it is stored for ('${name}')`, hint);
  for (const node of parsed.data.nodes) {
    if (node.name !== `${name}-${node.index}`) throw new ResinError(`cluster state ${stateFile} is damaged: nodes: '${node.name}' is not ${name}-${node.index}`, hint);
  }
  return parsed.data;
}

export async function writeClusterState(state: ClusterState): Promise<void> {
  // Keys sorted: the same state gives the same bytes, however it was built or read.
  await writeFileAtomic(clusterPaths(state.name).stateFile, `${canonicalJson(state)}\n`);
}

function isClusterName(name: string): boolean {
  try {
    validateClusterName(name);
    return true;
  } catch {
    return false;
  }
}

export async function listClusters(): Promise<string[]> {
  if (!existsSync(clustersDir())) return [];
  return (await readdir(clustersDir())).filter((n) => isClusterName(n) && existsSync(clusterPaths(n).stateFile)).sort();
}

export async function requireCluster(name: string): Promise<ClusterState> {
  const state = await readClusterState(name);
  if (!state) {
    const known = await listClusters();
    throw new ResinError(`no cluster named '${name}'`, known.length ? `clusters: ${known.join(", ")}` : "start one with `resin up`");
  }
  return state;
}

/**
 * The cluster a command about one node means when no --name is given: the only one that
 * has a node of that name. None, or several, is an error that names what there is.
 */
export function clusterOfNode(node: string, clusters: { name: string; nodes: string[] }[]): string {
  const holders = clusters.filter((c) => c.nodes.includes(node)).map((c) => c.name);
  if (holders.length === 1) return holders[0]!;
  if (holders.length > 1) {
    throw new ResinError(`node '${node}' is in ${holders.length} clusters: ${holders.join(", ")}`, `say which: ${holders.map((h) => `--name ${h}`).join(" or ")}`);
  }
  const known = clusters.map((c) => `${c.name} (${c.nodes.join(", ")})`);
  throw new ResinError(`no cluster has a node named '${node}'`, known.length ? `the clusters and their nodes: ${known.join("; ")}` : "start one with `resin up`");
}

/** `name` when given, else the cluster that has `node` (see clusterOfNode). */
export async function clusterForNode(node: string, name: string | undefined): Promise<string> {
  if (name !== undefined) return name;
  const clusters: { name: string; nodes: string[] }[] = [];
  for (const c of await listClusters()) {
    // A cluster whose state cannot be read has no nodes to offer here.
    const state = await readClusterState(c).catch(() => undefined);
    if (state) clusters.push({ name: c, nodes: state.nodes.map((n) => n.name) });
  }
  return clusterOfNode(node, clusters);
}

/** The cluster's node of that name; anything else is an error that lists its nodes. */
export function requireNode(state: ClusterState, name: string): NodeState {
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new ResinError(`cluster '${state.name}' has no node '${name}'`, `its nodes: ${state.nodes.map((n) => n.name).join(", ")}`);
  return node;
}
