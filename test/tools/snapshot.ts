// "Nothing changed on disk", made checkable: every file under a directory with its
// sha256, to compare before and after a command that must refuse. Shared by the unit
// hostile-input suite and the e2e first-run suite.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "../../cli/util/hash.js";

/** Every regular file under `dir` (relative path → sha256); empty when `dir` does not exist. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out[p.slice(dir.length)] = sha256(readFileSync(p));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}
