// GUID Partition Table writer (UEFI 2.10, chapter 5): a protective MBR, the primary
// header and entry array at the start of the disk, and their backup copies at the end.
// Pure and deterministic: every GUID is given by the caller (the image stage derives
// them from the image digest), so equal inputs give equal bytes.
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

export const SECTOR = 512;
/** Entries in each partition array: 128 × 128 bytes = 32 sectors, the usual size. */
const ENTRY_COUNT = 128;
const ENTRY_SIZE = 128;
const ARRAY_SECTORS = (ENTRY_COUNT * ENTRY_SIZE) / SECTOR;
const HEADER_SIZE = 92;
/** Partitions start on 1 MiB boundaries, as every current partitioning tool does. */
export const ALIGN_SECTORS = (1024 * 1024) / SECTOR;

/** Partition type GUIDs. */
export const GPT_TYPE = {
  /** EFI System Partition. */
  esp: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
  /** Root partition for x86-64 (UAPI Discoverable Partitions Specification). */
  rootX86_64: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
  /** Its dm-verity hash tree (the same specification's root verity partition for x86-64). */
  rootVerityX86_64: "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
} as const;

/** Attribute bits of a partition entry. */
export const GPT_ATTR = {
  /** Bit 60: read-only (Discoverable Partitions Specification, for root partitions). */
  readOnly: 1n << 60n,
} as const;

export interface GptPartition {
  /** Partition type GUID, e.g. GPT_TYPE.esp. */
  type: string;
  /** Unique partition GUID. */
  guid: string;
  /** GPT partition name (at most 36 UTF-16 code units); Linux shows it as PARTNAME / PARTLABEL. */
  name: string;
  firstLba: number;
  /** Inclusive. */
  lastLba: number;
  attributes?: bigint;
}

export interface GptLayout {
  diskGuid: string;
  /** Size of the whole disk in sectors. */
  sectors: number;
  partitions: GptPartition[];
}

const GUID_PATTERN = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;

/** A GUID's on-disk bytes: the first three fields little-endian, the last two as written. */
export function guidBytes(guid: string): Buffer {
  if (!GUID_PATTERN.test(guid)) throw new Error(`gpt: invalid GUID ${JSON.stringify(guid)}`);
  const hex = guid.replaceAll("-", "");
  const b = Buffer.from(hex, "hex");
  return Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8, 16),
  ]);
}

