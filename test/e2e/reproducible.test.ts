// Two builds of the same inputs give byte-identical images.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { cliPath, fileBytes, repoRoot, userProject } from "./helpers.js";

const projects: string[] = [];
afterAll(() => projects.forEach((p) => rmSync(p, { recursive: true, force: true })));

// Asynchronously: two builds with disk images take long enough under load that a
// synchronous spawn blocks the test worker past vitest's RPC timeout.
const outs: string[] = [];
async function buildInFreshProject(): Promise<Record<string, string | undefined>> {
  const dir = userProject("resin-repro-");
  projects.push(dir);
  const r = await execa(process.execPath, [cliPath, "build", "consul-server", "--channel", "debian"], { cwd: repoRoot, env: { RESIN_PROJECT: dir }, reject: false, timeout: 10 * 60_000 });
  if (r.exitCode !== 0) throw new Error(`build failed:\n${r.stderr}`);
  expect(r.stderr).toContain("built: consul-server");
  const out = join(dir, "out", "images", "debian", "consul-server");
  outs.push(out);
  return Object.fromEntries(["vmlinuz", "initrd.img", "rootfs.squashfs", "rootfs.verity", "disk.raw", "disk.qcow2", "disk.iso", "manifest.json"].map((f) => [f, fileBytes(join(out, f))]));
}

describe("reproducible images", () => {
  it("two independent builds of consul-server have the same sha256 for every file", async () => {
    const first = await buildInFreshProject();
    const second = await buildInFreshProject();
    expect(first["initrd.img"]).toMatch(/^[0-9a-f]{64}$/);
    // The dm-verity tree too: its salt comes from the squashfs, never from randomness.
    expect(first["rootfs.verity"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.raw"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.qcow2"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.iso"]).toMatch(/^[0-9a-f]{64}$/);
    expect(second).toEqual(first);
  });

  it("loads at boot only what a local VM needs: ena by its PCI aliases, FAT on demand, all of them in the image", async () => {
    expect(outs.length, "the build above ran").toBeGreaterThan(0);
    const rootfs = join(outs[0]!, "rootfs.squashfs");
    // unsquashfs (squashfs-tools) reads the files back out of the image.
    const cat = async (path: string) => {
      const r = await execa("unsquashfs", ["-cat", rootfs, path], { reject: false });
      expect(r.exitCode, `unsquashfs -cat ${path}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const atBoot = (await cat("etc/modules")).split("\n");
    expect(atBoot).toContain("virtio_net");
    for (const m of ["ena", "vfat", "nls_cp437", "nls_utf8"]) expect(atBoot).not.toContain(m);
    const pci = (await cat("etc/modules.pci")).split("\n");
    expect(pci.length).toBeGreaterThan(0);
    for (const line of pci) expect(line).toMatch(/^pci:v00001D0Fd[0-9A-F]{8}sv\*sd\*bc\*sc\*i\* ena$/);
    const listing = (await execa("unsquashfs", ["-l", rootfs])).stdout;
    for (const ko of ["ena/ena.ko", "fat/vfat.ko", "nls/nls_cp437.ko", "nls/nls_utf8.ko"]) expect(listing).toContain(ko);
    expect(await cat("usr/lib/resin/pci-modules")).toContain("modules.pci");
  });
});
