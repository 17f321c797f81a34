// FAT16 writer for the EFI System Partition (Microsoft FAT specification, "fatgen103"):
// a few files in upper-case 8.3 names, in directories. Pure and deterministic: files
// are laid out in sorted order, contiguously, every timestamp is the FAT epoch
// (1980-01-01 00:00:00), and the volume id is given by the caller. mkfs.fat and mtools
// could do this too, but stamp the current time and a random volume id unless coaxed.
//
// Layout (512-byte sectors): boot sector, two FATs, a 512-entry root directory, then
// the data clusters. The cluster size is the smallest that keeps the cluster count in
// FAT16's range (4085..65524); the volume is sized to hold the files and rounded up to
// whole MiB.
//
// The volume is a layout (layout.ts): the boot sector, FATs, root directory and other
// directories are built in memory, the files' data (a UKI naming the kernel and
// initramfs files) stays where it is until the layout is written.
import { inMemory, layout as placed, sizeOf, type Bytes, type Layout, type Piece } from "./layout.js";

export interface FatFile {
  /** "EFI/BOOT/BOOTX64.EFI": upper-case 8.3 components separated by "/". */
  path: string;
  data: Bytes;
}

export interface FatOptions {
  files: FatFile[];
  /** Volume label, at most 11 of [A-Z0-9_-] (blkid shows it as LABEL). */
  label: string;
  /** 32-bit volume serial number (blkid shows it as UUID "XXXX-XXXX"). */
  volumeId: number;
  /** Sectors before the volume on its disk (the partition's first LBA); 0 for a bare volume. */
  hiddenSectors?: number;
  /** Free space to leave, in bytes (default 0). */
  freeBytes?: number;
}

const SECTOR = 512;
const RESERVED_SECTORS = 1;
const FAT_COUNT = 2;
const ROOT_ENTRIES = 512;
const ROOT_SECTORS = (ROOT_ENTRIES * 32) / SECTOR;
const ENTRY = 32;
const MIN_CLUSTERS = 4085;
const MAX_CLUSTERS = 65524;
const MEDIA = 0xf8;
const END_OF_CHAIN = 0xffff;
const ALIGN_SECTORS = 2048; // 1 MiB
/** 1980-01-01: (year - 1980) << 9 | month << 5 | day. Time 00:00:00 is 0. */
const FAT_EPOCH_DATE = (0 << 9) | (1 << 5) | 1;
const ATTR_DIRECTORY = 0x10;
const ATTR_ARCHIVE = 0x20;
const ATTR_VOLUME_ID = 0x08;

const NAME_PATTERN = /^[A-Z0-9_-]{1,8}(\.[A-Z0-9_-]{1,3})?$/;
const LABEL_PATTERN = /^[A-Z0-9_-]{1,11}$/;

interface Node {
  name: string;
  /** Present for files; directories have children. */
  data?: Bytes;
  children?: Map<string, Node>;
  firstCluster: number;
  clusters: number;
}

/** "BOOTX64.EFI" → "BOOTX64 EFI" (11 bytes, space padded). */
function shortName(name: string): Buffer {
  if (name === "." || name === "..") return Buffer.from(name.padEnd(11, " "), "ascii");
  const [base, ext = ""] = name.split(".");
  return Buffer.from(base!.padEnd(8, " ") + ext.padEnd(3, " "), "ascii");
}

function dirEntry(name: Buffer, attr: number, firstCluster: number, size: number): Buffer {
  const e = Buffer.alloc(ENTRY);
  name.copy(e, 0);
  e[11] = attr;
  e.writeUInt16LE(0, 14); // creation time
  e.writeUInt16LE(FAT_EPOCH_DATE, 16); // creation date
  e.writeUInt16LE(FAT_EPOCH_DATE, 18); // last access date
  e.writeUInt16LE(0, 20); // first cluster, high word (FAT32 only)
  e.writeUInt16LE(0, 22); // write time
  e.writeUInt16LE(FAT_EPOCH_DATE, 24); // write date
  e.writeUInt16LE(firstCluster, 26);
  e.writeUInt32LE(size, 28);
  return e;
}

