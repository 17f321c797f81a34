// Hand-made ELF files for tests: a 64-bit little-endian header, program headers, an
// interpreter, a string table and a dynamic section that one PT_LOAD maps at BASE.

const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const BASE = 0x400000n;

export interface Synth {
  interpreter?: string;
  needed?: string[];
  /** Leave out PT_DYNAMIC (a static binary). */
  static?: boolean;
  /** Put DT_STRTAB at an address no PT_LOAD covers. */
  strtabOutside?: boolean;
  /** Dynamic entries written after DT_NULL (must be ignored). */
  afterNull?: string[];
  elfClass?: number;
  dataEncoding?: number;
}

/** A 64-bit little-endian ELF: header, program headers, interp, strtab, dynamic; one PT_LOAD maps it all at BASE. */
export function synthElf(o: Synth): Buffer {
  const needed = o.needed ?? [];
  const after = o.afterNull ?? [];
  const names = [...needed, ...after];
  const strtab = Buffer.concat([Buffer.from([0]), ...names.map((n) => Buffer.from(`${n}\0`))]);
  const nameOffset = (i: number) => 1 + names.slice(0, i).reduce((sum, n) => sum + n.length + 1, 0);

  const phdrs: { type: number; offset: number; size: number }[] = [];
  const headerSize = 64;
  const phCount = 1 + (o.interpreter ? 1 : 0) + (o.static ? 0 : 1);
  let at = headerSize + phCount * 56;
  const interp = o.interpreter ? Buffer.from(`${o.interpreter}\0`) : Buffer.alloc(0);
  const interpAt = at;
  at += interp.length;
  const strtabAt = at;
  at += strtab.length;
  at = (at + 7) & ~7;
  const dynEntries: [bigint, bigint][] = [
    ...needed.map((_, i) => [1n, BigInt(nameOffset(i))] as [bigint, bigint]),
    [5n, o.strtabOutside ? 0x7f000000n : BASE + BigInt(strtabAt)],
    [0n, 0n],
    ...after.map((_, i) => [1n, BigInt(nameOffset(needed.length + i))] as [bigint, bigint]),
  ];
  const dynAt = at;
  const dynSize = dynEntries.length * 16;
  const total = o.static ? strtabAt + strtab.length : dynAt + dynSize;

  phdrs.push({ type: PT_LOAD, offset: 0, size: total });
  if (o.interpreter) phdrs.push({ type: PT_INTERP, offset: interpAt, size: interp.length });
  if (!o.static) phdrs.push({ type: PT_DYNAMIC, offset: dynAt, size: dynSize });

  const buf = Buffer.alloc(total);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = o.elfClass ?? 2; // ELFCLASS64
  buf[5] = o.dataEncoding ?? 1; // ELFDATA2LSB
  buf[6] = 1;
  buf.writeUInt16LE(3, 0x10); // ET_DYN
  buf.writeUInt16LE(62, 0x12); // EM_X86_64
  buf.writeBigUInt64LE(BigInt(headerSize), 0x20); // e_phoff
  buf.writeUInt16LE(headerSize, 0x34);
  buf.writeUInt16LE(56, 0x36); // e_phentsize
  buf.writeUInt16LE(phdrs.length, 0x38); // e_phnum
  phdrs.forEach((p, i) => {
    const ph = headerSize + i * 56;
    buf.writeUInt32LE(p.type, ph);
    buf.writeBigUInt64LE(BigInt(p.offset), ph + 0x08);
    buf.writeBigUInt64LE(BASE + BigInt(p.offset), ph + 0x10);
    buf.writeBigUInt64LE(BASE + BigInt(p.offset), ph + 0x18);
    buf.writeBigUInt64LE(BigInt(p.size), ph + 0x20);
    buf.writeBigUInt64LE(BigInt(p.size), ph + 0x28);
  });
  interp.copy(buf, interpAt);
  strtab.copy(buf, strtabAt);
  if (!o.static) dynEntries.forEach(([tag, value], i) => {
    buf.writeBigInt64LE(tag, dynAt + i * 16);
    buf.writeBigUInt64LE(value, dynAt + i * 16 + 8);
  });
  return buf;
}

