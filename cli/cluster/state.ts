// A cluster's state directory: the plan, which image each node runs, the host ports
// forwarded to it, secrets (0600) and the per-node disks and logs. Nothing here is
// deleted except by `resin destroy`.
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { stateHome } from "../util/paths.js";
import { writeFileAtomic } from "../util/files.js";
import { ResinError } from "../util/errors.js";
import { CHANNELS } from "../spec/schema.js";
import { NetworkSchema } from "../bootstrap/plan.js";

export const NodeStateSchema = z.object({
  name: z.string(),
  role: z.string(),
  index: z.number().int(),
  /** Its planned address, or "dhcp". */
  address: z.string(),
  clusterMac: z.string(),
  hostMac: z.string(),
  hostAddress: z.string(),
  prefix: z.number().int(),
  /** Digest of the image the node boots; its files are under images/<hex>/. */
  image: z.string(),
  memoryMib: z.number().int(),
  cpus: z.number().int(),
  /** Host ports on 127.0.0.1, by service port name ("consul.http"), set at each start. */
  ports: z.record(z.string(), z.number().int()),
});

export const ClusterStateSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  /** Where the nodes' programs come from: official releases or Debian packages. */
  channel: z.enum(CHANNELS),
  datacenter: z.string(),
  subnet: z.string(),
  network: NetworkSchema.default({ mode: "static" }),
  nodes: z.array(NodeStateSchema),
  /** A rolling upgrade under way: what each role moves to, and what each node ran before. */
  upgrade: z
    .object({
      target: z.record(z.string(), z.string()),
      previous: z.record(z.string(), z.string()),
    })
    .optional(),
});

export type NodeState = z.infer<typeof NodeStateSchema>;
export type ClusterState = z.infer<typeof ClusterStateSchema>;

export function clustersDir(): string {
  return join(stateHome(), "clusters");
}

export function clusterPaths(name: string) {
  const dir = join(clustersDir(), name);
  return {
    dir,
    stateFile: join(dir, "cluster.json"),
    secrets: join(dir, "secrets.json"),
    images: join(dir, "images"),
    node: (node: string) => join(dir, "nodes", node),
  };
}

export function imageDirFor(name: string, digest: string): string {
  return join(clusterPaths(name).images, digest.replace(/^sha256:/, ""));
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
  if (!parsed.success) {
    throw new ResinError(`cluster state ${stateFile} is damaged: ${parsed.error.issues[0]!.path.join(".")}: ${parsed.error.issues[0]!.message}`);
  }
  return parsed.data;
}

export async function writeClusterState(state: ClusterState): Promise<void> {
  await writeFileAtomic(clusterPaths(state.name).stateFile, `${JSON.stringify(state, null, 2)}\n`);
}

export async function listClusters(): Promise<string[]> {
  if (!existsSync(clustersDir())) return [];
  return (await readdir(clustersDir())).filter((n) => existsSync(clusterPaths(n).stateFile)).sort();
}

export async function requireCluster(name: string): Promise<ClusterState> {
  const state = await readClusterState(name);
  if (!state) {
    const known = await listClusters();
    throw new ResinError(`no cluster named '${name}'`, known.length ? `clusters: ${known.join(", ")}` : "start one with `resin up`");
  }
  return state;
}
