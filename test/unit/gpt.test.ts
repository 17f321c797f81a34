import { describe, it, expect, afterAll } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALIGN_SECTORS, GPT_ATTR, GPT_TYPE, SECTOR, derivedGuid, guidBytes, guidString, readGpt, usableRange, writeGpt, type GptLayout } from "../../cli/image/gpt.js";

const work = mkdtempSync(join(tmpdir(), "resin-gpt-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const SECTORS = 8 * ALIGN_SECTORS; // 8 MiB
const layout: GptLayout = {
  diskGuid: derivedGuid("sha256:abc", "disk"),
  sectors: SECTORS,
  partitions: [
    { name: "resin-esp", type: GPT_TYPE.esp, guid: derivedGuid("sha256:abc", "esp"), firstLba: 2048, lastLba: 4095 },
    { name: "resin-root", type: GPT_TYPE.rootX86_64, guid: derivedGuid("sha256:abc", "root"), firstLba: 4096, lastLba: 6 * 2048 - 1, attributes: GPT_ATTR.readOnly },
  ],
};

function disk(l: GptLayout = layout): Buffer {
  const { head, tail, tailLba } = writeGpt(l);
  const image = Buffer.alloc(l.sectors * SECTOR);
  head.copy(image, 0);
  tail.copy(image, tailLba * SECTOR);
  return image;
}

describe("GUIDs", () => {
  it("encode the first three fields little-endian, as UEFI stores them", () => {
    expect(guidBytes(GPT_TYPE.esp).toString("hex")).toBe("28732ac11ff8d211ba4b00a0c93ec93b");
    expect(guidString(guidBytes(GPT_TYPE.rootX86_64))).toBe(GPT_TYPE.rootX86_64);
  });

  it("derive the same version-4-form GUID from the same seed, and different ones per purpose", () => {
    const a = derivedGuid("sha256:1", "disk");
    expect(a).toBe(derivedGuid("sha256:1", "disk"));
    expect(a).not.toBe(derivedGuid("sha256:1", "root"));
    expect(a).not.toBe(derivedGuid("sha256:2", "disk"));
    expect(a).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  });
});

describe("writeGpt", () => {
  it("reads back: header and entry CRCs, partitions, names, attributes, and a matching backup", () => {
    const image = disk();
    const read = readGpt(image);
    expect(read.diskGuid).toBe(layout.diskGuid);
    expect(read.backupMatches).toBe(true);
    expect(read.partitions).toEqual(layout.partitions.map((p) => ({ ...p, attributes: p.attributes ?? 0n })));
    // Protective MBR: one 0xEE partition from LBA 1 over the rest of the disk.
    expect(image[446 + 4]).toBe(0xee);
    expect(image.readUInt32LE(446 + 8)).toBe(1);
    expect(image.readUInt32LE(446 + 12)).toBe(SECTORS - 1);
    expect(image.readUInt16LE(510)).toBe(0xaa55);
  });

  it("is deterministic", () => {
    expect(disk().equals(disk())).toBe(true);
  });

  it("is what util-linux and gdisk read, without complaint", () => {
    const path = join(work, "disk.img");
    writeFileSync(path, disk());
    const partx = execFileSync("partx", ["--raw", "--noheadings", "-o", "NR,START,END,NAME,UUID,TYPE", path], { encoding: "utf8" });
    expect(partx.trim().split("\n")).toEqual([
      `1 2048 4095 resin-esp ${layout.partitions[0]!.guid.toLowerCase()} ${GPT_TYPE.esp.toLowerCase()}`,
      `2 4096 12287 resin-root ${layout.partitions[1]!.guid.toLowerCase()} ${GPT_TYPE.rootX86_64.toLowerCase()}`,
    ]);
    const verify = spawnSync("sgdisk", ["--verify", path], { encoding: "utf8" });
    expect(verify.stdout).toContain("No problems found");
    const info = execFileSync("sgdisk", ["--info=2", path], { encoding: "utf8" });
    expect(info).toContain("Attribute flags: 1000000000000000");
    expect(info).toContain("Partition name: 'resin-root'");
  });

  it("refuses overlapping partitions and ranges outside the usable sectors", () => {
    const [esp, root] = layout.partitions as [GptLayout["partitions"][0], GptLayout["partitions"][0]];
    expect(() => writeGpt({ ...layout, partitions: [esp, { ...root, firstLba: 4095 }] })).toThrow(/overlap/);
    expect(() => writeGpt({ ...layout, partitions: [{ ...esp, firstLba: 10 }] })).toThrow(/outside the usable sectors/);
    expect(() => writeGpt({ ...layout, partitions: [{ ...root, lastLba: usableRange(SECTORS).last + 1 }] })).toThrow(/outside/);
    expect(() => writeGpt({ ...layout, partitions: [{ ...root, name: "x".repeat(37) }] })).toThrow(/longer than 36/);
  });
});