function buildTree(files: FatFile[]): Node {
  const root: Node = { name: "", children: new Map(), firstCluster: 0, clusters: 0 };
  for (const { path, data } of files) {
    const parts = path.split("/");
    for (const p of parts) {
      if (!NAME_PATTERN.test(p)) throw new Error(`fat: ${JSON.stringify(path)}: '${p}' is not an upper-case 8.3 name`);
    }
    let dir = root;
    for (const p of parts.slice(0, -1)) {
      let next = dir.children!.get(p);
      if (!next) dir.children!.set(p, (next = { name: p, children: new Map(), firstCluster: 0, clusters: 0 }));
      if (!next.children) throw new Error(`fat: ${JSON.stringify(path)}: '${p}' is a file`);
      dir = next;
    }
    const leaf = parts[parts.length - 1]!;
    if (dir.children!.has(leaf)) throw new Error(`fat: duplicate path ${JSON.stringify(path)}`);
    if (sizeOf(data) > 0xffffffff) throw new Error(`fat: ${JSON.stringify(path)} is too large`);
    dir.children!.set(leaf, { name: leaf, data, firstCluster: 0, clusters: 0 });
  }
  if (root.children!.size + 1 > ROOT_ENTRIES) throw new Error(`fat: more than ${ROOT_ENTRIES - 1} entries in the root directory`);
  return root;
}

