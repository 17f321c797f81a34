import { describe, it, expect, afterAll } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { layoutIso9660, writeIso9660 } from "../../cli/image/iso9660.js";
import { inMemory } from "../../cli/image/layout.js";

const XORRISO = "/usr/bin/xorriso";
const BLKID = "/sbin/blkid";

const work = mkdtempSync(join(tmpdir(), "resin-iso-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Bytes that differ in every 64-byte block, so a misplaced sector would be noticed. */
function distinctBytes(size: number): Buffer {
  const blocks = [...Array(Math.ceil(size / 64))].map((_, i) => createHash("sha512").update(String(i)).digest());
  return Buffer.concat(blocks).subarray(0, size);
}

const files = [
  { name: "user-data", data: Buffer.from("#cloud-config\nhostname: node-1\n") },
  { name: "meta-data", data: Buffer.from("instance-id: node-1\nlocal-hostname: node-1\n") },
  { name: "network-config", data: Buffer.from("version: 2\n") },
  { name: "config", data: Buffer.from("x") },
  { name: "empty", data: Buffer.alloc(0) },
  { name: "exact.bin", data: Buffer.alloc(2048, 1) }, // exactly one sector
  { name: "big_file.0", data: distinctBytes(3 * 1024 * 1024 + 5) },
];

function writeImage(name: string, image: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, image);
  return path;
}

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function expectSameFiles(dir: string): void {
  expect(readdirSync(dir).sort()).toEqual(files.map((f) => f.name).sort());
  for (const f of files) expect(readFileSync(join(dir, f.name)).equals(f.data), f.name).toBe(true);
}

describe("writeIso9660", () => {
  const image = writeIso9660({ volumeId: "cidata", files });
  const imagePath = writeImage("cidata.iso", image);

  it("lays out whole sectors", () => {
    expect(image.length % 2048).toBe(0);
    // Volume space size (both-endian at PVD offset 80) matches the image length.
    expect(image.readUInt32LE(16 * 2048 + 80)).toBe(image.length / 2048);
    expect(image.readUInt32BE(16 * 2048 + 84)).toBe(image.length / 2048);
  });

  it("reads back identically with xorriso", () => {
    const out = join(work, "extract");
    execFileSync(XORRISO, ["-osirrox", "on", "-indev", imagePath, "-extract", "/", out], { stdio: "pipe" });
    expectSameFiles(out);
  });

  it("stores the volume id and fixed dates in the PVD", () => {
    const r = spawnSync(XORRISO, ["-indev", imagePath, "-pvd_info"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const info = r.stdout + r.stderr;
    expect(info).toMatch(/^Volume Id\s*: cidata$/m);
    expect(info).toMatch(/^Creation Time: 1970010100000000$/m);
    expect(info).toMatch(/^Modif\. Time\s*: 1970010100000000$/m);
    expect(info).toMatch(/^Expir\. Time\s*: 0000000000000000$/m);
  });

  it("is recognised by blkid as iso9660 labelled cidata", () => {
    const out = execFileSync(BLKID, ["-p", "-o", "export", imagePath], { encoding: "utf8" });
    expect(out).toMatch(/^TYPE=iso9660$/m);
    expect(out).toMatch(/^LABEL=cidata$/m);
  });

  it("is deterministic regardless of input order", () => {
    const reversed = writeIso9660({ volumeId: "cidata", files: [...files].reverse() });
    const rotated = writeIso9660({ volumeId: "cidata", files: [...files.slice(3), ...files.slice(0, 3)] });
    expect(sha256(reversed)).toBe(sha256(image));
    expect(sha256(rotated)).toBe(sha256(image));
  });

  it("rejects bad names and volume ids", () => {
    const bad = ["", "User-Data", "a/b", "with space", "x".repeat(31), ".", "..", "trailing.", "semi;1"];
    for (const name of bad) {
      expect(() => writeIso9660({ volumeId: "cidata", files: [{ name, data: Buffer.alloc(1) }] }), name).toThrow(
        /invalid file name/,
      );
    }
    expect(() =>
      writeIso9660({ volumeId: "cidata", files: [{ name: "a", data: Buffer.alloc(1) }, { name: "a", data: Buffer.alloc(2) }] }),
    ).toThrow(/duplicate file name "a"/);
    for (const volumeId of ["", "x".repeat(33), "has space"]) {
      expect(() => writeIso9660({ volumeId, files: [] }), volumeId).toThrow(/invalid volume id/);
    }
    expect(() => writeIso9660({ volumeId: "cidata", files: [{ name: "x".repeat(30), data: Buffer.alloc(1) }] })).not.toThrow();
  });

  it("throws when the root directory does not fit in one sector", () => {
    const many = [...Array(40)].map((_, i) => ({ name: `${"f".repeat(27)}${String(i).padStart(3, "0")}`, data: Buffer.alloc(1) }));
    expect(() => writeIso9660({ volumeId: "cidata", files: many })).toThrow(/do not fit in a single directory sector/);
  });

  it("mounts through the kernel's isofs (needs loop mounting)", (ctx) => {
    const mnt = mkdtempSync(join(work, "mnt-"));
    const mount = spawnSync("mount", ["-o", "loop,ro", imagePath, mnt], { encoding: "utf8" });
    if (mount.status !== 0) {
      ctx.skip(`loop mounting is not available here: ${(mount.stderr || mount.error?.message || "").trim()}`);
    }
    try {
      expectSameFiles(mnt);
    } finally {
      spawnSync("umount", [mnt]);
    }
  });
});

describe("writeIso9660 with an El Torito UEFI boot entry", () => {
  const efi = distinctBytes(1024 * 1024 + 3);
  const root = distinctBytes(2 * 1024 * 1024);
  const { image: layout, extents } = layoutIso9660({
    volumeId: "RESIN-0123456789ab",
    files: [
      { name: "rootfs.squashfs", data: root },
      { name: "efi.img", data: efi },
    ],
    boot: { efiImage: "efi.img", catalog: "boot.cat" },
  });
  const image = inMemory(layout);
  const path = writeImage("boot.iso", image);

  it("xorriso reports the UEFI, no-emulation boot image at the efi.img extent, and reads every file back", () => {
    const report = execFileSync(XORRISO, ["-indev", path, "-report_el_torito", "plain"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    expect(report).toMatch(/El Torito cat path : \/boot\.cat/);
    expect(report).toMatch(new RegExp(`El Torito boot img :\\s+1\\s+UEFI\\s+y\\s+none\\s+0x0000\\s+0x00\\s+${Math.ceil(efi.length / 512)}\\s+${extents["efi.img"]!.sector}`));
    expect(report).toMatch(/El Torito img path :\s+1\s+\/efi\.img/);
    const out = join(work, "boot-extract");
    execFileSync(XORRISO, ["-osirrox", "on", "-indev", path, "-extract", "/", out], { stdio: "pipe" });
    expect(readFileSync(join(out, "efi.img")).equals(efi)).toBe(true);
    expect(readFileSync(join(out, "rootfs.squashfs")).equals(root)).toBe(true);
  });

  it("has a boot record at sector 17 pointing at a catalog whose validation entry checks out", () => {
    const record = image.subarray(17 * 2048, 18 * 2048);
    expect(record[0]).toBe(0);
    expect(record.toString("ascii", 1, 6)).toBe("CD001");
    expect(record.toString("ascii", 7, 30)).toBe("EL TORITO SPECIFICATION");
    const catalog = image.subarray(record.readUInt32LE(0x47) * 2048);
    let sum = 0;
    for (let i = 0; i < 32; i += 2) sum = (sum + catalog.readUInt16LE(i)) & 0xffff;
    expect(sum).toBe(0);
    expect([catalog[0], catalog[1], catalog[30], catalog[31]]).toEqual([1, 0xef, 0x55, 0xaa]);
    expect(catalog[32]).toBe(0x88);
    expect(catalog.readUInt32LE(32 + 8)).toBe(extents["efi.img"]!.sector);
  });

  it("leaves a plain config drive's layout as it was (no boot record, terminator at 17)", () => {
    const plain = writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: Buffer.from("{}") }] });
    expect(plain[17 * 2048]).toBe(255);
  });

  it("refuses a boot image that is not among the files", () => {
    expect(() => writeIso9660({ volumeId: "x", files: [], boot: { efiImage: "efi.img", catalog: "boot.cat" } })).toThrow(/EFI boot image "efi.img" is not among the files/);
  });
});
