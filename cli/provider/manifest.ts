// The cluster manifest: what any provisioner (Terraform, a script, another tool) needs to
// run a planned cluster on its own infrastructure. Per role the image files and their
// digests, per node its name, role, addresses and metadata bundle (the same LinuxKit
// JSON a config drive carries). It names files by absolute path and holds no secret
// itself; the metadata files it points to do (0600). Terraform reads it with
// jsondecode(file(...)); `resin plan --json` writes it.
import { z } from "zod";
import { CHANNELS } from "../spec/schema.js";
import type { ClusterState } from "../state/state.js";
import { servicePorts, type ImageManifest } from "../image/manifest.js";
import { ARCH, ArchSchema, archOf, type Arch } from "../spec/arch.js";

export const MANIFEST_FORMAT = "resin-plan/1";

const FileRefSchema = z.object({
  path: z.string().startsWith("/"),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

export const PlanManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  cluster: z.object({
    name: z.string(),
    datacenter: z.string(),
    channel: z.enum(CHANNELS),
    /** static: the plan's addresses on `subnet`; dhcp: the network assigns them and agents find each other by `join`. */
    network: z.union([
      z.object({ mode: z.literal("static"), subnet: z.string() }),
      z.object({ mode: z.literal("dhcp"), join: z.string() }),
    ]),
    /** Consul's CA certificate, for clients (never its key); kept from when one CA served every product. */
    caCertificate: z.string().startsWith("/"),
    /** Each product's CA certificate (each product trusts only its own). */
    caCertificates: z.object({ consul: z.string().startsWith("/"), nomad: z.string().startsWith("/"), vault: z.string().startsWith("/") }),
  }),
  roles: z.record(
    z.string(),
    z.object({
      image: z.object({
        digest: z.string(),
        dir: z.string().startsWith("/"),
        /** verity: rootfs's dm-verity hash device (absent for images built before Resin wrote one). */
        files: z.object({ kernel: FileRefSchema, initrd: FileRefSchema, rootfs: FileRefSchema, verity: FileRefSchema.optional(), disk_raw: FileRefSchema, disk_qcow2: FileRefSchema, disk_iso: FileRefSchema }),
        /** What `veritysetup open ROOTFS NAME VERITY ROOT_HASH` needs: the root hash; salt, block sizes and the rest are in the hash device's superblock. */
        verity: z.object({ rootHash: z.string().regex(/^[0-9a-f]{64}$/), salt: z.string().regex(/^[0-9a-f]{64}$/), hashAlgorithm: z.string(), dataBlockSize: z.number().int(), hashBlockSize: z.number().int(), dataBlocks: z.number().int() }).optional(),
        /** The kernel command line the disk images boot with. */
        cmdline: z.string(),
        /** resin build --sign: the fingerprint (sha256 of the DER) of the certificate its disk images' UKIs are signed for; absent: unsigned. */
        signature: z.object({ certSha256: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
      }),
      vm: z.object({ memory_mib: z.number().int(), cpus: z.number().int(), persist_disk_gib: z.number().int() }),
      /** The image's architecture, and what a provisioner needs of it (from cli/spec/arch.ts): provisioners look these up, never branch. */
      arch: ArchSchema,
      platform: z.object({
        aws: z.object({ architecture: z.string(), instance_type: z.string() }),
        libvirt: z.object({ arch: z.string(), machine: z.string() }),
      }),
      /** Guest ports by "<service>.<name>", e.g. "consul.https": 8501. */
      ports: z.record(z.string(), z.number().int()),
    }),
  ),
  nodes: z.array(
    z.object({
      name: z.string(),
      index: z.number().int(),
      role: z.string(),
      /** Null on a dhcp cluster. */
      address: z.string().nullable(),
      prefix: z.number().int().nullable(),
      macs: z.object({ cluster: z.string(), host: z.string() }),
      metadata: FileRefSchema,
    }),
  ),
});
export type PlanManifest = z.infer<typeof PlanManifestSchema>;

export interface ManifestInputs {
  state: ClusterState;
  /** Per image digest: its manifest and the directory holding its files. */
  images: Map<string, { dir: string; manifest: ImageManifest }>;
  /** Per role, its VM size. */
  vm: Map<string, { memory_mib: number; cpus: number; persist_disk_gib: number }>;
  caCertificate: string;
  caCertificates: { consul: string; nomad: string; vault: string };
  /** Per node, its metadata file. */
  metadata: Map<string, { path: string; sha256: string; bytes: number }>;
}

/** Pure: the manifest for a cluster's state and the files already written for it. */
export function planManifest(inputs: ManifestInputs): PlanManifest {
  const { state } = inputs;
  const roles: PlanManifest["roles"] = {};
  for (const node of state.nodes) {
    if (roles[node.role]) continue;
    const image = inputs.images.get(node.image);
    if (!image) throw new Error(`no image ${node.image} for role ${node.role}`);
    const m = image.manifest;
    const ref = (file: string, sha256: string, bytes: number) => ({ path: `${image.dir}/${file}`, sha256, bytes });
    roles[node.role] = {
      image: {
        digest: m.digest,
        dir: image.dir,
        files: {
          kernel: ref("vmlinuz", m.kernel.sha256, m.kernel.size),
          initrd: ref("initrd.img", m.initrd.sha256, m.initrd.size),
          rootfs: ref("rootfs.squashfs", m.rootfs.sha256, m.rootfs.size),
          ...(m.verity ? { verity: ref("rootfs.verity", m.verity.sha256, m.verity.size) } : {}),
          disk_raw: ref("disk.raw", m.disk.raw.sha256, m.disk.raw.size),
          disk_qcow2: ref("disk.qcow2", m.disk.qcow2.sha256, m.disk.qcow2.size),
          disk_iso: ref("disk.iso", m.disk.iso.sha256, m.disk.iso.size),
        },
        cmdline: m.disk.cmdline,
        ...(m.verity
          ? { verity: { rootHash: m.verity.rootHash, salt: m.verity.salt, hashAlgorithm: m.verity.hashAlgorithm, dataBlockSize: m.verity.dataBlockSize, hashBlockSize: m.verity.hashBlockSize, dataBlocks: m.verity.dataBlocks } }
          : {}),
        ...(m.disk.signature ? { signature: { certSha256: m.disk.signature.certSha256 } } : {}),
      },
      vm: inputs.vm.get(node.role)!,
      arch: archOf(m),
      platform: platformOf(archOf(m)),
      ports: servicePorts(m),
    };
  }
  const dhcp = state.network.mode === "dhcp";
  return {
    format: MANIFEST_FORMAT,
    cluster: {
      name: state.name,
      datacenter: state.datacenter,
      channel: state.channel,
      network: state.network.mode === "dhcp" ? { mode: "dhcp", join: state.network.join } : { mode: "static", subnet: state.subnet },
      caCertificate: inputs.caCertificate,
      caCertificates: inputs.caCertificates,
    },
    roles,
    nodes: state.nodes.map((node) => ({
      name: node.name,
      index: node.index,
      role: node.role,
      address: dhcp ? null : node.address,
      prefix: dhcp ? null : node.prefix,
      macs: { cluster: node.clusterMac, host: node.hostMac },
      metadata: inputs.metadata.get(node.name)!,
    })),
  };
}

/** What a provisioner needs to know of an architecture: AWS's AMI architecture and default instance type, libvirt's arch and machine. Pure. */
export function platformOf(arch: Arch) {
  const a = ARCH[arch];
  return { aws: { architecture: a.awsArchitecture, instance_type: a.awsInstanceType }, libvirt: { arch: a.libvirtArch, machine: a.qemuMachine } };
}
