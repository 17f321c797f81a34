// Unified kernel image: systemd's EFI stub (Debian's systemd-boot-efi) with the kernel,
// initramfs, command line and os-release appended as PE sections (.linux, .initrd,
// .cmdline, .osrel), as the UAPI UKI specification describes. The firmware loads it
// as an ordinary EFI application; the stub finds its sections and boots the kernel.
//
// This is what `objcopy --add-section … --change-section-vma …` does, written here
// because objcopy stamps the current time into the PE header (binutils 2.40 ignores
// SOURCE_DATE_EPOCH for PE output) and needs the section addresses worked out anyway.
// The kernel and initramfs are not copied here: the UKI is a layout (layout.ts) that
// names them, and they are read only when it is written or hashed.
import { chunksOf, layout, sizeOf, type Bytes, type Layout, type Piece } from "./layout.js";

export interface UkiSection {
  /** At most 8 bytes: ".linux", ".initrd", ".cmdline", ".osrel". */
  name: string;
  data: Bytes;
}

export interface UkiParts {
  stub: Buffer;
  /** The PE machine the stub must be built for (cli/spec/arch.ts peMachine): an amd64 stub cannot boot an arm64 kernel. */
  machine?: number;
  kernel: Bytes;
  initrd: Bytes;
  cmdline: string;
  osRelease: string;
}

/** Where new sections start in memory: page aligned, as ukify places them. */
const SECTION_VA_ALIGN = 0x1000;
/** IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ */
const DATA_SECTION = 0x40000040;
const SECTION_HEADER = 40;
const PE32_PLUS = 0x20b;

const alignUp = (value: number, to: number) => Math.ceil(value / to) * to;

interface PeHeaders {
  coff: number;
  optional: number;
  sectionTable: number;
  sections: number;
  sectionAlignment: number;
  fileAlignment: number;
  sizeOfImage: number;
  sizeOfHeaders: number;
}

function parse(pe: Buffer): PeHeaders {
  if (pe.length < 0x40 || pe.toString("ascii", 0, 2) !== "MZ") throw new Error("uki: the stub is not a PE image (no MZ header)");
  const peOffset = pe.readUInt32LE(0x3c);
  if (pe.toString("latin1", peOffset, peOffset + 4) !== "PE\0\0") throw new Error("uki: the stub has no PE signature");
  const coff = peOffset + 4;
  const optional = coff + 20;
  if (pe.readUInt16LE(optional) !== PE32_PLUS) throw new Error("uki: the stub is not PE32+ (a 64-bit EFI application)");
  return {
    coff,
    optional,
    sectionTable: optional + pe.readUInt16LE(coff + 16),
    sections: pe.readUInt16LE(coff + 2),
    sectionAlignment: pe.readUInt32LE(optional + 32),
    fileAlignment: pe.readUInt32LE(optional + 36),
    sizeOfImage: pe.readUInt32LE(optional + 56),
    sizeOfHeaders: pe.readUInt32LE(optional + 60),
  };
}

/**
 * The running sum behind the PE image checksum (as ImageHlp's CheckSumMappedFile): the
 * image's little-endian 16-bit words but the checksum field, added with the carry folded
 * back in, then the image's length. Fed in chunks of any size, in order.
 */
function peSum(checksumOffset: number) {
  let sum = 0;
  let position = 0;
  /** A word's first byte, when a chunk ended between its two bytes. */
  let low: number | undefined;
  const word = (at: number, value: number) => {
    if (at === checksumOffset || at === checksumOffset + 2) return;
    sum += value;
    sum = (sum & 0xffff) + (sum >>> 16);
  };
  return {
    add(chunk: Buffer): void {
      let i = 0;
      if (low !== undefined && chunk.length > 0) {
        word(position - 1, low | (chunk[0]! << 8));
        low = undefined;
        i = 1;
      }
      for (; i + 1 < chunk.length; i += 2) word(position + i, chunk.readUInt16LE(i));
      if (i < chunk.length) low = chunk[i];
      position += chunk.length;
    },
    total(): number {
      if (low !== undefined) word(position - 1, low); // an odd length: the last byte pairs with a zero
      sum = (sum & 0xffff) + (sum >>> 16);
      return (sum + position) >>> 0;
    },
  };
}

/** The PE image checksum of an image in memory. */
export function peChecksum(pe: Buffer, checksumOffset: number): number {
  const sum = peSum(checksumOffset);
  sum.add(pe);
  return sum.total();
}

async function peChecksumOf(image: Layout, checksumOffset: number): Promise<number> {
  const sum = peSum(checksumOffset);
  for await (const chunk of chunksOf(image)) sum.add(chunk);
  return sum.total();
}

