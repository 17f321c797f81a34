// A new cluster's state: its roles' images built and copied in, the node plan, the
// secrets bundle, all recorded. `resin up` and `resin plan` both start here, so a
// cluster planned for a provisioner and one booted locally are the same thing.
import { runBuildChecks } from "../bootstrap/build-checks.js";
import { loadRole, type Role } from "../spec/load.js";
import type { Channel } from "../spec/schema.js";
import type { ClusterHandle, ClusterState, Network, NodeState } from "../state/state.js";
import { buildRoles } from "../image/roles.js";
import type { BuiltImage } from "../image/build.js";
import { planCluster, type NodePlan } from "../bootstrap/plan.js";
import { createSecrets } from "../bootstrap/secrets.js";
import { serviceRolesOf } from "../bootstrap/node-secrets.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { installImage } from "./images.js";
import type { SigningKey } from "../image/sign.js";
import { ARCHES, ArchSchema, archOf, DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export interface CreateOptions {
  project: string;
  cluster: ClusterHandle;
  /** Each node's role, in node order (resin-1, resin-2, …). */
  roles: string[];
  channel: Channel;
  network?: Network;
  /** Each role's architecture (parseArchSpec); a role not in it is amd64. */
  arches?: Map<string, Arch>;
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
  const { cluster } = opts;
  const roleNames = [...new Set(opts.roles)];
  opts.log(`cluster ${cluster.name}: building image${roleNames.length > 1 ? "s" : ""} for ${roleNames.join(", ")}`);
  const roleArch = (role: string): Arch => opts.arches?.get(role) ?? DEFAULT_ARCH;
  // One build per architecture the cluster has: a build is of one architecture.
  const images: BuiltImage[] = [];
  for (const arch of ARCHES) {
    const these = roleNames.filter((r) => roleArch(r) === arch);
    if (!these.length) continue;
    images.push(...(await buildRoles({ project: opts.project, roles: these, arch, channel: opts.channel, offline: opts.offline, log: opts.log, check: runBuildChecks, sign: opts.secureBoot })));
  }
  const imageOf = new Map(images.map((i) => [i.manifest.role, i]));
  const roles = new Map<string, Role>();
  for (const name of roleNames) roles.set(name, await loadRole(opts.project, name, opts.channel));
  const network = opts.network ?? { mode: "static" };
  const plan = planCluster(cluster.name, opts.roles, undefined, network);
  for (const image of images) await installImage(cluster, image.dir, image.manifest.digest, { disks: opts.disks || !!opts.secureBoot });
  const state: ClusterState = {
    version: 1,
    name: cluster.name,
    channel: opts.channel,
    datacenter: plan.datacenter,
    subnet: plan.subnet,
    network,
    nodes: plan.nodes.map((n) => nodeState(n, imageOf.get(n.role)!.manifest.digest, roles.get(n.role)!.spec.vm, roleArch(n.role))),
    ...(opts.secureBoot ? { secureBoot: { certSha256: opts.secureBoot.certSha256 } } : {}),
  };
  await createSecrets(cluster.secrets, plan, (node) => serviceRolesOf(roles.get(node.role)!));
  await cluster.write(state);
  const arches = describeArches(new Map(roleNames.map((r) => [r, roleArch(r)])));
  opts.log(`cluster ${cluster.name}: created (${describeRoles(opts.roles)}${arches ? `, ${arches}` : ""}, ${network.mode} addresses, state in ${cluster.dir})`);
  return state;
}

/** A planned node as the cluster's state records it: on `image` of architecture `arch`, with its role's VM size, no ports yet. Pure. */
export function nodeState(n: NodePlan, image: string, vm: { memory_mib: number; cpus: number }, arch: Arch = DEFAULT_ARCH): NodeState {
  const { name, role, index, address, prefix, clusterMac, hostMac, hostAddress } = n;
  return { name, role, index, address, prefix, clusterMac, hostMac, hostAddress, image, arch, memoryMib: vm.memory_mib, cpus: vm.cpus, ports: {} };
}

/**
 * `--arch` → each role's architecture. One architecture ("arm64") is every role's; a
 * list ROLE=ARCH,… names roles one by one, and a role it does not name is amd64.
 * Every role named must be one of the cluster's `roles`. Pure.
 */
export function parseArchSpec(spec: string | undefined, roles: string[]): Map<string, Arch> {
  const known = [...new Set(roles)];
  const out = new Map<string, Arch>(known.map((r) => [r, DEFAULT_ARCH]));
  if (spec === undefined) return out;
  const hint = `one architecture for every node (--arch arm64), or one per role: --arch ${known[0] ?? "consul-server"}=arm64${known[1] ? `,${known[1]}=amd64` : ""} (architectures: ${ARCHES.join(", ")})`;
  const arch = (word: string): Arch => {
    const parsed = ArchSchema.safeParse(word.trim());
    if (!parsed.success) throw new ResinError(`--arch: '${word.trim()}' is not an architecture Resin builds for`, hint);
    return parsed.data;
  };
  if (!spec.includes("=")) {
    const all = arch(spec);
    return new Map(known.map((r) => [r, all]));
  }
  for (const part of spec.split(",")) {
    const m = /^\s*([a-z][a-z0-9-]*)\s*=\s*(\S+)\s*$/.exec(part);
    if (!m) throw new ResinError(`--arch: '${part}' is not ROLE=ARCH`, hint);
    if (!out.has(m[1]!)) throw new ResinError(`--arch: role '${m[1]}' is not one of the cluster's (${known.join(", ")})`, hint);
    out.set(m[1]!, arch(m[2]!));
  }
  return out;
}

/** "consul-server arm64, cache arm64": the roles that are not amd64 (nothing when every one is). */
export function describeArches(arches: Map<string, Arch>): string {
  const other = [...arches].filter(([, a]) => a !== DEFAULT_ARCH);
  return other.length ? other.map(([r, a]) => `${r} ${a}`).join(", ") : "";
}


/**
 * `--arch` on an existing cluster must mean the architectures it has: it is never
 * changed by `up` or `plan` (an upgrade with an image set of another architecture does
 * that), and silence would suggest it was.
 */
export function checkSameArches(existing: ClusterState, arches: Map<string, Arch>, command: "up" | "plan"): void {
  const differ = existing.nodes.filter((n) => arches.has(n.role) && archOf(n) !== arches.get(n.role));
  if (!differ.length) return;
  const n = differ[0]!;
  throw new ResinError(
    `cluster '${existing.name}' runs ${n.role} as ${archOf(n)}, not ${arches.get(n.role)}`,
    `omit --arch to ${command === "up" ? "start" : "plan"} it as it is, move it with \`resin upgrade --name ${existing.name} --image-set DIR\` (images of the other architecture), or give a new cluster its own name`,
  );
}

/**
 * `resin up --secure-boot` boots nodes under OVMF's Secure Boot firmware, which is for
 * amd64: an arm64 node (AAVMF has the same test key enrolled, but is untried) is refused.
 */
export function checkSecureBootArches(arches: Map<string, Arch>): void {
  const other = [...arches].filter(([, a]) => a !== "amd64").map(([r, a]) => `${r} (${a})`);
  if (other.length) throw new ResinError(`--secure-boot boots amd64 nodes only (OVMF's Secure Boot firmware); not ${other.join(", ")}`, "drop --secure-boot, or make those roles amd64 (--arch)");
}
