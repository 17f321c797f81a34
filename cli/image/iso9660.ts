// Minimal ISO 9660 (ECMA-119) writer: one root directory holding a few files, no Rock
// Ridge or Joliet. Config drives use it plain; bootable images add an El Torito boot
// catalog (ECMA-119 + "El Torito" 1.0) whose one entry is a UEFI FAT image. Pure and
// deterministic: every date is 1970-01-01 00:00:00 GMT and files are sorted by name.
//
// Layout (2048-byte sectors), with the boot record only on a bootable image:
//   0..15  system area (zeros, or what the caller puts there, e.g. a GPT)
//   16     Primary Volume Descriptor
//  (17     El Torito Boot Record Volume Descriptor)
//   17/18  Volume Descriptor Set Terminator
//   then   type L path table, type M path table, root directory
//   then   file data, each file starting on its own sector
//
// The image is a layout (layout.ts): the descriptors, path tables and root directory
// are built in memory, each file's data (the squashfs root, say) stays where it is until
// the layout is written.
import { inMemory, layout, sizeOf, type Bytes, type Layout } from "./layout.js";

export interface IsoFile {
  name: string;
  data: Bytes;
}

/** A UEFI-bootable image: `efiImage` names the file (among `files`) holding a FAT volume with EFI/BOOT/BOOTX64.EFI. */
export interface IsoBoot {
  efiImage: string;
  /** The name the boot catalog gets in the root directory. */
  catalog: string;
}

export interface IsoOptions {
  volumeId: string;
  files: IsoFile[];
  boot?: IsoBoot;
  /**
   * What goes in the system area (at most its 16 sectors), made once the files are
   * placed: e.g. a GPT whose ESP is the boot image. Zeros when absent.
   */
  systemArea?: (placed: { extents: Record<string, IsoExtent>; sectors: number }) => Buffer;
}

/** Where a file's data starts (its sector) and how long it is. */
export interface IsoExtent {
  sector: number;
  bytes: number;
}

const SECTOR = 2048;
export const ISO_SECTOR = SECTOR;
const SYSTEM_AREA_SECTORS = 16;
const PVD_SECTOR = SYSTEM_AREA_SECTORS;
const BOOT_RECORD_SECTOR = 17;

/** Where the fixed structures go: one sector later on a bootable image, for the boot record. */
function fixedSectors(bootable: boolean) {
  const shift = bootable ? 1 : 0;
  return { terminator: 17 + shift, lPathTable: 18 + shift, mPathTable: 19 + shift, rootDir: 20 + shift, firstFile: 21 + shift };
}
// Zero padding to at least this size, as mkisofs pads by default: busybox's findfs/blkid
// reads a 68 KiB probe buffer and does not recognise a shorter volume (seen in a guest).
const MINIMUM_SECTORS = 150;

const STANDARD_ID = "CD001";
const VD_TYPE_PRIMARY = 1;
const VD_TYPE_TERMINATOR = 255;

// Primary Volume Descriptor field offsets (ECMA-119 8.4, zero-based).
const PVD = {
  type: 0,
  standardId: 1,
  version: 6,
  systemId: 8, // 32 bytes
  volumeId: 40, // 32 bytes
  volumeSpaceSize: 80, // both-endian 32
  volumeSetSize: 120, // both-endian 16
  volumeSequenceNumber: 124, // both-endian 16
  logicalBlockSize: 128, // both-endian 16
  pathTableSize: 132, // both-endian 32
  lPathTable: 140, // little-endian 32
  mPathTable: 148, // big-endian 32
  rootDirRecord: 156, // 34 bytes
  volumeSetId: 190, // 128 bytes
  publisherId: 318, // 128
  preparerId: 446, // 128
  applicationId: 574, // 128
  copyrightFileId: 702, // 37
  abstractFileId: 739, // 37
  bibliographicFileId: 776, // 37
  creationDate: 813, // 17 each
  modificationDate: 830,
  expirationDate: 847,
  effectiveDate: 864,
  fileStructureVersion: 881,
} as const;
const ID_FIELD_LENGTHS: [offset: number, length: number][] = [
  [PVD.systemId, 32],
  [PVD.volumeId, 32],
  [PVD.volumeSetId, 128],
  [PVD.publisherId, 128],
  [PVD.preparerId, 128],
  [PVD.applicationId, 128],
  [PVD.copyrightFileId, 37],
  [PVD.abstractFileId, 37],
  [PVD.bibliographicFileId, 37],
];

// Directory record field offsets (ECMA-119 9.1).
const DR = {
  length: 0,
  extAttrLength: 1,
  extent: 2, // both-endian 32
  dataLength: 10, // both-endian 32
  date: 18, // 7 bytes
  flags: 25,
  volumeSequenceNumber: 28, // both-endian 16
  idLength: 32,
  id: 33,
} as const;
const DR_FLAG_DIRECTORY = 0x02;
/** Directory-record date: years since 1900, month, day, h, m, s, GMT offset. */
const DR_DATE_1970 = [70, 1, 1, 0, 0, 0, 0];
/** PVD dates: 16 ASCII digits + GMT offset byte. */
const PVD_DATE_1970 = "1970010100000000";
const PVD_DATE_UNSET = "0000000000000000";

