// `resin init [DIR]`: a small working project to start from: a role built on stock
// services plus one service of its own, a test script, a CI workflow and a README.
// The files are Resin's own starter/ directory, copied as they are; nothing that
// exists is overwritten.
import { existsSync } from "node:fs";
import { cp, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ResinError } from "../util/errors.js";
import { installRoot } from "../util/paths.js";

export async function initCommand(dir: string): Promise<string> {
  const target = resolve(dir);
  if (existsSync(target) && (await readdir(target)).length > 0) {
    throw new ResinError(`${target} is not empty: resin init writes a new project and overwrites nothing`, "name a new or empty directory: resin init DIR");
  }
  await cp(join(installRoot(), "starter"), target, { recursive: true, errorOnExist: true, force: false, preserveTimestamps: false });
  return target;
}
