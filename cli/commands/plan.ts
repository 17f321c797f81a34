// `resin plan`: create a cluster's state (images, node plan, secrets, each node's
// metadata) without booting anything, and write the manifest a provisioner deploys it
// from. `resin up` starts from the same state, so a cluster planned here and one made
// by `up` are the same thing.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DHCP_ADDRESS } from "../bootstrap/plan.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { writeHostTls } from "../bootstrap/host-tls.js";
import { loadClusterRoles, writeConfigDrives } from "../bootstrap/config-drive.js";
import { installedImageArch, installImage, missingDiskImages, newImages } from "../cluster/images.js";
import { checkSameArches, createCluster, type CreateOptions } from "../cluster/create.js";
import type { ClusterHandle, ClusterState } from "../state/state.js";
import { imagesDir, readManifest, type ImageManifest } from "../image/manifest.js";
import { planManifest, PlanManifestSchema, type PlanManifest } from "../provider/manifest.js";
import { localMachines } from "../provider/local.js";
import { sha256 } from "../util/hash.js";
import { writeFileAtomic } from "../util/files.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";

const nodesText = (n: number) => `${n} node${n === 1 ? "" : "s"}`;

export interface PlanOptions extends Omit<CreateOptions, "disks"> {
  /** Whether --nodes / --network were given: an existing cluster must then match. */
  nodesGiven: boolean;
  networkGiven: boolean;
  /** Whether --arch was given: an existing cluster must then have those architectures. */
  archGiven?: boolean;
  /** Move an existing cluster's nodes to their roles' new images (a fresh build, or imageSet). */
  upgrade?: boolean;
  imageSet?: string;
}

/** Plan a cluster (or re-plan an existing one) and return its manifest; also written to plan.json in its state directory. */
export async function planCommand(opts: PlanOptions): Promise<PlanManifest> {
  const { cluster } = opts;
  let state = await cluster.read();
  if (state) {
    if (opts.nodesGiven && state.nodes.length !== opts.roles.length) {
      throw new ResinError(`cluster '${cluster.name}' has ${state.nodes.length} nodes, not ${opts.roles.length}`, "omit --nodes (and --roles) to plan it as it is, or use another --name");
    }
    if (opts.archGiven && opts.arches) checkSameArches(state, opts.arches, "plan");
    if (opts.networkGiven && JSON.stringify(state.network) !== JSON.stringify(opts.network)) {
      throw new ResinError(`cluster '${cluster.name}' was planned with ${state.network.mode} addresses`, "omit --network and --join to plan it as it is, or use another --name");
    }
    if (opts.upgrade) await planUpgradeOf(state, opts);
    else opts.log(`cluster ${cluster.name}: exists (${nodesText(state.nodes.length)}); writing its manifest again`);
  } else if (opts.upgrade) {
    throw new ResinError(`cluster '${cluster.name}' does not exist, so there is nothing to upgrade`, `plan it first: resin plan --name ${cluster.name}`);
  } else {
    if (opts.roles.length < 1 || opts.roles.length > 200) throw new ResinError(`${opts.roles.length} nodes is out of range`, "use 1 to 200 nodes");
    state = await createCluster({ ...opts, disks: true });
  }
  return writePlan(opts.project, cluster, state, opts.log);
}

/**
 * Point a planned cluster's nodes at their roles' new images. Its provisioner then
 * replaces the machines one at a time; nothing here touches a running machine, and
 * the images the nodes ran before stay in the cluster. A cluster running in local
 * QEMU is upgraded by `resin upgrade`, which replaces its VMs health-gated.
 */
async function planUpgradeOf(state: ClusterState, opts: PlanOptions): Promise<void> {
  if (await localMachines().anythingRunning(opts.cluster, state)) {
    throw new ResinError(`cluster '${state.name}' runs here in QEMU`, `upgrade it with \`resin upgrade --name ${state.name}\`, which replaces its VMs one at a time`);
  }
  const target = await newImages(opts.cluster, state, { ...opts, disks: true });
  const moving = state.nodes.filter((n) => target[n.role] && target[n.role] !== n.image);
  for (const node of moving) {
    node.image = target[node.role]!;
    node.arch = await installedImageArch(opts.cluster, node.image);
  }
  await opts.cluster.write(state);
  opts.log(
    moving.length === 0
      ? `cluster ${state.name}: every node already has its role's newest image`
      : `cluster ${state.name}: ${moving.length} of ${state.nodes.length} nodes move to new images (${[...new Set(moving.map((n) => `${n.role} ${n.image.slice(0, 19)}`))].join(", ")}); replace them one at a time, followers first`,
  );
}

/** Write every node's metadata (config drive and plain JSON) and the manifest that points at it. */
export async function writePlan(project: string, cluster: ClusterHandle, state: ClusterState, log: Log): Promise<PlanManifest> {
  const roles = await loadClusterRoles(project, state);
  const images = new Map<string, { dir: string; manifest: ImageManifest }>();
  for (const node of state.nodes) {
    if (images.has(node.image)) continue;
    const dir = cluster.imageDir(node.image);
    const manifest = await readManifest(dir);
    if (!manifest) throw new ResinError(`node ${node.name} boots image ${node.image}, which is missing from ${dir}`, "the cluster's state directory was changed by hand; restore it or recreate the cluster");
    await ensureDiskImages(project, cluster, state, dir, manifest);
    images.set(node.image, { dir, manifest });
  }
  await writeConfigDrives(project, cluster, state);
  const metadata = new Map<string, { path: string; sha256: string; bytes: number }>();
  for (const node of state.nodes) {
    const path = cluster.node(node.name).userData;
    const data = await readFile(path);
    metadata.set(node.name, { path, sha256: sha256(data), bytes: data.length });
  }
  const tls = await writeHostTls(cluster, await readSecrets(cluster.secrets));
  const manifest = PlanManifestSchema.parse(
    planManifest({
      state,
      images,
      vm: new Map([...roles].map(([name, role]) => [name, role.spec.vm])),
      caCertificate: tls.consul.ca,
      caCertificates: { consul: tls.consul.ca, nomad: tls.nomad.ca, vault: tls.vault.ca },
      metadata,
    }),
  );
  await writeFileAtomic(join(cluster.dir, "plan.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  const dhcp = state.nodes.some((n) => n.address === DHCP_ADDRESS);
  log(`cluster ${state.name}: ${nodesText(state.nodes.length)} planned${dhcp ? " (addresses from DHCP)" : ""}; manifest in ${join(cluster.dir, "plan.json")}`);
  return manifest;
}

/**
 * A planned cluster's provisioner boots the disk images, which `resin up` does not copy
 * into the cluster. They come from the build output when it still holds the same image.
 */
async function ensureDiskImages(project: string, cluster: ClusterHandle, state: ClusterState, dir: string, manifest: ImageManifest): Promise<void> {
  if (missingDiskImages(cluster, manifest.digest).length === 0) return;
  const built = join(imagesDir(project, state.channel), manifest.role);
  if ((await readManifest(built))?.digest !== manifest.digest) {
    throw new ResinError(
      `cluster '${state.name}': the disk images of ${manifest.role} (image ${manifest.digest}) are not in ${dir}, and ${built} now holds another build`,
      `rebuild the image the cluster runs, or plan a new cluster (resin plan --name <new>)`,
    );
  }
  await installImage(cluster, built, manifest.digest, { disks: true });
}