/** Path table with only the root: 8-byte entry header + 1-byte id + 1 pad byte. */
const PATH_TABLE_SIZE = 10;

const NAME_PATTERN = /^[a-z0-9._-]{1,30}$/;
const VOLUME_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_FILE_SIZE = 0xffffffff;

function bothEndian32(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value, offset);
  buf.writeUInt32BE(value, offset + 4);
}

function bothEndian16(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt16LE(value, offset);
  buf.writeUInt16BE(value, offset + 2);
}

/** One directory record; the identifier is padded so the record length is even. */
function directoryRecord(id: Buffer, extent: number, dataLength: number, isDir: boolean): Buffer {
  const length = DR.id + id.length + (id.length % 2 === 0 ? 1 : 0);
  const rec = Buffer.alloc(length);
  rec[DR.length] = length;
  rec[DR.extAttrLength] = 0;
  bothEndian32(rec, DR.extent, extent);
  bothEndian32(rec, DR.dataLength, dataLength);
  Buffer.from(DR_DATE_1970).copy(rec, DR.date);
  rec[DR.flags] = isDir ? DR_FLAG_DIRECTORY : 0;
  bothEndian16(rec, DR.volumeSequenceNumber, 1);
  rec[DR.idLength] = id.length;
  id.copy(rec, DR.id);
  return rec;
}

function sectorsFor(bytes: number): number {
  return Math.ceil(bytes / SECTOR);
}

function validate(opts: IsoOptions): void {
  if (!VOLUME_ID_PATTERN.test(opts.volumeId)) {
    throw new Error(`iso9660: invalid volume id ${JSON.stringify(opts.volumeId)} (1..32 of [A-Za-z0-9_-])`);
  }
  const seen = new Set<string>();
  for (const { name, data } of opts.files) {
    // A trailing "." would be dropped by Linux isofs, so the name would not read back.
    if (!NAME_PATTERN.test(name) || name.endsWith(".")) {
      throw new Error(
        `iso9660: invalid file name ${JSON.stringify(name)} (1..30 of [a-z0-9._-], not ending in ".")`,
      );
    }
    if (seen.has(name)) throw new Error(`iso9660: duplicate file name ${JSON.stringify(name)}`);
    seen.add(name);
    if (sizeOf(data) > MAX_FILE_SIZE) throw new Error(`iso9660: file ${JSON.stringify(name)} is too large`);
  }
  if (opts.boot) {
    if (!seen.has(opts.boot.efiImage)) throw new Error(`iso9660: the EFI boot image ${JSON.stringify(opts.boot.efiImage)} is not among the files`);
    if (seen.has(opts.boot.catalog) || !NAME_PATTERN.test(opts.boot.catalog)) throw new Error(`iso9660: invalid or taken boot catalog name ${JSON.stringify(opts.boot.catalog)}`);
  }
}

// El Torito (1.0) structures.
const EL_TORITO_ID = "EL TORITO SPECIFICATION";
const PLATFORM_EFI = 0xef;
const BOOTABLE = 0x88;
const NO_EMULATION = 0;

/** The boot catalog: a validation entry for the EFI platform and one no-emulation entry. */
function bootCatalog(imageSector: number, imageBytes: number): Buffer {
  const catalog = Buffer.alloc(SECTOR);
  const validation = catalog.subarray(0, 32);
  validation[0] = 1; // header id
  validation[1] = PLATFORM_EFI;
  validation[30] = 0x55;
  validation[31] = 0xaa;
  // The 16-bit words of the validation entry sum to zero.
  let sum = 0;
  for (let i = 0; i < 32; i += 2) sum = (sum + validation.readUInt16LE(i)) & 0xffff;
  validation.writeUInt16LE((0x10000 - sum) & 0xffff, 28);
  const entry = catalog.subarray(32, 64);
  entry[0] = BOOTABLE;
  entry[1] = NO_EMULATION;
  // Virtual 512-byte sectors to load: firmware treats the image as a FAT partition of this size.
  entry.writeUInt16LE(Math.min(Math.ceil(imageBytes / 512), 0xffff), 6);
  entry.writeUInt32LE(imageSector, 8);
  return catalog;
}

/**
 * Builds an ISO 9660 image with a single root directory holding `files`.
 * Names are stored as given plus ";1"; Linux (map=normal) strips the ";1" and
 * reads them back unchanged. The volume id is stored verbatim, so a lowercase
 * label such as "cidata" is what blkid reports.
 */
export function writeIso9660(opts: IsoOptions): Buffer {
  return inMemory(layoutIso9660(opts).image);
}

