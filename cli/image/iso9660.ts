// Minimal ISO 9660 (ECMA-119) writer for cloud-init style config drives: one root
// directory holding a few small files, no Rock Ridge or Joliet. Pure and
// deterministic: every date is 1970-01-01 00:00:00 GMT and files are sorted by name.
//
// Layout (2048-byte sectors):
//   0..15  system area (zeros)
//   16     Primary Volume Descriptor
//   17     Volume Descriptor Set Terminator
//   18     type L path table (little-endian)
//   19     type M path table (big-endian)
//   20     root directory
//   21..   file data, each file starting on its own sector

export interface IsoFile {
  name: string;
  data: Buffer;
}

const SECTOR = 2048;
const SYSTEM_AREA_SECTORS = 16;
const PVD_SECTOR = SYSTEM_AREA_SECTORS; // the system area is left zeroed
const TERMINATOR_SECTOR = 17;
const L_PATH_TABLE_SECTOR = 18;
const M_PATH_TABLE_SECTOR = 19;
const ROOT_DIR_SECTOR = 20;
const FIRST_FILE_SECTOR = 21;
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

function validate(opts: { volumeId: string; files: IsoFile[] }): void {
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
    if (data.length > MAX_FILE_SIZE) throw new Error(`iso9660: file ${JSON.stringify(name)} is too large`);
  }
}

/**
 * Builds an ISO 9660 image with a single root directory holding `files`.
 * Names are stored as given plus ";1"; Linux (map=normal) strips the ";1" and
 * reads them back unchanged. The volume id is stored verbatim, so a lowercase
 * label such as "cidata" is what blkid reports.
 */
export function writeIso9660(opts: { volumeId: string; files: IsoFile[] }): Buffer {
  validate(opts);
  const files = [...opts.files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Root directory: ".", ".." (both the root itself), then one record per file.
  const records: Buffer[] = [
    directoryRecord(Buffer.from([0]), ROOT_DIR_SECTOR, SECTOR, true),
    directoryRecord(Buffer.from([1]), ROOT_DIR_SECTOR, SECTOR, true),
  ];
  let nextSector = FIRST_FILE_SECTOR;
  const placed: { extent: number; data: Buffer }[] = [];
  for (const { name, data } of files) {
    // Empty files take no sectors; by convention they point at extent 0.
    const extent = data.length === 0 ? 0 : nextSector;
    nextSector += sectorsFor(data.length);
    placed.push({ extent, data });
    records.push(directoryRecord(Buffer.from(`${name};1`, "ascii"), extent, data.length, false));
  }
  const rootDir = Buffer.concat(records);
  if (rootDir.length > SECTOR) {
    throw new Error(`iso9660: ${files.length} files do not fit in a single directory sector`);
  }
  const totalSectors = Math.max(nextSector, MINIMUM_SECTORS);

  const image = Buffer.alloc(totalSectors * SECTOR);
  const at = (sector: number) => sector * SECTOR;

  // Path tables: a single entry for the root directory (ECMA-119 9.4).
  const lTable = image.subarray(at(L_PATH_TABLE_SECTOR));
  lTable[0] = 1; // identifier length
  lTable.writeUInt32LE(ROOT_DIR_SECTOR, 2);
  lTable.writeUInt16LE(1, 6); // parent directory number: root is its own parent
  const mTable = image.subarray(at(M_PATH_TABLE_SECTOR));
  mTable[0] = 1;
  mTable.writeUInt32BE(ROOT_DIR_SECTOR, 2);
  mTable.writeUInt16BE(1, 6);

  // Primary Volume Descriptor.
  const pvd = image.subarray(at(PVD_SECTOR), at(PVD_SECTOR + 1));
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
  pvd.writeUInt32LE(L_PATH_TABLE_SECTOR, PVD.lPathTable);
  pvd.writeUInt32BE(M_PATH_TABLE_SECTOR, PVD.mPathTable);
  records[0]!.copy(pvd, PVD.rootDirRecord);
  // Dates are 16 digits + a zero GMT-offset byte (already zero from alloc).
  pvd.write(PVD_DATE_1970, PVD.creationDate, "ascii");
  pvd.write(PVD_DATE_1970, PVD.modificationDate, "ascii");
  pvd.write(PVD_DATE_UNSET, PVD.expirationDate, "ascii");
  pvd.write(PVD_DATE_UNSET, PVD.effectiveDate, "ascii");
  pvd[PVD.fileStructureVersion] = 1;

  // Volume Descriptor Set Terminator.
  const term = image.subarray(at(TERMINATOR_SECTOR));
  term[0] = VD_TYPE_TERMINATOR;
  term.write(STANDARD_ID, 1, "ascii");
  term[6] = 1;

  rootDir.copy(image, at(ROOT_DIR_SECTOR));
  for (const { extent, data } of placed) data.copy(image, at(extent));
  return image;
}
