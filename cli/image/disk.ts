// Disk images for other hypervisors and clouds: one UEFI-bootable GPT disk holding
//
//   partition 1  "resin-esp"   EFI System Partition (FAT16): /EFI/BOOT/BOOTX64.EFI, a
//                              unified kernel image (stub + kernel + initramfs + command line)
//   partition 2  "resin-root"  the image's squashfs root filesystem, as it is
//
// written raw (disk.raw) and as qcow2 (disk.qcow2). The firmware boots the removable-media
// path BOOTX64.EFI with no boot entry to set up; the command line names the root by its
// partition label, which the initramfs /init resolves. Everything is derived from the
// image's own bytes and digest, so equal images give equal disks.
//
// And a bootable ISO (disk.iso): ISO 9660 with an El Torito boot catalog whose one UEFI
// entry is a FAT image (efi.img) holding the same kind of UKI, and the squashfs root as
// the file rootfs.squashfs. Its command line names the ISO by its volume label; /init
// mounts it and the root file from it. The system area carries a GPT whose ESP is
// efi.img, so the same file also boots written to a USB stick or attached as a disk.
import { createHash } from "node:crypto";
import { open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import { writeFat16 } from "./fat.js";
import { ALIGN_SECTORS, GPT_ATTR, GPT_TYPE, SECTOR, alignUp, derivedGuid, writeGpt } from "./gpt.js";
import { buildUki } from "./uki.js";
import { ISO_SECTOR, layoutIso9660 } from "./iso9660.js";

/** The file of systemd-boot-efi the UKI is made from (a build-only file: it never enters the root filesystem). */
export const EFI_STUB_PATH = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
export const ROOT_PARTITION_LABEL = "resin-root";
export const ESP_PARTITION_LABEL = "resin-esp";
/** Fixed: the same for every role, so a disk boots the same way everywhere. */
export const DISK_CMDLINE = `console=ttyS0 panic=-1 loglevel=4 resin.root=PARTLABEL=${ROOT_PARTITION_LABEL}`;

/** The ISO's volume label: per image, so /init finds this ISO and not another one. */
export function isoVolumeId(digest: string): string {
  return `RESIN-${digest.replace(/^sha256:/, "").slice(0, 12)}`;
}
export const isoCmdline = (volumeId: string) => `console=ttyS0 panic=-1 loglevel=4 resin.root=LABEL=${volumeId}`;
const ESP_BOOT_PATH = "EFI/BOOT/BOOTX64.EFI";

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
  kernel: Buffer;
  initrd: Buffer;
  rootfs: Buffer;
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

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

type ImageParts = Pick<DiskInputs, "digest" | "role" | "channel" | "kernel" | "initrd" | "rootfs" | "stub">;

/**
 * A FAT volume holding /EFI/BOOT/BOOTX64.EFI: the image's unified kernel image with
 * `cmdline`. Its volume id comes from the digest and `purpose`, so it is reproducible
 * and differs between the disk's ESP and the ISO's boot image.
 */
function efiVolume(inputs: ImageParts, cmdline: string, fat: { label: string; purpose: string; hiddenSectors?: number }): { uki: Buffer; fat: Buffer } {
  const uki = buildUki({ stub: inputs.stub.data, kernel: inputs.kernel, initrd: inputs.initrd, cmdline, osRelease: osRelease(inputs.role, inputs.channel, inputs.digest) });
  const volumeId = createHash("sha256").update(`${inputs.digest}\0${fat.purpose}`).digest().readUInt32LE(0);
  return { uki, fat: writeFat16({ files: [{ path: ESP_BOOT_PATH, data: uki }], label: fat.label, volumeId, hiddenSectors: fat.hiddenSectors }) };
}

/** Lay out the disk and return its pieces by byte offset (the rest are zeros). */
export function diskLayout(inputs: ImageParts) {
  const espStart = ALIGN_SECTORS;
  const { uki, fat: esp } = efiVolume(inputs, DISK_CMDLINE, { label: "RESIN-ESP", purpose: "esp-volume-id", hiddenSectors: espStart });
  const espSectors = esp.length / SECTOR;
  const rootStart = espStart + espSectors;
  const rootSectors = alignUp(inputs.rootfs.length, ALIGN_SECTORS * SECTOR) / SECTOR;
  // The last MiB holds the backup GPT.
  const sectors = rootStart + rootSectors + ALIGN_SECTORS;
  const partitions = [
    { name: ESP_PARTITION_LABEL, type: GPT_TYPE.esp, guid: derivedGuid(inputs.digest, "esp"), firstLba: espStart, lastLba: espStart + espSectors - 1 },
    { name: ROOT_PARTITION_LABEL, type: GPT_TYPE.rootX86_64, guid: derivedGuid(inputs.digest, "root"), firstLba: rootStart, lastLba: rootStart + rootSectors - 1, attributes: GPT_ATTR.readOnly },
  ];
  const diskGuid = derivedGuid(inputs.digest, "disk");
  const gpt = writeGpt({ diskGuid, sectors, partitions });
  return {
    uki,
    diskGuid,
    partitions,
    size: sectors * SECTOR,
    pieces: [
      { offset: 0, data: gpt.head },
      { offset: espStart * SECTOR, data: esp },
      { offset: rootStart * SECTOR, data: inputs.rootfs },
      { offset: gpt.tailLba * SECTOR, data: gpt.tail },
    ],
  };
}

/** The bootable ISO's bytes: El Torito UEFI catalog, efi.img, rootfs.squashfs, and a hybrid GPT. */
export function isoImage(inputs: ImageParts): { image: Buffer; volumeId: string; uki: Buffer } {
  const volumeId = isoVolumeId(inputs.digest);
  const { uki, fat: efi } = efiVolume(inputs, isoCmdline(volumeId), { label: "RESIN-EFI", purpose: "iso-esp-volume-id" });
  const { image: iso, extents } = layoutIso9660({
    volumeId,
    files: [
      { name: "efi.img", data: efi },
      { name: "rootfs.squashfs", data: inputs.rootfs },
    ],
    boot: { efiImage: "efi.img", catalog: "boot.cat" },
  });
  // The GPT: its header and entries fit the ISO's 32 KiB system area, its backup goes
  // after the ISO volume, where ISO readers do not look.
  const isoSectors = iso.length / SECTOR;
  const tailSectors = 33;
  const sectors = isoSectors + tailSectors;
  const perIsoSector = ISO_SECTOR / SECTOR;
  const esp = extents["efi.img"]!;
  const gpt = writeGpt({
    diskGuid: derivedGuid(inputs.digest, "iso-disk"),
    sectors,
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
  const image = Buffer.alloc(sectors * SECTOR);
  iso.copy(image);
  gpt.head.copy(image, 0);
  gpt.tail.copy(image, gpt.tailLba * SECTOR);
  return { image, volumeId, uki };
}

/** Write disk.raw (sparse where it is zero) and disk.qcow2 into `inputs.dir`. */
export async function writeDisks(inputs: DiskInputs): Promise<DiskManifest> {
  requireTools(["qemu-img"]);
  const layout = diskLayout(inputs);
  const rawPath = join(inputs.dir, "disk.raw");
  const qcowPath = join(inputs.dir, "disk.qcow2");
  const handle = await open(rawPath, "w");
  try {
    for (const { offset, data } of layout.pieces) await handle.write(data, 0, data.length, offset);
    await handle.truncate(layout.size);
  } finally {
    await handle.close();
  }
  // Options pinned, so another qemu-img's defaults do not change the bytes.
  await rm(qcowPath, { force: true });
  const convert = await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1,cluster_size=65536,lazy_refcounts=off,refcount_bits=16", rawPath, qcowPath], { reject: false });
  if (convert.exitCode !== 0) throw new ResinError(`qemu-img convert failed: ${convert.stderr || convert.stdout}`, "install qemu-utils (apt-get install qemu-utils)");
  const iso = isoImage(inputs);
  await writeFile(join(inputs.dir, "disk.iso"), iso.image);
  const described = async (path: string, file: string): Promise<DiskFile> => {
    const data = await readFile(path);
    return { file, sha256: sha256(data), size: data.length };
  };
  return {
    cmdline: DISK_CMDLINE,
    uki: { path: ESP_BOOT_PATH, sha256: sha256(layout.uki), size: layout.uki.length, stub: inputs.stub.from },
    diskGuid: layout.diskGuid,
    partitions: layout.partitions.map(({ name, type, guid, firstLba, lastLba }) => ({ name, type, guid, firstLba, lastLba })),
    raw: await described(rawPath, "disk.raw"),
    qcow2: await described(qcowPath, "disk.qcow2"),
    iso: { ...(await described(join(inputs.dir, "disk.iso"), "disk.iso")), volumeId: iso.volumeId, cmdline: isoCmdline(iso.volumeId) },
  };
}
