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

/** A node's files in the cluster's state directory. */
export interface NodeFiles {
  dir: string;
  configDrive: string;
  /** The same metadata as plain JSON, for provisioners that pass it as user data (0600). */
  userData: string;
  persistDisk: string;
  /** Present while the node is stopped on purpose (by resin); absent while it should run. */
  stoppedMarker: string;
  /** Written at each start: QEMU removes its own pid file when it exits, so this is what remembers a VM was meant to run. */
  startedMarker: string;
}

/**
 * One cluster as the layers below a command see it: its name, every path of its state
 * directory, and reading and writing its state. A command makes it once (clusterHandle,
 * clusterForNode, listClusters) and passes it down, so the name is checked once and no
 * layer derives a path from a name again.
 */
export interface ClusterHandle {
  readonly name: string;
  readonly dir: string;
  readonly stateFile: string;
  readonly secrets: string;
  /** The images its nodes boot, one directory per digest (imageDir). */
  readonly images: string;
  /** One directory per node (node). */
  readonly nodes: string;
  /** The lock file, beside the cluster's directory: clusters/<name>.lock (state/lock.ts). */
  readonly lock: string;
  node(name: string): NodeFiles;
  /** An image's directory; anything but an image digest is refused. */
  imageDir(digest: string): string;
  /** The cluster's directory, readable by its owner only (it holds secrets and disks). */
  ensureDir(): Promise<string>;
  /** Its state, checked; undefined when it has none. */
  read(): Promise<ClusterState | undefined>;
  /** Its state, or an error that names the clusters there are. */
  require(): Promise<ClusterState>;
  write(state: ClusterState): Promise<void>;
}

/**
 * Where a cluster lives. Every command reaches a cluster's files through here, so its
 * name is checked here, once: no empty name, no '.', '..', '/' or leading '-'. The
 * paths are fixed now, under RESIN_STATE_HOME as it is now.
 */
export function clusterHandle(name: string): ClusterHandle {
  validateClusterName(name);
  const dir = join(clustersDir(), name);
  const nodes = join(dir, "nodes");
  const images = join(dir, "images");
  const handle: ClusterHandle = {
    name,
    dir,
    stateFile: join(dir, "cluster.json"),
    secrets: join(dir, "secrets.json"),
    images,
    nodes,
    lock: join(clustersDir(), `${name}.lock`),
    node(node) {
      const at = join(nodes, node);
      return {
        dir: at,
        configDrive: join(at, "cidata.iso"),
        userData: join(at, "user-data.json"),
        persistDisk: join(at, "persist.qcow2"),
        stoppedMarker: join(at, "stopped"),
        startedMarker: join(at, "started"),
      };
    },
    imageDir(digest) {
      if (!DIGEST_PATTERN.test(digest)) throw new ResinError(`'${digest}' is not an image digest`, "an image digest is sha256: and 64 lower-case hex digits");
      return join(images, digest.replace(/^sha256:/, ""));
    },
    async ensureDir() {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
      return dir;
    },
    read: () => readClusterState(handle),
    async require() {
      const state = await readClusterState(handle);
      if (!state) {
        const known = (await listClusters()).map((c) => c.name);
        throw new ResinError(`no cluster named '${name}'`, known.length ? `clusters: ${known.join(", ")}` : "start one with `resin up`");
      }
      return state;
    },
    async write(state) {
      if (state.name !== name) throw new Error(`cluster '${state.name}' written through the handle of '${name}'`);
      // Keys sorted: the same state gives the same bytes, however it was built or read.
      await writeFileAtomic(handle.stateFile, `${canonicalJson(state)}\n`);
    },
  };
  return handle;
}


async function readClusterState(cluster: ClusterHandle): Promise<ClusterState | undefined> {
  const { name, stateFile } = cluster;
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

function isClusterName(name: string): boolean {
  try {
    validateClusterName(name);
    return true;
  } catch {
    return false;
  }
}

/** A handle for each cluster that has a state file, sorted by name. */
export async function listClusters(): Promise<ClusterHandle[]> {
  if (!existsSync(clustersDir())) return [];
  const names = (await readdir(clustersDir())).filter(isClusterName).sort();
  return names.map(clusterHandle).filter((c) => existsSync(c.stateFile));
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

/** The cluster `name` when given, else the cluster that has `node` (see clusterOfNode). */
export async function clusterForNode(node: string, name: string | undefined): Promise<ClusterHandle> {
  if (name !== undefined) return clusterHandle(name);
  const clusters: { name: string; nodes: string[] }[] = [];
  const handles = await listClusters();
  for (const c of handles) {
    // A cluster whose state cannot be read has no nodes to offer here.
    const state = await c.read().catch(() => undefined);
    if (state) clusters.push({ name: c.name, nodes: state.nodes.map((n) => n.name) });
  }
  const holder = clusterOfNode(node, clusters);
  return handles.find((c) => c.name === holder)!;
}

/** The cluster's node of that name; anything else is an error that lists its nodes. */
export function requireNode(state: ClusterState, name: string): NodeState {
  const node = state.nodes.find((n) => n.name === name);
  if (!node) throw new ResinError(`cluster '${state.name}' has no node '${name}'`, `its nodes: ${state.nodes.map((n) => n.name).join(", ")}`);
  return node;
}