/** The image as a layout (its structures in memory, each file's data in place), and where each file is. */
export function layoutIso9660(opts: IsoOptions): { image: Layout; extents: Record<string, IsoExtent> } {
  validate(opts);
  const fixed = fixedSectors(opts.boot !== undefined);
  const catalogFile: IsoFile[] = opts.boot ? [{ name: opts.boot.catalog, data: Buffer.alloc(SECTOR) }] : [];
  const files = [...opts.files, ...catalogFile].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Root directory: ".", ".." (both the root itself), then one record per file.
  const records: Buffer[] = [
    directoryRecord(Buffer.from([0]), fixed.rootDir, SECTOR, true),
    directoryRecord(Buffer.from([1]), fixed.rootDir, SECTOR, true),
  ];
  let nextSector = fixed.firstFile;
  const placed: { extent: number; data: Bytes }[] = [];
  const extents: Record<string, IsoExtent> = {};
  for (const { name, data } of files) {
    const bytes = sizeOf(data);
    // Empty files take no sectors; by convention they point at extent 0.
    const extent = bytes === 0 ? 0 : nextSector;
    nextSector += sectorsFor(bytes);
    placed.push({ extent, data });
    extents[name] = { sector: extent, bytes };
    records.push(directoryRecord(Buffer.from(`${name};1`, "ascii"), extent, bytes, false));
  }
  const rootDir = Buffer.concat(records);
  if (rootDir.length > SECTOR) {
    throw new Error(`iso9660: ${files.length} files do not fit in a single directory sector`);
  }
  const totalSectors = Math.max(nextSector, MINIMUM_SECTORS);

  // Everything before the first file's data: system area, descriptors, path tables, root directory.
  const head = Buffer.alloc(fixed.firstFile * SECTOR);
  const at = (sector: number) => sector * SECTOR;

  // Path tables: a single entry for the root directory (ECMA-119 9.4).
  const lTable = head.subarray(at(fixed.lPathTable));
  lTable[0] = 1; // identifier length
  lTable.writeUInt32LE(fixed.rootDir, 2);
  lTable.writeUInt16LE(1, 6); // parent directory number: root is its own parent
  const mTable = head.subarray(at(fixed.mPathTable));
  mTable[0] = 1;
  mTable.writeUInt32BE(fixed.rootDir, 2);
  mTable.writeUInt16BE(1, 6);

  // Primary Volume Descriptor.
  const pvd = head.subarray(at(PVD_SECTOR), at(PVD_SECTOR + 1));
  pvd[PVD.type] = VD_TYPE_PRIMARY;
  pvd.write(STANDARD_ID, PVD.standardId, "ascii");
  pvd[PVD.version] = 1;
  for (const [offset, length] of ID_FIELD_LENGTHS) pvd.fill(" ", offset, offset + length);
  pvd.write(opts.volumeId, PVD.volumeId, "ascii");
  bothEndian32(pvd, PVD.volumeSpaceSize, totalSectors);
  bothEndian16(pvd, PVD.volumeSetSize, 1);
  bothEndian16(pvd, PVD.volumeSequenceNumber, 1);
  bothEndian16(pvd, PVD.logicalBlockSize, SECTOR);
  bothEndian32(pvd, PVD.pathTableSize, PATH_TABLE_SIZE);
  pvd.writeUInt32LE(fixed.lPathTable, PVD.lPathTable);
  pvd.writeUInt32BE(fixed.mPathTable, PVD.mPathTable);
  records[0]!.copy(pvd, PVD.rootDirRecord);
  // Dates are 16 digits + a zero GMT-offset byte (already zero from alloc).
  pvd.write(PVD_DATE_1970, PVD.creationDate, "ascii");
  pvd.write(PVD_DATE_1970, PVD.modificationDate, "ascii");
  pvd.write(PVD_DATE_UNSET, PVD.expirationDate, "ascii");
  pvd.write(PVD_DATE_UNSET, PVD.effectiveDate, "ascii");
  pvd[PVD.fileStructureVersion] = 1;

  if (opts.boot) {
    // Boot Record Volume Descriptor: points at the catalog, which points at the FAT image.
    const record = head.subarray(at(BOOT_RECORD_SECTOR), at(BOOT_RECORD_SECTOR + 1));
    record[0] = 0; // boot record
    record.write(STANDARD_ID, 1, "ascii");
    record[6] = 1;
    record.write(EL_TORITO_ID, 7, "ascii");
    const catalog = extents[opts.boot.catalog]!;
    record.writeUInt32LE(catalog.sector, 0x47);
    const efi = extents[opts.boot.efiImage]!;
    placed.find((p) => p.extent === catalog.sector)!.data = bootCatalog(efi.sector, efi.bytes);
  }

  // Volume Descriptor Set Terminator.
  const term = head.subarray(at(fixed.terminator));
  term[0] = VD_TYPE_TERMINATOR;
  term.write(STANDARD_ID, 1, "ascii");
  term[6] = 1;

  rootDir.copy(head, at(fixed.rootDir));
  if (opts.systemArea) {
    const area = opts.systemArea({ extents, sectors: totalSectors });
    if (area.length > at(SYSTEM_AREA_SECTORS)) throw new Error(`iso9660: ${area.length} bytes do not fit the ${at(SYSTEM_AREA_SECTORS)}-byte system area`);
    area.copy(head, 0);
  }
  const image = layout(at(totalSectors), [{ offset: 0, data: head }, ...placed.map(({ extent, data }) => ({ offset: at(extent), data }))]);
  return { image, extents };
}
