// `resin up`: build (or reuse) the role's image, create or reload the cluster's
// state, write each node's config drive, boot the VMs and wait for quorum.
import { existsSync } from "node:fs";
import { cp, mkdir, rename, rm } from "node:fs/promises";
import { loadRole } from "../spec/load.js";
import type { Channel } from "../spec/schema.js";
import { planCluster, validateClusterName } from "../bootstrap/plan.js";
import { createSecrets, readSecrets } from "../bootstrap/secrets.js";
import { nodeMetadata, serialiseMetadata, serversByService } from "../bootstrap/metadata.js";
import { writeIso9660 } from "../image/iso9660.js";
import { readManifest } from "../image/build.js";
import { clusterPaths, imageDirFor, readClusterState, writeClusterState, type ClusterState } from "../cluster/state.js";
import { waitForQuorum } from "../cluster/health.js";
import { anythingRunning, nodeFiles, startCluster, stopCluster } from "../provider/qemu/provider.js";
import { createPersistDisk } from "../provider/qemu/vm.js";
import { writeFileAtomic } from "../util/files.js";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import type { Log } from "../util/log.js";
import { buildRoles } from "./build.js";

export interface UpOptions {
  project: string;
  name: string;
  role: string;
  channel: Channel;
  offline?: boolean;
  nodes: number;
  /** Whether --nodes was given (an existing cluster keeps its size otherwise). */
  nodesGiven: boolean;
  timeoutMs: number;
  log: Log;
}

export async function up(opts: UpOptions): Promise<ClusterState> {
  validateClusterName(opts.name);
  requireTools(["qemu-system-x86_64", "qemu-img", "vde_switch"]);
  const paths = clusterPaths(opts.name);
  const existing = await readClusterState(opts.name);
  if (existing && (await anythingRunning(existing))) {
    throw new ResinError(`cluster '${opts.name}' is already running`, `see it with \`resin status --name ${opts.name}\`, stop it with \`resin down --name ${opts.name}\``);
  }
  if (existing && opts.nodesGiven && existing.nodes.length !== opts.nodes) {
    throw new ResinError(`cluster '${opts.name}' has ${existing.nodes.length} nodes, not ${opts.nodes}`, "omit --nodes to start it as it is, or use another --name");
  }

  let state: ClusterState;
  if (existing) {
    // A stopped cluster comes back exactly as it was: same images, secrets and disks.
    state = existing;
    opts.log(`cluster ${opts.name}: starting again (${state.nodes.length} nodes, state in ${paths.dir})`);
  } else {
    if (opts.nodes < 1 || opts.nodes > 9) throw new ResinError(`--nodes ${opts.nodes} is out of range`, "use 1 to 9 nodes locally");
    opts.log(`cluster ${opts.name}: building image for role ${opts.role}`);
    const [image] = await buildRoles({ project: opts.project, roles: [opts.role], channel: opts.channel, offline: opts.offline, log: opts.log });
    const role = await loadRole(opts.project, opts.role, opts.channel);
    const plan = planCluster(opts.name, Array.from({ length: opts.nodes }, () => opts.role));
    // Copy the image into the cluster: later rebuilds must not change what its nodes boot.
    const imageDir = imageDirFor(opts.name, image!.manifest.digest);
    if (!existsSync(imageDir)) {
      await mkdir(paths.images, { recursive: true });
      await rm(`${imageDir}.tmp`, { recursive: true, force: true });
      await cp(image!.dir, `${imageDir}.tmp`, { recursive: true });
      await rename(`${imageDir}.tmp`, imageDir);
    }
    state = {
      version: 1,
      name: opts.name,
      channel: opts.channel,
      datacenter: plan.datacenter,
      subnet: plan.subnet,
      nodes: plan.nodes.map((n) => ({
        name: n.name,
        role: n.role,
        index: n.index,
        address: n.address,
        prefix: n.prefix,
        clusterMac: n.clusterMac,
        hostMac: n.hostMac,
        hostAddress: n.hostAddress,
        image: image!.manifest.digest,
        memoryMib: role.spec.vm.memory_mib,
        cpus: role.spec.vm.cpus,
        ports: {},
      })),
    };
    await createSecrets(paths.secrets);
    await writeClusterState(state);
    opts.log(`cluster ${opts.name}: created (${opts.nodes} × ${opts.role}, state in ${paths.dir})`);
  }

  const secrets = await readSecrets(paths.secrets);
  const roles = new Map<string, Awaited<ReturnType<typeof loadRole>>>();
  for (const node of state.nodes) if (!roles.has(node.role)) roles.set(node.role, await loadRole(opts.project, node.role, state.channel));
  const servers = serversByService(state.nodes, (n) => roles.get(n.role)!);

  // Each node's config drive is rendered anew from the cluster's state and secrets.
  for (const node of state.nodes) {
    const imageDir = imageDirFor(state.name, node.image);
    const manifest = await readManifest(imageDir);
    if (!manifest) throw new ResinError(`node ${node.name} boots image ${node.image}, which is missing from ${imageDir}`, "the cluster's state directory was changed by hand; restore it or recreate the cluster");
    const versions = Object.fromEntries(manifest.services.map((s) => [s.name, { version: s.version ?? "" }]));
    const role = roles.get(node.role)!;
    const plan = { name: state.name, datacenter: state.datacenter, subnet: state.subnet, nodes: state.nodes };
    const metadata = await nodeMetadata({ plan, node, secrets, role, versions, servers });
    const files = nodeFiles(state.name, node.name);
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    // The config drive carries secrets: readable by its owner only.
    await writeFileAtomic(files.configDrive, writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: serialiseMetadata(metadata) }] }), 0o600);
    if (await createPersistDisk(files.persistDisk, role.spec.vm.persist_disk_gib)) opts.log(`  new persist disk for ${node.name}`);
  }

  const { accel } = await startCluster(state, opts.log);
  state.accel = accel;
  await writeClusterState(state);
  try {
    opts.log(`cluster ${opts.name}: waiting for Consul quorum (timeout ${opts.timeoutMs / 1000}s)`);
    const { seconds, quorumSeconds, leader } = await waitForQuorum(state, { timeoutMs: opts.timeoutMs, log: opts.log });
    opts.log(`cluster ${opts.name}: quorum in ${quorumSeconds.toFixed(1)}s, ready (autopilot healthy) in ${seconds.toFixed(1)}s, leader ${leader}`);
  } catch (e) {
    opts.log(`cluster ${opts.name}: did not come up; stopping its VMs (state and logs are kept in ${paths.dir})`);
    await stopCluster(state, { graceMs: 0 });
    throw e;
  }
  return state;
}
