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
import { createHash } from "node:crypto";
import { open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import { writeFat16 } from "./fat.js";
import { ALIGN_SECTORS, GPT_ATTR, GPT_TYPE, SECTOR, alignUp, derivedGuid, writeGpt } from "./gpt.js";
import { buildUki } from "./uki.js";

/** The file of systemd-boot-efi the UKI is made from (a build-only file: it never enters the root filesystem). */
export const EFI_STUB_PATH = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
export const ROOT_PARTITION_LABEL = "resin-root";
export const ESP_PARTITION_LABEL = "resin-esp";
/** Fixed: the same for every role, so a disk boots the same way everywhere. */
export const DISK_CMDLINE = `console=ttyS0 panic=-1 loglevel=4 resin.root=PARTLABEL=${ROOT_PARTITION_LABEL}`;
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
}

export interface DiskInputs {
  /** Where to write disk.raw and disk.qcow2. */
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

/** Lay out the disk and return its pieces by byte offset (the rest are zeros). */
export function diskLayout(inputs: Pick<DiskInputs, "digest" | "role" | "channel" | "kernel" | "initrd" | "rootfs" | "stub">) {
  const uki = buildUki({
    stub: inputs.stub.data,
    kernel: inputs.kernel,
    initrd: inputs.initrd,
    cmdline: DISK_CMDLINE,
    osRelease: osRelease(inputs.role, inputs.channel, inputs.digest),
  });
  const espStart = ALIGN_SECTORS;
  const volumeId = createHash("sha256").update(`${inputs.digest}\0esp-volume-id`).digest().readUInt32LE(0);
  const esp = writeFat16({ files: [{ path: ESP_BOOT_PATH, data: uki }], label: "RESIN-ESP", volumeId, hiddenSectors: espStart });
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
  };
}
