// Disk images for other hypervisors and clouds: one UEFI-bootable GPT disk holding
//
//   partition 1  "resin-esp"   EFI System Partition (FAT16): /EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI on arm64), a
//                              unified kernel image (stub + kernel + initramfs + command line)
//   partition 2  "resin-root"  the image's squashfs root filesystem, as it is
//   partition 3  "resin-verity" its dm-verity hash tree (rootfs.verity), as it is
//
// written raw (disk.raw) and as qcow2 (disk.qcow2). The firmware boots the removable-media
// path BOOTX64.EFI with no boot entry to set up; the command line names the root and its
// hash tree by their partition labels, which the initramfs /init resolves, and carries
// the root hash, so the UKI (and a signature over it) covers it. Everything is derived from the
// image's own bytes and digest, so equal images give equal disks.
//
// And a bootable ISO (disk.iso): ISO 9660 with an El Torito boot catalog whose one UEFI
// entry is a FAT image (efi.img) holding the same kind of UKI, and the squashfs root as
// the files rootfs.squashfs and rootfs.verity. Its command line names the ISO by its
// volume label and carries the root hash; /init opens the root file from it through
// dm-verity with the tree file beside it. The system area carries a GPT whose ESP is
// efi.img, so the same file also boots written to a USB stick or attached as a disk.
//
// Both are layouts (layout.ts): only GPT headers, FAT tables, ISO structures and the
// UKI's headers are built in memory; the kernel, the initramfs, the squashfs root and its tree are
// copied from their files into each output at their offsets, 1 MiB at a time.
import { createHash } from "node:crypto";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../util/errors.js";
import { sha256File } from "../util/hash.js";
import { requireTools } from "../util/tools.js";
import { layoutFat16 } from "./fat.js";
import { ALIGN_SECTORS, GPT_ATTR, GPT_TYPE, SECTOR, alignUp, derivedGuid, writeGpt } from "./gpt.js";
import { buildUki } from "./uki.js";
import { ISO_SECTOR, layoutIso9660 } from "./iso9660.js";
import { fileBytes, layout, sha256Of, sizeOf, writeLayout, type FileBytes, type Layout } from "./layout.js";
import { verityCmdline, type VerityParams } from "./verity.js";
import { ARCH, DEFAULT_ARCH, type Arch } from "../spec/arch.js";

/** The file of systemd-boot-efi the UKI is made from (a build-only file: it never enters the root filesystem). */
export const efiStubPath = (arch: Arch) => `usr/lib/systemd/boot/efi/linux${ARCH[arch].efi}.efi.stub`;
/** Where the firmware looks on removable media: EFI/BOOT/BOOTX64.EFI, EFI/BOOT/BOOTAA64.EFI. */
export const espBootPath = (arch: Arch) => `EFI/BOOT/BOOT${ARCH[arch].efi.toUpperCase()}.EFI`;
export const ROOT_PARTITION_LABEL = "resin-root";
export const ESP_PARTITION_LABEL = "resin-esp";
export const VERITY_PARTITION_LABEL = "resin-verity";
/** The same for every role but for the root hash, so a disk boots the same way everywhere. */
export const diskCmdline = (verity: VerityRoot, arch: Arch = DEFAULT_ARCH) =>
  `console=${ARCH[arch].console} panic=-1 loglevel=4 resin.root=PARTLABEL=${ROOT_PARTITION_LABEL} ${verityCmdline(verity, `PARTLABEL=${VERITY_PARTITION_LABEL}`)}`;
/** What the command lines carry of the image's dm-verity parameters. */
export type VerityRoot = Pick<VerityParams, "rootHash" | "salt" | "dataBlocks">;

/** The ISO's volume label: per image, so /init finds this ISO and not another one. */
export function isoVolumeId(digest: string): string {
  return `RESIN-${digest.replace(/^sha256:/, "").slice(0, 12)}`;
}
/** The ISO's: /init mounts it at /iso, and the tree is the file beside the root there. */
export const isoCmdline = (volumeId: string, verity: VerityRoot, arch: Arch = DEFAULT_ARCH) =>
  `console=${ARCH[arch].console} panic=-1 loglevel=4 resin.root=LABEL=${volumeId} ${verityCmdline(verity, "/iso/rootfs.verity")}`;

export interface DiskFile {
  file: string;
  sha256: string;
  size: number;
}

export interface DiskManifest {
  /** The kernel command line baked into the UKI. */
  cmdline: string;
  /** The UKI on the ESP, and the stub it was made from. */
  uki: { path: string; sha256: string; size: number; stub: string };
  diskGuid: string;
  partitions: { name: string; type: string; guid: string; firstLba: number; lastLba: number }[];
  raw: DiskFile;
  qcow2: DiskFile;
  /** The bootable ISO: its volume label and the command line its UKI boots with. */
  iso: DiskFile & { volumeId: string; cmdline: string };
}

