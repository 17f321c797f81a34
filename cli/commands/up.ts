// `resin up`: build (or reuse) the role's image, create or reload the cluster's
// state, write each node's config drive, boot the VMs and wait for quorum.
import type { Channel } from "../spec/schema.js";
import { readOrReissueSecrets, withUiToken } from "../bootstrap/secrets.js";
import { serviceRolesOf } from "../bootstrap/node-secrets.js";
import { consulKeys, consulServerCount } from "../cluster/consul.js";
import { finishCluster, localTargets } from "../cluster/bootstrap.js";
import { loadClusterRoles, writeConfigDrives } from "../bootstrap/config-drive.js";
import type { ClusterHandle, ClusterState } from "../state/state.js";
import { silentAfterMs, waitForQuorum } from "../cluster/health.js";
import { localMachines } from "../provider/local.js";
import { ResinError } from "../util/errors.js";
import { requireTools, type HostTool } from "../util/tools.js";
import { archOf, DEFAULT_ARCH, emulatorsFor, type Arch } from "../spec/arch.js";
import type { Log } from "../util/log.js";
import { checkSameArches, createCluster, describeRoles } from "../cluster/create.js";
import type { SigningKey } from "../image/sign.js";

export interface UpOptions {
  project: string;
  cluster: ClusterHandle;
  /** Each node's role, for a new cluster. */
  roles: string[];
  channel: Channel;
  offline?: boolean;
  /** Whether --nodes or --roles was given (an existing cluster keeps its size otherwise). */
  nodesGiven: boolean;
  /** Whether --role or --roles was given (an existing cluster of other roles is refused). */
  rolesGiven?: boolean;
  /** Each role's architecture for a new cluster (parseArchSpec); absent: amd64. */
  arches?: Map<string, Arch>;
  /** Whether --arch was given (an existing cluster of other architectures is refused). */
  archGiven?: boolean;
  timeoutMs: number;
  /** --secure-boot: a new cluster's images signed with this pair and booted under Secure Boot; an existing cluster must be one. */
  secureBoot?: SigningKey;
  log: Log;
}

/**
 * The host programs `up` needs, all named in one error when any is missing: only the
 * emulators its nodes need (an existing cluster's from its state, a new one's from
 * --arch), and sbsign and faketime for --secure-boot. Read-only: `resin up` calls it
 * before it takes the cluster's lock, so that a missing program writes nothing.
 */
export async function requireUpTools(opts: Pick<UpOptions, "cluster" | "roles" | "arches">, secureBoot = false): Promise<void> {
  const existing = await opts.cluster.read();
  const arches = existing ? existing.nodes.map((n) => archOf(n)) : opts.roles.map((r) => opts.arches?.get(r) ?? DEFAULT_ARCH);
  requireTools([...(emulatorsFor(arches) as HostTool[]), "qemu-img", "vde_switch", ...(secureBoot ? (["sbsign", "faketime"] as const) : [])]);
}

