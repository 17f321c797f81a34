import { describe, it, expect, afterAll } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diskCmdline, diskLayout, imageParts, isoCmdline, isoLayout, writeDisks } from "../../cli/image/disk.js";
import { GPT_TYPE, readGpt } from "../../cli/image/gpt.js";
import { sha256Of, writeLayout, type Layout } from "../../cli/image/layout.js";
import { peSections } from "../../cli/image/uki.js";
import { tinyStub } from "./tiny-pe.js";

const work = mkdtempSync(join(tmpdir(), "resin-disk-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const rootfs = Buffer.alloc(1_500_000, 0x52);
const verityTree = Buffer.alloc(5 * 4096, 0x56);
const inputs = {
  digest: "sha256:" + "ab".repeat(32),
  role: "consul-server",
  channel: "debian",
  kernel: writeFile("vmlinuz", Buffer.alloc(700_000, 0x4b)),
  initrd: writeFile("initrd.img", Buffer.alloc(300_001, 0x49)),
  rootfs: writeFile("rootfs.squashfs", rootfs),
  verity: writeFile("rootfs.verity", verityTree),
  verityParams: { rootHash: "12".repeat(32), salt: "34".repeat(32), dataBlocks: 367 },
  stub: { data: tinyStub(), from: "deb:systemd-boot-efi test" },
};
const parts = await imageParts(inputs);

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

let assembled = 0;
/** A layout's bytes, as writeLayout writes them. */
async function assemble(image: Layout): Promise<Buffer> {
  const path = join(work, `assembled-${assembled++}`);
  await writeLayout(path, image);
  return readFileSync(path);
}

describe("disk image", async () => {
  const layout = await diskLayout(parts);
  const disk = await assemble(layout.image);

  it("has an ESP and a read-only root partition holding the squashfs, on 1 MiB boundaries", () => {
    const gpt = readGpt(disk);
    expect(gpt.backupMatches).toBe(true);
    expect(gpt.partitions.map((p) => [p.name, p.type])).toEqual([["resin-esp", GPT_TYPE.esp], ["resin-root", GPT_TYPE.rootX86_64], ["resin-verity", GPT_TYPE.rootVerityX86_64]]);
    for (const p of gpt.partitions) expect(p.firstLba % 2048).toBe(0);
    const root = gpt.partitions[1]!;
    expect(disk.subarray(root.firstLba * 512, root.firstLba * 512 + rootfs.length).equals(rootfs)).toBe(true);
    // The hash tree, as it is, in its own partition after the root.
    const tree = gpt.partitions[2]!;
    expect(tree.firstLba).toBeGreaterThan(root.lastLba);
    expect(disk.subarray(tree.firstLba * 512, tree.firstLba * 512 + verityTree.length).equals(verityTree)).toBe(true);
    expect(root.attributes).toBe(1n << 60n);
    expect(disk.length % (1024 * 1024)).toBe(0);
    expect(spawnSync("sgdisk", ["--verify", writeFile("disk.img", disk)], { encoding: "utf8" }).stdout).toContain("No problems found");
  });

  it("boots BOOTX64.EFI from a FAT ESP: the UKI with the kernel, initramfs and the fixed command line", async () => {
    const esp = readGpt(disk).partitions[0]!;
    const path = writeFile("esp.img", disk.subarray(esp.firstLba * 512, (esp.lastLba + 1) * 512));
    expect(spawnSync("fsck.fat", ["-n", path]).status).toBe(0);
    const uki = execFileSync("mtype", ["-i", path, "::/EFI/BOOT/BOOTX64.EFI"], { env: { ...process.env, MTOOLS_SKIP_CHECK: "1" }, maxBuffer: 64 << 20 });
    expect(sha256(uki)).toBe(await sha256Of(layout.uki));
    const cmdline = peSections(uki).find((s) => s.name === ".cmdline")!;
    expect(uki.toString("utf8", cmdline.rawOffset, cmdline.rawOffset + cmdline.virtualSize)).toBe(diskCmdline(inputs.verityParams));
    // The root and its tree by partition label, and the root hash: the UKI covers it.
    expect(diskCmdline(inputs.verityParams).split(" ")).toEqual(expect.arrayContaining(["resin.root=PARTLABEL=resin-root", "resin.verity.hash=PARTLABEL=resin-verity", `resin.verity.roothash=${"12".repeat(32)}`, `resin.verity.salt=${"34".repeat(32)}`, "resin.verity.blocks=367"]));
  });

  it("takes every GUID from the digest: the same image gives the same disk, another image other GUIDs", async () => {
    expect((await assemble((await diskLayout(parts)).image)).equals(disk)).toBe(true);
    const other = await diskLayout({ ...parts, digest: "sha256:" + "cd".repeat(32) });
    expect(other.diskGuid).not.toBe(layout.diskGuid);
    expect(other.partitions.map((p) => p.guid)).not.toEqual(layout.partitions.map((p) => p.guid));
  });

  it("writes disk.raw and a qcow2 of it, both byte-reproducible", async () => {
    const runs = [];
    for (const name of ["a", "b"]) {
      const dir = mkdtempSync(join(work, `${name}-`));
      runs.push({ dir, manifest: await writeDisks({ ...inputs, dir }) });
    }
    const [a, b] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(b.manifest).toEqual(a.manifest);
    expect(readFileSync(join(a.dir, "disk.raw")).equals(disk)).toBe(true);
    expect(readFileSync(join(b.dir, "disk.qcow2")).equals(readFileSync(join(a.dir, "disk.qcow2")))).toBe(true);
    // The qcow2 holds the same disk.
    const back = join(a.dir, "back.raw");
    execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", join(a.dir, "disk.qcow2"), back]);
    expect(readFileSync(back).equals(disk)).toBe(true);
    // And the ISO, written beside them.
    expect(readFileSync(join(b.dir, "disk.iso")).equals(readFileSync(join(a.dir, "disk.iso")))).toBe(true);
    expect(a.manifest.iso).toMatchObject({ file: "disk.iso", volumeId: "RESIN-abababababab", cmdline: isoCmdline("RESIN-abababababab", inputs.verityParams) });
  });
});

describe("bootable ISO", async () => {
  const iso = await isoLayout(parts);
  const image = await assemble(iso.image);
  const path = writeFile("disk.iso", image);

  it("boots by El Torito (UEFI) and by its hybrid GPT, whose ESP is the same efi.img", () => {
    const report = execFileSync("xorriso", ["-indev", path, "-report_el_torito", "plain"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    expect(report).toMatch(/El Torito img path :\s+1\s+\/efi\.img/);
    expect(report).toMatch(/El Torito boot img :\s+1\s+UEFI\s+y\s+none/);
    const gpt = readGpt(image);
    expect(gpt.backupMatches).toBe(true);
    expect(gpt.partitions.map((p) => [p.name, p.type])).toEqual([["resin-esp", GPT_TYPE.esp]]);
    expect(spawnSync("sgdisk", ["--verify", path], { encoding: "utf8" }).stdout).toContain("No problems found");
    const esp = gpt.partitions[0]!;
    const espPath = writeFile("iso-esp.img", image.subarray(esp.firstLba * 512, (esp.lastLba + 1) * 512));
    expect(spawnSync("fsck.fat", ["-n", espPath]).status).toBe(0);
    const out = join(work, "iso-extract");
    execFileSync("xorriso", ["-osirrox", "on", "-indev", path, "-extract", "/", out], { stdio: "pipe" });
    expect(readFileSync(join(out, "efi.img")).equals(readFileSync(espPath).subarray(0, readFileSync(join(out, "efi.img")).length))).toBe(true);
    expect(readFileSync(join(out, "rootfs.squashfs")).equals(rootfs)).toBe(true);
    expect(readFileSync(join(out, "rootfs.verity")).equals(verityTree)).toBe(true);
  });

  it("its UKI names the ISO by its label, and blkid reports that label", async () => {
    const esp = readGpt(image).partitions[0]!;
    const espPath = writeFile("iso-esp2.img", image.subarray(esp.firstLba * 512, (esp.lastLba + 1) * 512));
    const uki = execFileSync("mtype", ["-i", espPath, "::/EFI/BOOT/BOOTX64.EFI"], { env: { ...process.env, MTOOLS_SKIP_CHECK: "1" }, maxBuffer: 64 << 20 });
    expect(sha256(uki)).toBe(await sha256Of(iso.uki));
    const cmdline = peSections(uki).find((s) => s.name === ".cmdline")!;
    expect(uki.toString("utf8", cmdline.rawOffset, cmdline.rawOffset + cmdline.virtualSize)).toBe(isoCmdline(iso.volumeId, inputs.verityParams));
    expect(isoCmdline(iso.volumeId, inputs.verityParams).split(" ")).toEqual(expect.arrayContaining([`resin.root=LABEL=${iso.volumeId}`, "resin.verity.hash=/iso/rootfs.verity", `resin.verity.roothash=${"12".repeat(32)}`]));
    const blkid = spawnSync("blkid", ["-p", "-o", "export", path], { encoding: "utf8" }).stdout;
    expect(blkid).toContain(`LABEL=${iso.volumeId}`);
  });
});

function writeFile(name: string, data: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}
