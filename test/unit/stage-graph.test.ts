// The stage graph (README, "How it works"): each folder under cli/ is a stage, and a
// stage imports only from itself and the stages before it. Commands only wire stages
// together, so a command never imports another command; and cluster/ and commands/
// reach machines only through provider/machine.ts and provider/local.ts, never QEMU itself.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const STAGES = ["util", "spec", "state", "artifacts", "image", "bootstrap", "provider", "cluster", "commands"] as const;
const cliDir = resolve(import.meta.dirname, "..", "..", "cli");

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
}

/** Every module specifier a file imports or re-exports, statically or dynamically. */
export function importsOf(source: string): string[] {
  const specs: string[] = [];
  for (const m of source.matchAll(/^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/gm)) specs.push(m[1]!);
  for (const m of source.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) specs.push(m[1]!);
  for (const m of source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) specs.push(m[1]!);
  return specs;
}

/** The stage a file under cli/ belongs to: its first folder; cli/main.ts sits above them all. */
function stageOf(file: string): { name: string; rank: number } {
  const first = relative(cliDir, file).split("/")[0]!;
  const rank = STAGES.indexOf(first as (typeof STAGES)[number]);
  if (first.endsWith(".ts")) return { name: "main", rank: STAGES.length };
  if (rank < 0) throw new Error(`cli/${first} is not a stage: add it to STAGES in test/unit/stage-graph.test.ts and to the README`);
  return { name: first, rank };
}

const cliSources = () => tsFiles(cliDir).map((file) => ({ file, source: readFileSync(file, "utf8") }));

/** Each import that breaks the graph, as "cli/<file>: imports <specifier> (<why>)". */
export function violations(sources: { file: string; source: string }[] = cliSources()): string[] {
  const found: string[] = [];
  for (const { file, source } of sources) {
    const from = stageOf(file);
    for (const spec of importsOf(source)) {
      if (!spec.startsWith(".")) continue; // node: and npm packages
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(cliDir + "/")) continue;
      const to = stageOf(target);
      const where = `cli/${relative(cliDir, file)}: imports ${spec}`;
      if (to.rank > from.rank) found.push(`${where} (${from.name} → ${to.name}, a later stage)`);
      else if (from.name === "commands" && to.name === "commands") found.push(`${where} (a command importing another command)`);
      else if ((from.name === "cluster" || from.name === "commands") && relative(cliDir, target).startsWith("provider/qemu/")) {
        found.push(`${where} (${from.name}/ reaches machines through provider/machine.ts and provider/local.ts only)`);
      }
    }
  }
  return found;
}

describe("the stage graph", () => {
  it("reads every kind of import", () => {
    const src = `import { a } from "./a.js";\nimport type {\n  B,\n  C,\n} from "../b/c.js";\nexport { d } from "./d.js";\nimport "./side.js";\nconst e = await import("./e.js");\n`;
    expect(importsOf(src)).toEqual(["./a.js", "../b/c.js", "./d.js", "./side.js", "./e.js"]);
  });

  it("has no arrow pointing up, and no command importing a command", () => {
    expect(violations()).toEqual([]);
  });

  it("sees a command or cluster/ reaching QEMU past the Machines interface", () => {
    const source = `import { vmState } from "../provider/qemu/provider.js";\nimport { localMachines } from "../provider/local.js";\n`;
    const files = ["commands/status.ts", "cluster/health.ts", "provider/local.ts"].map((f) => ({ file: join(cliDir, f), source }));
    expect(violations(files)).toEqual([
      "cli/commands/status.ts: imports ../provider/qemu/provider.js (commands/ reaches machines through provider/machine.ts and provider/local.ts only)",
      "cli/cluster/health.ts: imports ../provider/qemu/provider.js (cluster/ reaches machines through provider/machine.ts and provider/local.ts only)",
    ]);
  });
});
