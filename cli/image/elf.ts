// Just enough ELF reading to carry a binary's shared libraries into an image:
// the program interpreter (PT_INTERP) and the DT_NEEDED sonames. 64-bit little-endian only.

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

export interface ElfDeps {
  /** e_machine: the architecture it was built for (62 x86-64, 183 AArch64). */
  machine: number;
  interpreter?: string;
  needed: string[];
}

/** Returns undefined for files that are not ELF (shell scripts and data pass through). */
export function readElfDeps(data: Buffer): ElfDeps | undefined {
  if (data.length < 4 || data.readUInt32BE(0) !== 0x7f454c46) return undefined;
  try {
    return parse(data);
  } catch (e) {
    // Buffer reads past the end throw RangeError: that is a cut-off or corrupt file.
    if (e instanceof RangeError) throw new Error("truncated or corrupt ELF file");
    throw e;
  }
}

function parse(data: Buffer): ElfDeps {
  if (data.length < 64) throw new RangeError("ELF header cut short");
  if (data[4] !== 2 || data[5] !== 1) throw new Error("only 64-bit little-endian ELF files are supported");
  const machine = data.readUInt16LE(0x12);
  const phoff = Number(data.readBigUInt64LE(0x20));
  const phentsize = data.readUInt16LE(0x36);
  const phnum = data.readUInt16LE(0x38);

  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  let interpreter: string | undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const type = data.readUInt32LE(ph);
    const offset = data.readBigUInt64LE(ph + 0x08);
    const vaddr = data.readBigUInt64LE(ph + 0x10);
    const filesz = data.readBigUInt64LE(ph + 0x20);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
    if (type === PT_INTERP) interpreter = cString(data, Number(offset));
  }
  if (!dynamic) return { machine, interpreter, needed: [] }; // statically linked (or a kernel module)

  // DT_STRTAB holds a virtual address; map it to a file offset through the PT_LOAD segments.
  const toOffset = (vaddr: bigint): number => {
    const seg = loads.find((l) => vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz);
    if (!seg) throw new Error("ELF string table is outside every loaded segment");
    if (seg.offset + seg.filesz > BigInt(data.length)) throw new RangeError("segment beyond the end of the file");
    return Number(vaddr - seg.vaddr + seg.offset);
  };
  const neededOffsets: bigint[] = [];
  let strtab: bigint | undefined;
  for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.size; at += 16) {
    const tag = data.readBigInt64LE(at);
    const value = data.readBigUInt64LE(at + 8);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) neededOffsets.push(value);
    if (tag === DT_STRTAB) strtab = value;
  }
  if (strtab === undefined) return { machine, interpreter, needed: [] };
  const base = toOffset(strtab);
  return { machine, interpreter, needed: neededOffsets.map((o) => cString(data, base + Number(o))) };
}

function cString(data: Buffer, offset: number): string {
  if (offset >= data.length) throw new RangeError("string beyond the end of the file");
  const end = data.indexOf(0, offset);
  return data.toString("utf8", offset, end < 0 ? data.length : end);
}
