// A minimal PE32+ EFI application for tests that need a stub to build a UKI from.
import { peChecksum } from "../../cli/image/uki.js";

/** A minimal PE32+ EFI application: headers and one .text section holding `ret`. */
export function tinyStub(): Buffer {
  const pe = Buffer.alloc(0x600);
  pe.write("MZ", 0, "ascii");
  pe.writeUInt32LE(0x40, 0x3c);
  pe.write("PE\0\0", 0x40, "latin1");
  const coff = 0x44;
  pe.writeUInt16LE(0x8664, coff); // machine: x86-64
  pe.writeUInt16LE(1, coff + 2); // sections
  pe.writeUInt16LE(240, coff + 16); // size of the optional header
  pe.writeUInt16LE(0x206, coff + 18);
  const opt = coff + 20;
  pe.writeUInt16LE(0x20b, opt);
  pe.writeUInt32LE(0x200, opt + 4); // SizeOfCode
  pe.writeUInt32LE(0x1000, opt + 16); // AddressOfEntryPoint
  pe.writeUInt32LE(0x1000, opt + 20); // BaseOfCode
  pe.writeUInt32LE(0x1000, opt + 32); // SectionAlignment
  pe.writeUInt32LE(0x200, opt + 36); // FileAlignment
  pe.writeUInt32LE(0x2000, opt + 56); // SizeOfImage
  pe.writeUInt32LE(0x400, opt + 60); // SizeOfHeaders
  pe.writeUInt16LE(10, opt + 68); // EFI application
  pe.writeUInt32LE(16, opt + 108); // NumberOfRvaAndSizes
  const text = opt + 240;
  pe.write(".text", text, "latin1");
  pe.writeUInt32LE(1, text + 8);
  pe.writeUInt32LE(0x1000, text + 12);
  pe.writeUInt32LE(0x200, text + 16);
  pe.writeUInt32LE(0x400, text + 20);
  pe.writeUInt32LE(0x60000020, text + 36);
  pe[0x400] = 0xc3;
  pe.writeUInt32LE(peChecksum(pe, opt + 64), opt + 64);
  return pe;
}
