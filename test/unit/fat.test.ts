import { describe, it, expect, afterAll } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFat16 } from "../../cli/image/fat.js";

const work = mkdtempSync(join(tmpdir(), "resin-fat-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Bytes that differ in every 64-byte block, so a misplaced cluster would be noticed. */
function distinctBytes(size: number): Buffer {
  const blocks = [...Array(Math.ceil(size / 64))].map((_, i) => createHash("sha512").update(String(i)).digest());
  return Buffer.concat(blocks).subarray(0, size);
}

const files = [
  { path: "EFI/BOOT/BOOTX64.EFI", data: distinctBytes(3 * 1024 * 1024 + 7) },
  { path: "EFI/BOOT/README.TXT", data: Buffer.from("hello\n") },
  { path: "LOADER/EMPTY", data: Buffer.alloc(0) },
  { path: "TOP.BIN", data: Buffer.alloc(512, 7) },
];
const volume = () => writeFat16({ files, label: "RESIN-ESP", volumeId: 0x1234abcd, hiddenSectors: 2048 });

function imageFile(name: string, data: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}

const mtools = (args: string[]) => execFileSync(args[0]!, args.slice(1), { env: { ...process.env, MTOOLS_SKIP_CHECK: "1" }, maxBuffer: 64 * 1024 * 1024 });

describe("writeFat16", () => {
  it("passes fsck.fat with no changes to make", () => {
    const path = imageFile("check.img", volume());
    const result = spawnSync("fsck.fat", ["-n", "-v", path], { encoding: "utf8" });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain("2 FATs, 16 bit entries");
    expect(result.stdout).not.toMatch(/differ|invalid|bad|Free cluster summary wrong/i);
  });

  it("reads back every file, byte for byte, with mtools", () => {
    const path = imageFile("read.img", volume());
    for (const f of files) {
      expect(mtools(["mtype", "-i", path, `::/${f.path}`]).equals(f.data), f.path).toBe(true);
    }
    const listing = mtools(["mdir", "-i", path, "-b", "-/", "::/"]).toString();
    expect(listing.split("\n").filter(Boolean).sort()).toEqual(["::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/README.TXT", "::/LOADER/", "::/LOADER/EMPTY", "::/TOP.BIN"]);
  });

  it("carries the label and volume id blkid reports, and the FAT epoch as every date", () => {
    const path = imageFile("blkid.img", volume());
    const probe = execFileSync("/sbin/blkid", ["-p", "-o", "export", path], { encoding: "utf8" });
    expect(probe).toContain("LABEL=RESIN-ESP");
    expect(probe).toContain("UUID=1234-ABCD");
    expect(probe).toContain("VERSION=FAT16");
    const listing = mtools(["mdir", "-i", path, "::/EFI/BOOT"]).toString();
    expect(listing).toMatch(/BOOTX64\s+EFI\s+3145735\s+1980-01-01\s+0:00/);
  });

  it("is deterministic and a whole number of MiB", () => {
    const a = volume();
    expect(a.equals(volume())).toBe(true);
    expect(a.length % (1024 * 1024)).toBe(0);
  });

  it("stays FAT16 for a tiny volume and leaves the free space asked for", () => {
    const tiny = writeFat16({ files: [{ path: "A", data: Buffer.from("a") }], label: "T", volumeId: 1 });
    expect(spawnSync("fsck.fat", ["-n", imageFile("tiny.img", tiny)]).status).toBe(0);
    const roomy = writeFat16({ files: [{ path: "A", data: Buffer.from("a") }], label: "T", volumeId: 1, freeBytes: 20 * 1024 * 1024 });
    const info = mtools(["minfo", "-i", imageFile("roomy.img", roomy), "::"]).toString();
    expect(roomy.length).toBeGreaterThan(20 * 1024 * 1024);
    expect(info).toMatch(/FAT16/);
  });

  it("refuses names that are not upper-case 8.3, duplicates, and bad labels", () => {
    expect(() => writeFat16({ files: [{ path: "efi/boot", data: Buffer.alloc(1) }], label: "X", volumeId: 0 })).toThrow(/8\.3/);
    expect(() => writeFat16({ files: [{ path: "LONGFILENAME.EFI", data: Buffer.alloc(1) }], label: "X", volumeId: 0 })).toThrow(/8\.3/);
    expect(() => writeFat16({ files: [{ path: "A", data: Buffer.alloc(1) }, { path: "A", data: Buffer.alloc(1) }], label: "X", volumeId: 0 })).toThrow(/duplicate/);
    expect(() => writeFat16({ files: [{ path: "A/B", data: Buffer.alloc(1) }, { path: "A/B/C", data: Buffer.alloc(1) }], label: "X", volumeId: 0 })).toThrow(/is a file/);
    expect(() => writeFat16({ files: [], label: "lower", volumeId: 0 })).toThrow(/label/);
  });
});
