// Build the image set once for the whole e2e run, with the real CLI, so every suite
// boots the same images and none pays for a build.
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { GlobalSetupContext } from "vitest/node";

export default async function setup({ provide }: GlobalSetupContext): Promise<void> {
  const root = resolve(import.meta.dirname, "..", "..");
  const started = Date.now();
  // Async, so vitest's main process stays responsive while the image builds.
  const result = await execa(process.execPath, [join(root, "dist", "cli", "main.js"), "build", "consul-server", "--channel", "debian"], { cwd: root, stdio: ["ignore", "inherit", "inherit"], reject: false });
  if (result.exitCode !== 0) throw new Error(`resin build failed (exit ${result.exitCode}); see the output above`);
  const manifest = JSON.parse(readFileSync(join(root, "out", "images", "debian", "consul-server", "manifest.json"), "utf8"));
  process.stderr.write(`e2e: image set ready in ${((Date.now() - started) / 1000).toFixed(1)}s (consul-server ${manifest.digest})\n`);
  provide("imageDigests", { "consul-server": manifest.digest });
}
