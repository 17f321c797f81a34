// Two builds of the same inputs give byte-identical images.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fileBytes, repoRoot, resin } from "./helpers.js";

const projects: string[] = [];
afterAll(() => projects.forEach((p) => rmSync(p, { recursive: true, force: true })));

function buildInFreshProject(): Record<string, string | undefined> {
  const dir = mkdtempSync(join(tmpdir(), "resin-repro-"));
  projects.push(dir);
  for (const part of ["machines", "services", "resin.lock.json"]) cpSync(join(repoRoot, part), join(dir, part), { recursive: true });
  const r = resin(["build", "consul-server", "--channel", "debian"], { RESIN_PROJECT: dir });
  if (r.status !== 0) throw new Error(`build failed:\n${r.stderr}`);
  expect(r.stderr).toContain("built: consul-server");
  const out = join(dir, "out", "images", "debian", "consul-server");
  return Object.fromEntries(["vmlinuz", "initrd.img", "rootfs.squashfs", "manifest.json"].map((f) => [f, fileBytes(join(out, f))]));
}

describe("reproducible images", () => {
  it("two independent builds of consul-server have the same sha256 for every file", () => {
    const first = buildInFreshProject();
    const second = buildInFreshProject();
    expect(first["initrd.img"]).toMatch(/^[0-9a-f]{64}$/);
    expect(second).toEqual(first);
  });
});