/** Names of a PE image's sections, in table order (for tests and checks). */
export function peSections(pe: Buffer): { name: string; virtualAddress: number; virtualSize: number; rawOffset: number; rawSize: number }[] {
  const h = parse(pe);
  return Array.from({ length: h.sections }, (_, i) => {
    const s = h.sectionTable + i * SECTION_HEADER;
    return {
      name: pe.toString("latin1", s, s + 8).replace(/\0+$/, ""),
      virtualSize: pe.readUInt32LE(s + 8),
      virtualAddress: pe.readUInt32LE(s + 12),
      rawSize: pe.readUInt32LE(s + 16),
      rawOffset: pe.readUInt32LE(s + 20),
    };
  });
}

/**
 * Append initialised, read-only data sections to a PE32+ image. The result is a layout:
 * the stub with the new section headers in memory, each section's data (a file, say)
 * at its file offset. Its checksum reads the sections once.
 */
export async function addPeSections(stub: Buffer, sections: UkiSection[]): Promise<Layout> {
  const h = parse(stub);
  const tableEnd = h.sectionTable + (h.sections + sections.length) * SECTION_HEADER;
  const existing = peSections(stub);
  const firstRaw = Math.min(h.sizeOfHeaders, ...existing.filter((s) => s.rawSize > 0).map((s) => s.rawOffset));
  if (tableEnd > firstRaw) throw new Error(`uki: no room in the stub's headers for ${sections.length} more section headers`);
  const fileEnd = Math.max(stub.length, ...existing.map((s) => s.rawOffset + s.rawSize));

  const head = Buffer.concat([stub, Buffer.alloc(alignUp(fileEnd, h.fileAlignment) - stub.length)]);
  if (tableEnd > head.length) throw new Error(`uki: no room in the stub's headers for ${sections.length} more section headers`);
  const pieces: Piece[] = [{ offset: 0, data: head }];
  let rawOffset = head.length;
  let va = alignUp(h.sizeOfImage, Math.max(SECTION_VA_ALIGN, h.sectionAlignment));
  let addedRaw = 0;
  const headers: Buffer[] = [];
  for (const { name, data } of sections) {
    if (Buffer.byteLength(name, "latin1") > 8) throw new Error(`uki: section name ${name} is longer than 8 bytes`);
    const size = sizeOf(data);
    const rawSize = alignUp(size, h.fileAlignment);
    const header = Buffer.alloc(SECTION_HEADER);
    header.write(name, 0, 8, "latin1");
    header.writeUInt32LE(size, 8);
    header.writeUInt32LE(va, 12);
    header.writeUInt32LE(rawSize, 16);
    header.writeUInt32LE(rawOffset, 20);
    header.writeUInt32LE(DATA_SECTION, 36);
    headers.push(header);
    pieces.push({ offset: rawOffset, data });
    rawOffset += rawSize;
    addedRaw += rawSize;
    va = alignUp(va + size, Math.max(SECTION_VA_ALIGN, h.sectionAlignment));
  }
  Buffer.concat(headers).copy(head, h.sectionTable + h.sections * SECTION_HEADER);
  head.writeUInt16LE(h.sections + sections.length, h.coff + 2);
  head.writeUInt32LE((head.readUInt32LE(h.optional + 8) + addedRaw) >>> 0, h.optional + 8); // SizeOfInitializedData
  head.writeUInt32LE(alignUp(va, h.sectionAlignment), h.optional + 56); // SizeOfImage
  const image = layout(rawOffset, pieces);
  head.writeUInt32LE(await peChecksumOf(image, h.optional + 64), h.optional + 64);
  return image;
}

/** The UKI: the stub with os-release, command line, initramfs and kernel (last, as ukify orders them). */
export function buildUki(parts: UkiParts): Promise<Layout> {
  const h = parse(parts.stub);
  const machine = parts.stub.readUInt16LE(h.coff);
  if (parts.machine !== undefined && machine !== parts.machine) {
    throw new Error(`uki: the stub is for PE machine 0x${machine.toString(16)}, not 0x${parts.machine.toString(16)}: take systemd-boot-efi of the image's architecture`);
  }
  return addPeSections(parts.stub, [
    { name: ".osrel", data: Buffer.from(parts.osRelease, "utf8") },
    { name: ".cmdline", data: Buffer.from(parts.cmdline, "utf8") },
    { name: ".initrd", data: parts.initrd },
    { name: ".linux", data: parts.kernel },
  ]);
}