export async function up(opts: UpOptions): Promise<ClusterState> {
  const { cluster } = opts;
  const machines = localMachines();
  await requireUpTools(opts, !!opts.secureBoot);
  const existing = await cluster.read();
  if (existing && opts.nodesGiven && existing.nodes.length !== opts.roles.length) {
    throw new ResinError(`cluster '${cluster.name}' has ${existing.nodes.length} nodes, not ${opts.roles.length}`, "omit --nodes (and --roles) to start it as it is, or use another --name");
  }
  if (existing && opts.rolesGiven) checkSameRoles(existing, opts.roles, opts.nodesGiven);
  if (existing && opts.secureBoot && existing.secureBoot?.certSha256 !== opts.secureBoot.certSha256) {
    throw new ResinError(
      existing.secureBoot ? `cluster '${cluster.name}' boots under Secure Boot with the certificate ${existing.secureBoot.certSha256}, not ${opts.secureBoot.certSha256}` : `cluster '${cluster.name}' was created without --secure-boot: its nodes boot their kernel directly`,
      "omit --secure-boot and --sign to start it as it is, or give a Secure Boot cluster its own name: resin up --name <new> --secure-boot",
    );
  }
  if (existing && opts.archGiven && opts.arches) checkSameArches(existing, opts.arches, "up");

  let state: ClusterState;
  if (existing) {
    // A cluster comes back exactly as it was: same images, secrets, disks and host ports.
    state = existing;
  } else {
    if (opts.roles.length < 1 || opts.roles.length > 9) throw new ResinError(`${opts.roles.length} nodes is out of range`, "use 1 to 9 nodes locally");
    state = await createCluster(opts);
  }
  if (state.network.mode !== "static") {
    throw new ResinError(`cluster '${cluster.name}' takes its addresses from DHCP, which local clusters do not have`, "deploy it with its manifest (resin plan --name … --json, then Terraform), or plan a local cluster without --network dhcp");
  }

  // Converge: start every node that is not running (stopped or crashed); leave running ones alone.
  const vms = await Promise.all(state.nodes.map((n) => machines.status(cluster, n)));
  const toStart = state.nodes.filter((_, i) => vms[i]!.state !== "running");
  const running = state.nodes.length - toStart.length;
  if (existing) {
    opts.log(`cluster ${cluster.name}: ${running ? `${running} of ${state.nodes.length} nodes running, starting ${toStart.map((n) => n.name).join(", ") || "none"}` : `starting again (${state.nodes.length} nodes)`} (state in ${cluster.dir})`);
  }

  const roles = await loadClusterRoles(opts.project, state);
  // A bundle of an older Resin (one CA for every product) gets a CA per product and new
  // certificates, but only while no node runs: every node must boot with them at once.
  await readOrReissueSecrets(cluster.secrets, {
    reissue: running === 0,
    cluster: state.name,
    plan: { name: state.name, datacenter: state.datacenter, subnet: state.subnet, network: state.network, nodes: state.nodes },
    serviceRoles: (node) => serviceRolesOf(roles.get(node.role)!),
    log: opts.log,
  });
  if (toStart.length) await writeConfigDrives(opts.project, cluster, state, toStart);
  for (const node of toStart) {
    if (await machines.createPersistDisk(cluster, node.name, roles.get(node.role)!.spec.vm.persist_disk_gib)) opts.log(`  new persist disk for ${node.name}`);
  }

  // Host ports are chosen once and recorded before any VM starts.
  await machines.assignPorts(cluster, state, toStart, opts.log);
  await cluster.write(state);
  const { accel, started } = toStart.length ? await machines.startCluster(cluster, state, opts.log, toStart) : { accel: "tcg" as const, started: [] };
  await cluster.write(state);
  try {
    opts.log(`cluster ${cluster.name}: waiting for Consul quorum (timeout ${opts.timeoutMs / 1000}s)`);
    // A bundle from before the web UI had a read-only token gets one now (kept with the rest).
    const secrets = await withUiToken(cluster.secrets);
    const keys = consulKeys(secrets, state.datacenter);
    const consulServers = consulServerCount(state.nodes, roles);
    const silent = { nodes: started.map((n) => n.name), accel, afterMs: silentAfterMs(accel) };
    const { seconds, quorumSeconds, leader } = await waitForQuorum(state, { timeoutMs: opts.timeoutMs, log: opts.log, keys, consulServers, silent, cluster });
    await finishCluster(state, secrets, localTargets(state, keys), opts.log, cluster);
    opts.log(`cluster ${cluster.name}: quorum in ${quorumSeconds.toFixed(1)}s, ready (autopilot healthy) in ${seconds.toFixed(1)}s, leader ${leader}`);
  } catch (e) {
    if (running === 0) {
      opts.log(`cluster ${cluster.name}: did not come up; stopping its VMs (state and logs are kept in ${cluster.dir})`);
      await machines.stopCluster(cluster, state, { graceMs: 0 });
    } else {
      opts.log(`cluster ${cluster.name}: did not come up; stopping the nodes this run started (${started.map((n) => n.name).join(", ") || "none"}); state and logs are kept in ${cluster.dir}`);
      await Promise.all(started.map((n) => machines.stop(cluster, n, { graceMs: 0 })));
    }
    throw e;
  }
  return state;
}

/**
 * `resin up --role X` (or --roles) on an existing cluster must mean the roles it has:
 * an existing cluster is never changed to other roles, and silence would suggest it was.
 */
export function checkSameRoles(existing: ClusterState, roles: string[], countGiven: boolean): void {
  const has = existing.nodes.map((n) => n.role);
  // With a count (--nodes, --roles R=N) the nodes per role must match too; without, the roles.
  const kinds = (rs: string[]) => (countGiven ? describeRoles([...rs].sort()) : [...new Set(rs)].sort().join(","));
  if (kinds(has) === kinds(roles)) return;
  throw new ResinError(
    `cluster '${existing.name}' runs ${describeRoles(has)}, not ${countGiven ? describeRoles(roles) : [...new Set(roles)].join(", ")}`,
    `omit --role/--roles to start it as it is, or give a new cluster its own name: resin up --name <new> --role ${roles[0]}`,
  );
}
