import { describe, it, expect, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addPeSections, buildUki, peChecksum, peSections } from "../../cli/image/uki.js";
import { fileBytes, inMemory, writeLayout } from "../../cli/image/layout.js";
import { tinyStub } from "./tiny-pe.js";

const work = mkdtempSync(join(tmpdir(), "resin-uki-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The UKI's bytes: its sections here are in memory. */
const uki = async (p: typeof parts) => inMemory(await buildUki(p));

const parts = {
  stub: tinyStub(),
  kernel: Buffer.alloc(5000, 0x4b),
  initrd: Buffer.alloc(3001, 0x49),
  cmdline: "console=ttyS0 resin.root=PARTLABEL=resin-root",
  osRelease: "ID=resin\n",
};

describe("unified kernel image", () => {
  it("appends .osrel, .cmdline, .initrd and .linux after the stub's sections, page aligned in memory", async () => {
    const image = await uki(parts);
    const sections = peSections(image);
    expect(sections.map((s) => s.name)).toEqual([".text", ".osrel", ".cmdline", ".initrd", ".linux"]);
    for (const s of sections.slice(1)) {
      expect(s.virtualAddress % 0x1000).toBe(0);
      expect(s.rawOffset % 0x200).toBe(0);
    }
    const linux = sections.find((s) => s.name === ".linux")!;
    expect(linux.virtualSize).toBe(5000);
    expect(image.subarray(linux.rawOffset, linux.rawOffset + 5000).equals(parts.kernel)).toBe(true);
    // SizeOfImage covers the last section.
    expect(image.readUInt32LE(0x44 + 20 + 56)).toBe(Math.ceil((linux.virtualAddress + 5000) / 0x1000) * 0x1000);
  });

  it("is deterministic: no timestamp, equal inputs give equal bytes", async () => {
    expect((await uki(parts)).equals(await uki(parts))).toBe(true);
    expect((await uki(parts)).readUInt32LE(0x44 + 4)).toBe(0);
  });

  it("is read by binutils as the sections objcopy would have added, with a correct checksum", async () => {
    const path = join(work, "uki.efi");
    writeFileSync(path, await uki(parts));
    const headers = execFileSync("objdump", ["-h", "-p", path], { encoding: "utf8" });
    expect(headers).toContain("pei-x86-64");
    for (const [name, size] of [[".osrel", 9], [".cmdline", parts.cmdline.length], [".initrd", 3001], [".linux", 5000]] as const) {
      expect(headers).toMatch(new RegExp(`\\d+ \\${name}\\s+${size.toString(16).padStart(8, "0")}\\s`));
    }
    for (const [name, data] of [[".cmdline", Buffer.from(parts.cmdline)], [".initrd", parts.initrd], [".linux", parts.kernel]] as const) {
      const out = join(work, `${name.slice(1)}.bin`);
      execFileSync("objcopy", [`--dump-section`, `${name}=${out}`, path, join(work, "scratch.efi")]);
      expect(readFileSync(out).equals(data), name).toBe(true);
    }
    // objcopy writes the PE checksum: ours must agree with it on objcopy's own output.
    const copied = join(work, "copied.efi");
    execFileSync("objcopy", ["--add-section", `.extra=${join(work, "linux.bin")}`, "--change-section-vma", ".extra=0x100000", path, copied]);
    const bytes = readFileSync(copied);
    const checksumAt = bytes.readUInt32LE(0x3c) + 4 + 20 + 64;
    expect(peChecksum(bytes, checksumAt)).toBe(bytes.readUInt32LE(checksumAt));
  });

  it("is the same bytes, checksum included, when the kernel and initramfs are files it reads in chunks", async () => {
    // Odd sizes over the 1 MiB chunk: words of the checksum straddle chunk boundaries.
    const big = { ...parts, kernel: Buffer.alloc(1024 * 1024 + 3, 0x4b), initrd: Buffer.alloc(2 * 1024 * 1024 + 1, 0x49) };
    big.kernel.writeUInt32LE(0xdeadbeef, 1024 * 1024 - 1);
    const kernel = join(work, "kernel.bin");
    const initrd = join(work, "initrd.bin");
    writeFileSync(kernel, big.kernel);
    writeFileSync(initrd, big.initrd);
    const path = join(work, "streamed.efi");
    await writeLayout(path, await buildUki({ ...big, kernel: await fileBytes(kernel), initrd: await fileBytes(initrd) }));
    const streamed = readFileSync(path);
    expect(streamed.equals(await uki(big))).toBe(true);
    const checksumAt = streamed.readUInt32LE(0x3c) + 4 + 20 + 64;
    expect(streamed.readUInt32LE(checksumAt)).toBe(peChecksum(streamed, checksumAt));
  });

  it("refuses what is not a PE32+ image, and section names over 8 bytes", async () => {
    await expect(buildUki({ ...parts, stub: Buffer.alloc(512) })).rejects.toThrow(/not a PE image/);
    await expect(addPeSections(tinyStub(), [{ name: ".toolongname", data: Buffer.alloc(1) }])).rejects.toThrow(/longer than 8 bytes/);
  });
});