export interface DiskInputs {
  /** Where to write disk.raw, disk.qcow2 and disk.iso. */
  dir: string;
  /** Seeds every GUID and the FAT volume id: the image digest. */
  digest: string;
  role: string;
  channel: string;
  /** The architecture: the removable-media boot path, the root partition types, the console (amd64 when absent). */
  arch?: Arch;
  /** Paths of the image's kernel, initramfs and squashfs root: read only while an output is written or hashed. */
  kernel: string;
  initrd: string;
  rootfs: string;
  /** Its dm-verity hash tree, and the parameters the command lines carry. */
  verity: string;
  verityParams: VerityRoot;
  /** The UEFI stub (small: the one payload held in memory). */
  stub: { data: Buffer; from: string };
}

export function osRelease(role: string, channel: string, digest: string): string {
  const short = digest.replace(/^sha256:/, "").slice(0, 12);
  return [
    'NAME="Resin"',
    "ID=resin",
    `PRETTY_NAME="Resin ${role} (${channel}) ${short}"`,
    `IMAGE_ID=${role}`,
    `IMAGE_VERSION=${short}`,
    "",
  ].join("\n");
}

/** The image's files, each with its size as it is now: what the layouts below are made from. */
export type ImageParts = Pick<DiskInputs, "digest" | "role" | "channel" | "stub" | "verityParams" | "arch"> & { kernel: FileBytes; initrd: FileBytes; rootfs: FileBytes; verity: FileBytes };

export async function imageParts(inputs: Omit<DiskInputs, "dir">): Promise<ImageParts> {
  return { ...inputs, kernel: await fileBytes(inputs.kernel), initrd: await fileBytes(inputs.initrd), rootfs: await fileBytes(inputs.rootfs), verity: await fileBytes(inputs.verity) };
}

/**
 * A FAT volume holding /EFI/BOOT/BOOTX64.EFI: the image's unified kernel image with
 * `cmdline`. Its volume id comes from the digest and `purpose`, so it is reproducible
 * and differs between the disk's ESP and the ISO's boot image.
 */
async function efiVolume(inputs: ImageParts, cmdline: string, fat: { label: string; purpose: string; hiddenSectors?: number }): Promise<{ uki: Layout; fat: Layout }> {
  const uki = await buildUki({ stub: inputs.stub.data, machine: ARCH[inputs.arch ?? DEFAULT_ARCH].peMachine, kernel: inputs.kernel, initrd: inputs.initrd, cmdline, osRelease: osRelease(inputs.role, inputs.channel, inputs.digest) });
  const volumeId = createHash("sha256").update(`${inputs.digest}\0${fat.purpose}`).digest().readUInt32LE(0);
  return { uki, fat: layoutFat16({ files: [{ path: espBootPath(inputs.arch ?? DEFAULT_ARCH), data: uki }], label: fat.label, volumeId, hiddenSectors: fat.hiddenSectors }) };
}

/** Lay out the disk: GPT, the ESP, the root partition, its hash tree's; `image` is what disk.raw holds. */
export async function diskLayout(inputs: ImageParts) {
  const espStart = ALIGN_SECTORS;
  const arch = inputs.arch ?? DEFAULT_ARCH;
  const { uki, fat: esp } = await efiVolume(inputs, diskCmdline(inputs.verityParams, arch), { label: "RESIN-ESP", purpose: "esp-volume-id", hiddenSectors: espStart });
  const espSectors = esp.size / SECTOR;
  const rootStart = espStart + espSectors;
  const rootSectors = alignUp(inputs.rootfs.size, ALIGN_SECTORS * SECTOR) / SECTOR;
  const verityStart = rootStart + rootSectors;
  const veritySectors = alignUp(inputs.verity.size, ALIGN_SECTORS * SECTOR) / SECTOR;
  // The last MiB holds the backup GPT.
  const sectors = verityStart + veritySectors + ALIGN_SECTORS;
  const partitions = [
    { name: ESP_PARTITION_LABEL, type: GPT_TYPE.esp, guid: derivedGuid(inputs.digest, "esp"), firstLba: espStart, lastLba: espStart + espSectors - 1 },
    { name: ROOT_PARTITION_LABEL, type: ARCH[arch].gptRoot, guid: derivedGuid(inputs.digest, "root"), firstLba: rootStart, lastLba: rootStart + rootSectors - 1, attributes: GPT_ATTR.readOnly },
    { name: VERITY_PARTITION_LABEL, type: ARCH[arch].gptRootVerity, guid: derivedGuid(inputs.digest, "root-verity"), firstLba: verityStart, lastLba: verityStart + veritySectors - 1, attributes: GPT_ATTR.readOnly },
  ];
  const diskGuid = derivedGuid(inputs.digest, "disk");
  const gpt = writeGpt({ diskGuid, sectors, partitions });
  return {
    uki,
    diskGuid,
    partitions,
    image: layout(sectors * SECTOR, [
      { offset: 0, data: gpt.head },
      { offset: espStart * SECTOR, data: esp },
      { offset: rootStart * SECTOR, data: inputs.rootfs },
      { offset: verityStart * SECTOR, data: inputs.verity },
      { offset: gpt.tailLba * SECTOR, data: gpt.tail },
    ]),
  };
}