const sorted = (dir: Node) => [...dir.children!.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

/** Every directory (but the root) and file, depth first in name order: the order clusters are given out. */
function walk(dir: Node, out: Node[] = []): Node[] {
  for (const child of sorted(dir)) {
    out.push(child);
    if (child.children) walk(child, out);
  }
  return out;
}

function geometry(totalSectors: number, sectorsPerCluster: number): { fatSectors: number; clusters: number } {
  let fatSectors = 1;
  for (;;) {
    const clusters = Math.floor((totalSectors - RESERVED_SECTORS - FAT_COUNT * fatSectors - ROOT_SECTORS) / sectorsPerCluster);
    const needed = Math.ceil(((clusters + 2) * 2) / SECTOR);
    if (needed <= fatSectors) return { fatSectors, clusters };
    fatSectors = needed;
  }
}

/** Choose cluster size and volume size for `dataBytes(clusterBytes)` of content. */
function layout(contentClusters: (clusterBytes: number) => number, freeBytes: number) {
  for (let spc = 1; spc <= 64; spc *= 2) {
    const clusterBytes = spc * SECTOR;
    const wanted = Math.max(contentClusters(clusterBytes) + Math.ceil(freeBytes / clusterBytes), MIN_CLUSTERS);
    const fatGuess = Math.ceil(((wanted + 2) * 2) / SECTOR);
    let total = Math.ceil((RESERVED_SECTORS + FAT_COUNT * fatGuess + ROOT_SECTORS + wanted * spc) / ALIGN_SECTORS) * ALIGN_SECTORS;
    let g = geometry(total, spc);
    while (g.clusters < wanted) {
      total += ALIGN_SECTORS;
      g = geometry(total, spc);
    }
    if (g.clusters <= MAX_CLUSTERS) return { sectorsPerCluster: spc, totalSectors: total, ...g };
  }
  throw new Error("fat: too much content for a FAT16 volume");
}

/** A FAT16 volume holding `files`, in memory (their data must be too). */
export function writeFat16(opts: FatOptions): Buffer {
  return inMemory(layoutFat16(opts));
}

/** A FAT16 volume holding `files`, as a layout: its metadata in memory, each file's data in place. */
export function layoutFat16(opts: FatOptions): Layout {
  if (!LABEL_PATTERN.test(opts.label)) throw new Error(`fat: invalid label ${JSON.stringify(opts.label)} (1..11 of [A-Z0-9_-])`);
  if (!Number.isInteger(opts.volumeId) || opts.volumeId < 0 || opts.volumeId > 0xffffffff) throw new Error("fat: the volume id is a 32-bit number");
  const root = buildTree(opts.files);
  const nodes = walk(root);
  const clustersOf = (n: Node, clusterBytes: number) =>
    n.children ? Math.ceil(((n.children.size + 2) * ENTRY) / clusterBytes) : Math.ceil(sizeOf(n.data!) / clusterBytes);
  const geo = layout((cb) => nodes.reduce((sum, n) => sum + clustersOf(n, cb), 0), opts.freeBytes ?? 0);
  const clusterBytes = geo.sectorsPerCluster * SECTOR;

  let next = 2;
  for (const n of nodes) {
    n.clusters = clustersOf(n, clusterBytes);
    n.firstCluster = n.clusters > 0 ? next : 0;
    next += n.clusters;
  }

  const fatStart = RESERVED_SECTORS * SECTOR;
  const rootStart = fatStart + FAT_COUNT * geo.fatSectors * SECTOR;
  const dataStart = rootStart + ROOT_SECTORS * SECTOR;
  const clusterOffset = (c: number) => dataStart + (c - 2) * clusterBytes;
  // Boot sector, FATs and the root directory; then directories and files in their clusters.
  const head = Buffer.alloc(dataStart);
  const pieces: Piece[] = [{ offset: 0, data: head }];

  // Boot sector with the BIOS parameter block.
  const bs = head.subarray(0, SECTOR);
  Buffer.from([0xeb, 0x3c, 0x90]).copy(bs, 0);
  bs.write("MSWIN4.1", 3, "ascii");
  bs.writeUInt16LE(SECTOR, 11);
  bs[13] = geo.sectorsPerCluster;
  bs.writeUInt16LE(RESERVED_SECTORS, 14);
  bs[16] = FAT_COUNT;
  bs.writeUInt16LE(ROOT_ENTRIES, 17);
  bs.writeUInt16LE(geo.totalSectors < 0x10000 ? geo.totalSectors : 0, 19);
  bs[21] = MEDIA;
  bs.writeUInt16LE(geo.fatSectors, 22);
  bs.writeUInt16LE(32, 24); // sectors per track (geometry nobody uses any more)
  bs.writeUInt16LE(64, 26); // heads
  bs.writeUInt32LE(opts.hiddenSectors ?? 0, 28);
  bs.writeUInt32LE(geo.totalSectors < 0x10000 ? 0 : geo.totalSectors, 32);
  bs[36] = 0x80; // drive number
  bs[38] = 0x29; // extended boot signature: the next three fields are valid
  bs.writeUInt32LE(opts.volumeId, 39);
  bs.write(opts.label.padEnd(11, " "), 43, "ascii");
  bs.write("FAT16   ", 54, "ascii");
  Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]).copy(bs, 62); // boot code: cli; hlt; loop (never BIOS-booted)
  bs[510] = 0x55;
  bs[511] = 0xaa;

  // The FAT: media descriptor, clean-shutdown entry, then one contiguous chain per node.
  const fat = Buffer.alloc(geo.fatSectors * SECTOR);
  fat.writeUInt16LE(0xff00 | MEDIA, 0);
  fat.writeUInt16LE(0xffff, 2);
  for (const n of nodes) {
    for (let i = 0; i < n.clusters; i++) {
      const c = n.firstCluster + i;
      fat.writeUInt16LE(i === n.clusters - 1 ? END_OF_CHAIN : c + 1, c * 2);
    }
  }
  for (let i = 0; i < FAT_COUNT; i++) fat.copy(head, fatStart + i * fat.length);

  // Directories: the root (with the volume label) in its fixed region, the rest in clusters.
  const entriesOf = (dir: Node) =>
    sorted(dir).map((child) =>
      child.children
        ? dirEntry(shortName(child.name), ATTR_DIRECTORY, child.firstCluster, 0)
        : dirEntry(shortName(child.name), ATTR_ARCHIVE, child.firstCluster, sizeOf(child.data!)),
    );
  Buffer.concat([dirEntry(Buffer.from(opts.label.padEnd(11, " "), "ascii"), ATTR_VOLUME_ID, 0, 0), ...entriesOf(root)]).copy(head, rootStart);
  const writeDir = (dir: Node, parentCluster: number) => {
    const entries = [dirEntry(shortName("."), ATTR_DIRECTORY, dir.firstCluster, 0), dirEntry(shortName(".."), ATTR_DIRECTORY, parentCluster, 0), ...entriesOf(dir)];
    pieces.push({ offset: clusterOffset(dir.firstCluster), data: Buffer.concat(entries) });
    for (const child of sorted(dir)) {
      if (child.children) writeDir(child, dir.firstCluster);
      else if (child.clusters > 0) pieces.push({ offset: clusterOffset(child.firstCluster), data: child.data! });
    }
  };
  for (const child of sorted(root)) {
    // ".." of a directory in the root points at cluster 0.
    if (child.children) writeDir(child, 0);
    else if (child.clusters > 0) pieces.push({ offset: clusterOffset(child.firstCluster), data: child.data! });
  }
  return placed(geo.totalSectors * SECTOR, pieces);
}
