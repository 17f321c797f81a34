// Images as layouts (cli/image/layout.ts): pieces land at their offsets with zeros
// between them whether they are in memory, files or nested layouts; and writing a disk
// image copies its payload through a fixed buffer, so memory does not grow with it.
import { describe, it, expect, afterAll } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeDisks } from "../../cli/image/disk.js";
import { chunksOf, fileBytes, inMemory, layout, sha256Of, writeLayout } from "../../cli/image/layout.js";
import { tinyStub } from "./tiny-pe.js";

const work = mkdtempSync(join(tmpdir(), "resin-layout-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function file(name: string, data: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}

/** Bytes that differ in every 64-byte block, so a misplaced piece would be noticed. */
function distinctBytes(size: number): Buffer {
  const blocks = [...Array(Math.ceil(size / 64))].map((_, i) => createHash("sha512").update(String(i)).digest());
  return Buffer.concat(blocks).subarray(0, size);
}

const MiB = 1024 * 1024;

describe("a layout", () => {
  // A file over the 1 MiB chunk size, of odd length, inside a nested layout.
  const big = distinctBytes(2 * MiB + 3);
  const small = Buffer.from("header");
  const nested = (data: Buffer | Awaited<ReturnType<typeof fileBytes>>) => layout(4 * MiB, [{ offset: 7, data: small }, { offset: 4096, data }]);
  const expected = Buffer.alloc(5 * MiB + 1);
  small.copy(expected, 5);
  small.copy(expected, 100 + 7);
  big.copy(expected, 100 + 4096);

  it("is written with each piece at its offset and zeros elsewhere, whether the piece is in memory, a file or a layout", async () => {
    const image = layout(expected.length, [{ offset: 100, data: nested(await fileBytes(file("big", big))) }, { offset: 5, data: small }]);
    const path = join(work, "image");
    await writeLayout(path, image);
    expect(readFileSync(path).equals(expected)).toBe(true);
    expect(inMemory(layout(expected.length, [{ offset: 5, data: small }, { offset: 100, data: nested(big) }])).equals(expected)).toBe(true);
    const chunks: Buffer[] = [];
    for await (const chunk of chunksOf(image)) chunks.push(Buffer.from(chunk));
    expect(Buffer.concat(chunks).equals(expected)).toBe(true);
    expect(await sha256Of(image)).toBe(createHash("sha256").update(expected).digest("hex"));
    expect(() => inMemory(image)).toThrow(/is a file; write the layout with writeLayout/);
  });

  it("refuses overlapping pieces, pieces past its end, and a file that shrank after it was laid out", async () => {
    expect(() => layout(10, [{ offset: 0, data: Buffer.alloc(4, 1) }, { offset: 3, data: Buffer.alloc(2, 1) }])).toThrow(/overlaps/);
    expect(() => layout(10, [{ offset: 8, data: Buffer.alloc(4, 1) }])).toThrow(/after its size of 10/);
    const path = file("shrinks", Buffer.alloc(3000, 1));
    const image = layout(4096, [{ offset: 0, data: await fileBytes(path) }]);
    truncateSync(path, 1000);
    await expect(writeLayout(join(work, "out"), image)).rejects.toThrow(/ends at byte 1000, but had 3000 bytes/);
  });
});

describe("writing the disk images", () => {
  it("keeps memory well under a 200 MiB root filesystem: it is copied, never held", async () => {
    const payload = 200 * MiB;
    const rootfs = join(work, "rootfs.squashfs");
    writeFileSync(rootfs, distinctBytes(MiB));
    truncateSync(rootfs, payload); // the rest reads as zeros, without taking the disk space
    const dir = mkdtempSync(join(work, "disks-"));
    const kernel = file("vmlinuz", distinctBytes(700_001));
    const initrd = file("initrd.img", distinctBytes(300_001));
    const before = process.memoryUsage();
    let peak = { rss: before.rss, arrayBuffers: before.arrayBuffers };
    const sample = setInterval(() => {
      const now = process.memoryUsage();
      peak = { rss: Math.max(peak.rss, now.rss), arrayBuffers: Math.max(peak.arrayBuffers, now.arrayBuffers) };
    }, 5);
    let manifest;
    try {
      manifest = await writeDisks({
        dir,
        digest: "sha256:" + "ef".repeat(32),
        role: "memory",
        channel: "debian",
        kernel,
        initrd,
        rootfs,
        verity: file("rootfs.verity", distinctBytes(8 * 4096)),
        verityParams: { rootHash: "12".repeat(32), salt: "34".repeat(32), dataBlocks: 256 },
        stub: { data: tinyStub(), from: "test" },
      });
    } finally {
      clearInterval(sample);
    }
    const growth = { rss: peak.rss - before.rss, arrayBuffers: peak.arrayBuffers - before.arrayBuffers };
    console.log(`writeDisks, ${payload / MiB} MiB root filesystem: RSS +${(growth.rss / MiB).toFixed(1)} MiB, arrayBuffers +${(growth.arrayBuffers / MiB).toFixed(1)} MiB`);
    expect(manifest.raw.size).toBeGreaterThan(payload);
    expect(manifest.iso.size).toBeGreaterThan(payload);
    expect(growth.rss, `RSS grew by ${growth.rss} bytes`).toBeLessThan(payload / 4);
    expect(growth.arrayBuffers, `arrayBuffers grew by ${growth.arrayBuffers} bytes`).toBeLessThan(payload / 4);
  }, 60_000);
});
