// A new cluster's state: its roles' images built and copied in, the node plan, the
// secrets bundle, all recorded. `resin up` and `resin plan` both start here, so a
// cluster planned for a provisioner and one booted locally are the same thing.
import { runBuildChecks } from "../bootstrap/build-checks.js";
import { loadRole, type Role } from "../spec/load.js";
import type { Channel } from "../spec/schema.js";
import { clusterPaths, validateClusterName, writeClusterState, type ClusterState, type Network, type NodeState } from "../state/state.js";
import { buildRoles } from "../image/roles.js";
import { planCluster, type NodePlan } from "../bootstrap/plan.js";
import { createSecrets } from "../bootstrap/secrets.js";
import { serviceRolesOf } from "../bootstrap/node-secrets.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { installImage } from "./images.js";
import type { SigningKey } from "../image/sign.js";

export interface CreateOptions {
  project: string;
  name: string;
  /** Each node's role, in node order (resin-1, resin-2, …). */
  roles: string[];
  channel: Channel;
  network?: Network;
  offline?: boolean;
  /** Also copy the roles' disk images (disk.raw, disk.qcow2, disk.iso) into the cluster: provisioners boot those. */
  disks?: boolean;
  /** resin up --secure-boot: images signed with this key pair, their disks copied in, every node booted from its disk under Secure Boot. */
  secureBoot?: SigningKey;
  log: Log;
}

/** "consul-server=3,nomad-client=2" → each node's role, in that order. */
export function parseRoleCounts(spec: string): string[] {
  const roles: string[] = [];
  for (const part of spec.split(",")) {
    const m = part.trim().match(/^([a-z][a-z0-9-]*)(?:=(\d+))?$/);
    const count = m?.[2] === undefined ? 1 : Number(m[2]);
    if (!m || count < 1) throw new ResinError(`--roles: '${part}' is not ROLE or ROLE=COUNT`, "e.g. --roles consul-server=3,nomad-client=2");
    for (let i = 0; i < count; i++) roles.push(m[1]!);
  }
  return roles;
}

function roleCounts(roles: string[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const r of roles) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts];
}

/** What a cluster is made of, said briefly: "3 × consul-server, 2 × nomad-client". */
export function describeRoles(roles: string[]): string {
  return roleCounts(roles).map(([r, n]) => `${n} × ${r}`).join(", ");
}

/** The same counts as a --roles argument (parseRoleCounts reads it back): "consul-server=3,nomad-client=2". */
export function formatRoleCounts(roles: string[]): string {
  return roleCounts(roles).map(([r, n]) => `${r}=${n}`).join(",");
}

/** A new cluster: build its roles' images, plan the nodes, make the secrets bundle, record it all. */
export async function createCluster(opts: CreateOptions): Promise<ClusterState> {
  validateClusterName(opts.name);
  const paths = clusterPaths(opts.name);
  const roleNames = [...new Set(opts.roles)];
  opts.log(`cluster ${opts.name}: building image${roleNames.length > 1 ? "s" : ""} for ${roleNames.join(", ")}`);
  const images = await buildRoles({ project: opts.project, roles: roleNames, channel: opts.channel, offline: opts.offline, log: opts.log, check: runBuildChecks, sign: opts.secureBoot });
  const imageOf = new Map(images.map((i) => [i.manifest.role, i]));
  const roles = new Map<string, Role>();
  for (const name of roleNames) roles.set(name, await loadRole(opts.project, name, opts.channel));
  const network = opts.network ?? { mode: "static" };
  const plan = planCluster(opts.name, opts.roles, undefined, network);
  for (const image of images) await installImage(opts.name, image.dir, image.manifest.digest, { disks: opts.disks || !!opts.secureBoot });
  const state: ClusterState = {
    version: 1,
    name: opts.name,
    channel: opts.channel,
    datacenter: plan.datacenter,
    subnet: plan.subnet,
    network,
    nodes: plan.nodes.map((n) => nodeState(n, imageOf.get(n.role)!.manifest.digest, roles.get(n.role)!.spec.vm)),
    ...(opts.secureBoot ? { secureBoot: { certSha256: opts.secureBoot.certSha256 } } : {}),
  };
  await createSecrets(paths.secrets, plan, (node) => serviceRolesOf(roles.get(node.role)!));
  await writeClusterState(state);
  opts.log(`cluster ${opts.name}: created (${describeRoles(opts.roles)}, ${network.mode} addresses, state in ${paths.dir})`);
  return state;
}

/** A planned node as the cluster's state records it: on `image`, with its role's VM size, no ports yet. Pure. */
export function nodeState(n: NodePlan, image: string, vm: { memory_mib: number; cpus: number }): NodeState {
  const { name, role, index, address, prefix, clusterMac, hostMac, hostAddress } = n;
  return { name, role, index, address, prefix, clusterMac, hostMac, hostAddress, image, memoryMib: vm.memory_mib, cpus: vm.cpus, ports: {} };
}