/** The bootable ISO: El Torito UEFI catalog, efi.img, rootfs.squashfs, rootfs.verity, and a hybrid GPT. */
export async function isoLayout(inputs: ImageParts): Promise<{ image: Layout; volumeId: string; uki: Layout }> {
  const volumeId = isoVolumeId(inputs.digest);
  const { uki, fat: efi } = await efiVolume(inputs, isoCmdline(volumeId, inputs.verityParams, inputs.arch), { label: "RESIN-EFI", purpose: "iso-esp-volume-id" });
  // The GPT: its header and entries fit the ISO's 32 KiB system area, its backup goes
  // after the ISO volume, where ISO readers do not look.
  const tailSectors = 33;
  const perIsoSector = ISO_SECTOR / SECTOR;
  let tail: { offset: number; data: Buffer } | undefined;
  const { image: iso } = layoutIso9660({
    volumeId,
    files: [
      { name: "efi.img", data: efi },
      { name: "rootfs.squashfs", data: inputs.rootfs },
      { name: "rootfs.verity", data: inputs.verity },
    ],
    boot: { efiImage: "efi.img", catalog: "boot.cat" },
    systemArea: ({ extents, sectors: isoSectors }) => {
      const esp = extents["efi.img"]!;
      const gpt = writeGpt({
        diskGuid: derivedGuid(inputs.digest, "iso-disk"),
        sectors: isoSectors * perIsoSector + tailSectors,
        partitions: [
          {
            name: ESP_PARTITION_LABEL,
            type: GPT_TYPE.esp,
            guid: derivedGuid(inputs.digest, "iso-esp"),
            firstLba: esp.sector * perIsoSector,
            lastLba: esp.sector * perIsoSector + Math.ceil(esp.bytes / SECTOR) - 1,
          },
        ],
      });
      if (gpt.head.length > 16 * ISO_SECTOR) throw new Error("disk.iso: the GPT does not fit the ISO system area");
      tail = { offset: gpt.tailLba * SECTOR, data: gpt.tail };
      return gpt.head;
    },
  });
  const image = layout(iso.size + tailSectors * SECTOR, [{ offset: 0, data: iso }, tail!]);
  return { image, volumeId, uki };
}

/** Write disk.raw (sparse where it is zero), disk.qcow2 and disk.iso into `inputs.dir`. */
export async function writeDisks(inputs: DiskInputs): Promise<DiskManifest> {
  requireTools(["qemu-img"]);
  const parts = await imageParts(inputs);
  const disk = await diskLayout(parts);
  const rawPath = join(inputs.dir, "disk.raw");
  const qcowPath = join(inputs.dir, "disk.qcow2");
  await writeLayout(rawPath, disk.image);
  // Options pinned, so another qemu-img's defaults do not change the bytes.
  await rm(qcowPath, { force: true });
  const convert = await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1,cluster_size=65536,lazy_refcounts=off,refcount_bits=16", rawPath, qcowPath], { reject: false });
  if (convert.exitCode !== 0) throw new ResinError(`qemu-img convert failed: ${convert.stderr || convert.stdout}`, "install qemu-utils (apt-get install qemu-utils)");
  const iso = await isoLayout(parts);
  await writeLayout(join(inputs.dir, "disk.iso"), iso.image);
  const described = async (path: string, file: string): Promise<DiskFile> => ({ file, sha256: await sha256File(path), size: (await stat(path)).size });
  return {
    cmdline: diskCmdline(inputs.verityParams, inputs.arch),
    uki: { path: espBootPath(inputs.arch ?? DEFAULT_ARCH), sha256: await sha256Of(disk.uki), size: sizeOf(disk.uki), stub: inputs.stub.from },
    diskGuid: disk.diskGuid,
    partitions: disk.partitions.map(({ name, type, guid, firstLba, lastLba }) => ({ name, type, guid, firstLba, lastLba })),
    raw: await described(rawPath, "disk.raw"),
    qcow2: await described(qcowPath, "disk.qcow2"),
    iso: { ...(await described(join(inputs.dir, "disk.iso"), "disk.iso")), volumeId: iso.volumeId, cmdline: isoCmdline(iso.volumeId, inputs.verityParams, inputs.arch) },
  };
}
