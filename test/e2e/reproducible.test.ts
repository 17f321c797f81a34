// Two builds of the same inputs give byte-identical images.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { cliPath, fileBytes, repoRoot } from "./helpers.js";

const projects: string[] = [];
afterAll(() => projects.forEach((p) => rmSync(p, { recursive: true, force: true })));

// Asynchronously: two builds with disk images take long enough under load that a
// synchronous spawn blocks the test worker past vitest's RPC timeout.
async function buildInFreshProject(): Promise<Record<string, string | undefined>> {
  const dir = mkdtempSync(join(tmpdir(), "resin-repro-"));
  projects.push(dir);
  for (const part of ["machines", "services", "resin.lock.json"]) cpSync(join(repoRoot, part), join(dir, part), { recursive: true });
  const r = await execa(process.execPath, [cliPath, "build", "consul-server", "--channel", "debian"], { cwd: repoRoot, env: { RESIN_PROJECT: dir }, reject: false, timeout: 10 * 60_000 });
  if (r.exitCode !== 0) throw new Error(`build failed:\n${r.stderr}`);
  expect(r.stderr).toContain("built: consul-server");
  const out = join(dir, "out", "images", "debian", "consul-server");
  return Object.fromEntries(["vmlinuz", "initrd.img", "rootfs.squashfs", "disk.raw", "disk.qcow2", "disk.iso", "manifest.json"].map((f) => [f, fileBytes(join(out, f))]));
}

describe("reproducible images", () => {
  it("two independent builds of consul-server have the same sha256 for every file", async () => {
    const first = await buildInFreshProject();
    const second = await buildInFreshProject();
    expect(first["initrd.img"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.raw"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.qcow2"]).toMatch(/^[0-9a-f]{64}$/);
    expect(first["disk.iso"]).toMatch(/^[0-9a-f]{64}$/);
    expect(second).toEqual(first);
  });
});
