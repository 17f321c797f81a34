// A dm-verity hash tree over the root filesystem, in the layout `veritysetup format`
// writes by default (the kernel's Documentation/admin-guide/device-mapper/verity.rst and
// cryptsetup's on-disk format): hash type 1, sha256, 4096-byte data and hash blocks, a
// 512-byte superblock in the hash device's first 4096-byte block, then the tree's levels
// from the top (one block) down to level 0 (one hash per data block). A hash is
// sha256(salt || block); a hash block holds 128 of them and is zero-padded; the root
// hash is sha256(salt || top block), or of the only data block when there is one.
//
// Salt and superblock UUID come from the content, never from randomness, so equal
// squashfs bytes give an equal hash file and root hash: salt = sha256("resin-verity-salt/1\n"
// + the squashfs's sha256 in hex), UUID = the first 16 bytes of sha256("resin-verity-uuid/1\n"
// + the same), marked as an RFC 9562 version 8 (custom) UUID. Both are domain-separated
// from each other and from the file's own hash, and need no pass over the file beyond the
// one that hashes it anyway. The data is read through one 1 MiB buffer; only the hashes
// (1/128 of the data) are held in memory.
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { ResinError } from "../util/errors.js";

export const VERITY_BLOCK = 4096;
const DIGEST = 32;
const PER_BLOCK = VERITY_BLOCK / DIGEST;
const SUPERBLOCK = 512;

/** What veritysetup (and the kernel's verity target) need besides the two devices. */
export interface VerityParams {
  /** dm-verity's format version (1: salt first, digests padded to a power of two). */
  hashType: 1;
  hashAlgorithm: "sha256";
  dataBlockSize: number;
  hashBlockSize: number;
  /** How many data blocks the tree covers: the whole squashfs. */
  dataBlocks: number;
  /** Where the tree's superblock starts on the hash device (it is its own file). */
  hashOffset: 0;
  /** Hex. */
  salt: string;
  uuid: string;
  /** Hex: what the kernel command line will name. */
  rootHash: string;
}

/** Pure: the salt for data whose sha256 is `contentSha256` (hex). */
export function veritySalt(contentSha256: string): string {
  return createHash("sha256").update(`resin-verity-salt/1\n${contentSha256}`).digest("hex");
}