/** Read back a GUID from its on-disk bytes (the inverse of guidBytes). */
export function guidString(bytes: Buffer): string {
  const hex = Buffer.concat([
    Buffer.from(bytes.subarray(0, 4)).reverse(),
    Buffer.from(bytes.subarray(4, 6)).reverse(),
    Buffer.from(bytes.subarray(6, 8)).reverse(),
    bytes.subarray(8, 16),
  ]).toString("hex").toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A GUID that depends only on `seed` and `purpose`: the first 16 bytes of their
 * sha256, marked as an RFC 4122 version 4 (random-form) GUID so tools accept it.
 */
export function derivedGuid(seed: string, purpose: string): string {
  const b = createHash("sha256").update(`${seed}\0${purpose}`).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = b.toString("hex").toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const alignUp = (value: number, to: number) => Math.ceil(value / to) * to;

/** First sector a partition may use, and the last, on a disk of `sectors` sectors. */
export function usableRange(sectors: number): { first: number; last: number } {
  return { first: 2 + ARRAY_SECTORS, last: sectors - 2 - ARRAY_SECTORS };
}

function validate(layout: GptLayout): void {
  const { first, last } = usableRange(layout.sectors);
  if (!Number.isSafeInteger(layout.sectors) || layout.sectors < 2 * (2 + ARRAY_SECTORS)) throw new Error(`gpt: a disk of ${layout.sectors} sectors is too small`);
  if (layout.partitions.length > ENTRY_COUNT) throw new Error(`gpt: at most ${ENTRY_COUNT} partitions`);
  const sorted = [...layout.partitions].sort((a, b) => a.firstLba - b.firstLba);
  sorted.forEach((p, i) => {
    if (!Number.isSafeInteger(p.firstLba) || !Number.isSafeInteger(p.lastLba) || p.firstLba > p.lastLba) throw new Error(`gpt: partition '${p.name}' has an empty or invalid range ${p.firstLba}..${p.lastLba}`);
    if (p.firstLba < first || p.lastLba > last) throw new Error(`gpt: partition '${p.name}' (${p.firstLba}..${p.lastLba}) is outside the usable sectors ${first}..${last}`);
    const previous = sorted[i - 1];
    if (previous && previous.lastLba >= p.firstLba) throw new Error(`gpt: partitions '${previous.name}' and '${p.name}' overlap`);
    if (p.name.length > 36) throw new Error(`gpt: partition name '${p.name}' is longer than 36 characters`);
    guidBytes(p.type);
    guidBytes(p.guid);
  });
  guidBytes(layout.diskGuid);
}

function entryArray(partitions: GptPartition[]): Buffer {
  const array = Buffer.alloc(ENTRY_COUNT * ENTRY_SIZE);
  partitions.forEach((p, i) => {
    const e = array.subarray(i * ENTRY_SIZE, (i + 1) * ENTRY_SIZE);
    guidBytes(p.type).copy(e, 0);
    guidBytes(p.guid).copy(e, 16);
    e.writeBigUInt64LE(BigInt(p.firstLba), 32);
    e.writeBigUInt64LE(BigInt(p.lastLba), 40);
    e.writeBigUInt64LE(p.attributes ?? 0n, 48);
    e.write(p.name, 56, 72, "utf16le");
  });
  return array;
}

function header(layout: GptLayout, myLba: number, alternateLba: number, entriesLba: number, arrayCrc: number): Buffer {
  const { first, last } = usableRange(layout.sectors);
  const h = Buffer.alloc(SECTOR);
  h.write("EFI PART", 0, "ascii");
  h.writeUInt32LE(0x00010000, 8); // revision 1.0
  h.writeUInt32LE(HEADER_SIZE, 12);
  // 16: header CRC32, filled in last; 20: reserved
  h.writeBigUInt64LE(BigInt(myLba), 24);
  h.writeBigUInt64LE(BigInt(alternateLba), 32);
  h.writeBigUInt64LE(BigInt(first), 40);
  h.writeBigUInt64LE(BigInt(last), 48);
  guidBytes(layout.diskGuid).copy(h, 56);
  h.writeBigUInt64LE(BigInt(entriesLba), 72);
  h.writeUInt32LE(ENTRY_COUNT, 80);
  h.writeUInt32LE(ENTRY_SIZE, 84);
  h.writeUInt32LE(arrayCrc, 88);
  h.writeUInt32LE(crc32(h.subarray(0, HEADER_SIZE)), 16);
  return h;
}

/** The protective MBR: one partition of type 0xEE covering the disk (capped at 2^32-1 sectors). */
function protectiveMbr(sectors: number): Buffer {
  const mbr = Buffer.alloc(SECTOR);
  const entry = mbr.subarray(446, 462);
  entry[0] = 0x00; // not bootable
  Buffer.from([0x00, 0x02, 0x00]).copy(entry, 1); // CHS of LBA 1
  entry[4] = 0xee;
  Buffer.from([0xff, 0xff, 0xff]).copy(entry, 5);
  entry.writeUInt32LE(1, 8);
  entry.writeUInt32LE(Math.min(sectors - 1, 0xffffffff), 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}

/**
 * The GPT structures of a disk: `head` goes at sector 0 (protective MBR, primary
 * header, primary entries), `tail` at sector `tailLba` (backup entries, backup header,
 * ending at the last sector).
 */
export function writeGpt(layout: GptLayout): { head: Buffer; tail: Buffer; tailLba: number } {
  validate(layout);
  const array = entryArray(layout.partitions);
  const arrayCrc = crc32(array);
  const lastLba = layout.sectors - 1;
  const tailLba = lastLba - ARRAY_SECTORS;
  const head = Buffer.concat([protectiveMbr(layout.sectors), header(layout, 1, lastLba, 2, arrayCrc), array]);
  const tail = Buffer.concat([array, header(layout, lastLba, 1, tailLba, arrayCrc)]);
  return { head, tail, tailLba };
}

/** Parse the primary GPT of a disk image (for tests and `resin inspect`-style checks). */
export function readGpt(disk: Buffer): { diskGuid: string; sectors: number; partitions: GptPartition[]; backupMatches: boolean } {
  const h = disk.subarray(SECTOR, 2 * SECTOR);
  if (h.toString("ascii", 0, 8) !== "EFI PART") throw new Error("gpt: no GPT header at sector 1");
  const check = Buffer.from(h.subarray(0, HEADER_SIZE));
  check.writeUInt32LE(0, 16);
  if (crc32(check) !== h.readUInt32LE(16)) throw new Error("gpt: primary header CRC mismatch");
  const entriesLba = Number(h.readBigUInt64LE(72));
  const count = h.readUInt32LE(80);
  const size = h.readUInt32LE(84);
  const array = disk.subarray(entriesLba * SECTOR, entriesLba * SECTOR + count * size);
  if (crc32(array) !== h.readUInt32LE(88)) throw new Error("gpt: partition entry array CRC mismatch");
  const partitions: GptPartition[] = [];
  for (let i = 0; i < count; i++) {
    const e = array.subarray(i * size, (i + 1) * size);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    partitions.push({
      type: guidString(e.subarray(0, 16)),
      guid: guidString(e.subarray(16, 32)),
      firstLba: Number(e.readBigUInt64LE(32)),
      lastLba: Number(e.readBigUInt64LE(40)),
      attributes: e.readBigUInt64LE(48),
      name: e.toString("utf16le", 56, 128).replace(/\0+$/, ""),
    });
  }
  const alternate = Number(h.readBigUInt64LE(32));
  const backup = disk.subarray(alternate * SECTOR, (alternate + 1) * SECTOR);
  const backupEntries = Number(backup.readBigUInt64LE(72));
  const backupMatches =
    backup.toString("ascii", 0, 8) === "EFI PART" &&
    Number(backup.readBigUInt64LE(24)) === alternate &&
    disk.subarray(backupEntries * SECTOR, backupEntries * SECTOR + count * size).equals(array);
  return { diskGuid: guidString(h.subarray(56, 72)), sectors: disk.length / SECTOR, partitions, backupMatches };
}
