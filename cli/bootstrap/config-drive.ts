// Write each node's config drive: its metadata, rendered from the cluster's state and
// secrets and the versions in the image it boots, on an ISO 9660 volume labelled cidata.
import { mkdir } from "node:fs/promises";
import { loadRole, type Role } from "../spec/load.js";
import { readManifest } from "../image/manifest.js";
import { writeIso9660 } from "../image/iso9660.js";
import type { ClusterHandle, ClusterState, NodeState } from "../state/state.js";
import { writeFileAtomic } from "../util/files.js";
import { ResinError } from "../util/errors.js";
import { nodeMetadata, serialiseMetadata, serversByService } from "./metadata.js";
import { readSecrets } from "./secrets.js";

export async function loadClusterRoles(project: string, state: ClusterState): Promise<Map<string, Role>> {
  const roles = new Map<string, Role>();
  for (const node of state.nodes) if (!roles.has(node.role)) roles.set(node.role, await loadRole(project, node.role, state.channel));
  return roles;
}

export async function writeConfigDrives(project: string, cluster: ClusterHandle, state: ClusterState, only?: NodeState[]): Promise<void> {
  const secrets = await readSecrets(cluster.secrets);
  const roles = await loadClusterRoles(project, state);
  const servers = serversByService(state.nodes, (n) => roles.get(n.role)!);
  const plan = { name: state.name, datacenter: state.datacenter, subnet: state.subnet, network: state.network, nodes: state.nodes };
  for (const node of only ?? state.nodes) {
    const imageDir = cluster.imageDir(node.image);
    const manifest = await readManifest(imageDir);
    if (!manifest) {
      throw new ResinError(`node ${node.name} boots image ${node.image}, which is missing from ${imageDir}`, "the cluster's state directory was changed by hand; restore it or recreate the cluster");
    }
    const versions = Object.fromEntries(manifest.services.map((s) => [s.name, { version: s.version ?? "" }]));
    const metadata = await nodeMetadata({ plan, node, secrets, role: roles.get(node.role)!, versions, servers });
    const files = cluster.node(node.name);
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    // The config drive carries secrets: readable by its owner only.
    const userData = serialiseMetadata(metadata);
    await writeFileAtomic(files.configDrive, writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: userData }] }), 0o600);
    await writeFileAtomic(files.userData, userData, 0o600);
  }
}