/** Pure: the superblock's UUID for data whose sha256 is `contentSha256` (hex). */
export function verityUuid(contentSha256: string): string {
  const b = createHash("sha256").update(`resin-verity-uuid/1\n${contentSha256}`).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Pure: the superblock's 512 bytes (struct verity_sb, little-endian). */
export function veritySuperblock(p: Pick<VerityParams, "uuid" | "dataBlocks" | "salt">): Buffer {
  const sb = Buffer.alloc(SUPERBLOCK);
  sb.write("verity", 0, "latin1");
  sb.writeUInt32LE(1, 8); // superblock version
  sb.writeUInt32LE(1, 12); // hash type
  Buffer.from(p.uuid.replace(/-/g, ""), "hex").copy(sb, 16);
  sb.write("sha256", 32, "latin1");
  sb.writeUInt32LE(VERITY_BLOCK, 64);
  sb.writeUInt32LE(VERITY_BLOCK, 68);
  sb.writeBigUInt64LE(BigInt(p.dataBlocks), 72);
  const salt = Buffer.from(p.salt, "hex");
  sb.writeUInt16LE(salt.length, 80);
  salt.copy(sb, 88);
  return sb;
}

/** Pure: hash blocks of `digests` (each level's hashes, packed 128 to a zero-padded block). */
function packLevel(digests: Buffer, count: number): Buffer {
  return Buffer.concat([digests.subarray(0, count * DIGEST), Buffer.alloc(Math.ceil(count / PER_BLOCK) * VERITY_BLOCK - count * DIGEST)]);
}

/** Pure: the tree over data blocks whose hashes are `level0` (each sha256(salt || block)): its levels top first, and the root hash. */
export function verityTree(level0: Buffer, dataBlocks: number, salt: Buffer): { levels: Buffer[]; rootHash: string } {
  const hash = (block: Buffer) => createHash("sha256").update(salt).update(block).digest();
  if (dataBlocks === 1) return { levels: [], rootHash: level0.subarray(0, DIGEST).toString("hex") };
  const levels: Buffer[] = [];
  let below = packLevel(level0, dataBlocks);
  levels.push(below);
  while (below.length > VERITY_BLOCK) {
    const count = below.length / VERITY_BLOCK;
    const digests = Buffer.concat(Array.from({ length: count }, (_, i) => hash(below.subarray(i * VERITY_BLOCK, (i + 1) * VERITY_BLOCK))));
    below = packLevel(digests, count);
    levels.push(below);
  }
  return { levels: levels.reverse(), rootHash: hash(below).toString("hex") };
}

/** Pure: salt and superblock UUID for data whose sha256 is `contentSha256` (hex). */
export function verityIdentity(contentSha256: string): { salt: string; uuid: string } {
  return { salt: veritySalt(contentSha256), uuid: verityUuid(contentSha256) };
}

/**
 * The hash device for the file at `dataPath` with the given salt and UUID: its bytes (in
 * pieces, superblock first) and its parameters. The data must be whole 4096-byte blocks
 * (mksquashfs pads to 4 KiB): a partial last block would lie outside the tree.
 */
export async function verityHashDevice(dataPath: string, identity: { salt: string; uuid: string }): Promise<{ params: VerityParams; bytes: Buffer[] }> {
  const saltBytes = Buffer.from(identity.salt, "hex");
  const data = await open(dataPath, "r");
  let level0: Buffer;
  let dataBlocks: number;
  try {
    const size = (await data.stat()).size;
    if (size === 0 || size % VERITY_BLOCK !== 0) {
      throw new ResinError(`${dataPath}: ${size} bytes is not a whole number of ${VERITY_BLOCK}-byte blocks, so dm-verity cannot cover all of it`, "build the squashfs without -nopad (mksquashfs pads to 4 KiB by default)");
    }
    dataBlocks = size / VERITY_BLOCK;
    level0 = Buffer.alloc(dataBlocks * DIGEST);
    const salted = createHash("sha256").update(saltBytes);
    const buffer = Buffer.allocUnsafe(256 * VERITY_BLOCK);
    let block = 0;
    for (let n; block < dataBlocks && (n = (await data.read(buffer, 0, buffer.length, block * VERITY_BLOCK)).bytesRead) > 0; ) {
      for (let at = 0; at + VERITY_BLOCK <= n && block < dataBlocks; at += VERITY_BLOCK, block++) salted.copy().update(buffer.subarray(at, at + VERITY_BLOCK)).digest().copy(level0, block * DIGEST);
    }
    if (block !== dataBlocks) throw new ResinError(`${dataPath} changed while its hash tree was computed`, "build again");
  } finally {
    await data.close();
  }
  const { levels, rootHash } = verityTree(level0, dataBlocks, saltBytes);
  const params: VerityParams = { hashType: 1, hashAlgorithm: "sha256", dataBlockSize: VERITY_BLOCK, hashBlockSize: VERITY_BLOCK, dataBlocks, hashOffset: 0, ...identity, rootHash };
  const header = Buffer.alloc(VERITY_BLOCK);
  veritySuperblock(params).copy(header);
  return { params, bytes: [header, ...levels] };
}

/** Write the hash device for the file at `dataPath` (whose sha256 is `contentSha256`) to `hashPath`, salted from that content. */
export async function writeVerity(dataPath: string, contentSha256: string, hashPath: string): Promise<VerityParams> {
  const { params, bytes } = await verityHashDevice(dataPath, verityIdentity(contentSha256));
  const out = await open(hashPath, "w");
  try {
    for (const part of bytes) await out.write(part);
  } finally {
    await out.close();
  }
  return params;
}

/**
 * Pure: the kernel command line words that hand an image's root hash, salt and size to
 * the initramfs /init (services/base/verity.sh reads them back). The hash tree itself
 * is the disk with serial "verity" unless `hashDisk` names another (resin.verity.hash=).
 */
export function verityCmdline(p: Pick<VerityParams, "rootHash" | "salt" | "dataBlocks">, hashDisk?: string): string {
  if (!/^[0-9a-f]{64}$/.test(p.rootHash)) throw new ResinError(`verity root hash ${JSON.stringify(p.rootHash)} is not 64 lower-case hex digits`, "rebuild the image (resin build)");
  if (!/^([0-9a-f]{2}){1,256}$/.test(p.salt)) throw new ResinError(`verity salt ${JSON.stringify(p.salt)} is not 1 to 256 bytes of lower-case hex`, "rebuild the image (resin build)");
  if (!Number.isSafeInteger(p.dataBlocks) || p.dataBlocks < 1) throw new ResinError(`verity data block count ${String(p.dataBlocks)} is not a positive integer`, "rebuild the image (resin build)");
  if (hashDisk !== undefined && !/^[A-Za-z0-9=_./-]+$/.test(hashDisk)) throw new ResinError(`verity hash disk ${JSON.stringify(hashDisk)} would not be one command line word`);
  return [`resin.verity.roothash=${p.rootHash}`, `resin.verity.salt=${p.salt}`, `resin.verity.blocks=${p.dataBlocks}`, ...(hashDisk ? [`resin.verity.hash=${hashDisk}`] : [])].join(" ");
}

/** The virtio serial of the hash tree disk Resin's own VMs get (the root is "root"). */
export const VERITY_DISK_SERIAL = "verity";

/**
 * Pure: the device-mapper table services/base/verity.sh gives dmsetup, for tests to hold
 * the shell to: data and hash block 4096, the tree from hash block 1 (block 0 is the
 * superblock), and the optional error mode.
 */
export function verityTable(p: Pick<VerityParams, "rootHash" | "salt" | "dataBlocks">, dataDevice: string, hashDevice: string, mode?: "panic_on_corruption" | "restart_on_corruption"): string {
  return `0 ${p.dataBlocks * (VERITY_BLOCK / 512)} verity 1 ${dataDevice} ${hashDevice} ${VERITY_BLOCK} ${VERITY_BLOCK} ${p.dataBlocks} 1 sha256 ${p.rootHash} ${p.salt}${mode ? ` 1 ${mode}` : ""}`;
}
