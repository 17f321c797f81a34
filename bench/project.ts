// A user's project for the bench and the e2e suite: a scratch directory with machines/,
// Resin's stock specs beneath it, and stock parts copied in to be edited (a copy of a
// stock role or service says `override: true`, as a user's must).
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { installRoot } from "../cli/util/paths.js";

/** A new, empty project under the temporary directory. */
export function userProject(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, "machines"));
  return dir;
}

/** Copy a stock role (machines/R.yml) or service (services/S) into a project as its own, with `override: true`. */
export function overrideStock(project: string, part: string): void {
  cpSync(join(installRoot(), part), join(project, part), { recursive: true });
  const spec = part.endsWith(".yml") ? join(project, part) : join(project, part, "service.yml");
  writeFileSync(spec, `${readFileSync(spec, "utf8")}override: true\n`);
}
