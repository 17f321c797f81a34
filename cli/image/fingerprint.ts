// What an image's bytes depend on besides its specs, service files, packages and
// releases: the code that makes them and the host programs that code runs. Both go into
// the build's input digest, so a fix to the template engine or a new mksquashfs
// rebuilds, and the programs' versions are recorded in the manifest.
//
// The code is computed, not listed: build.ts and every module it imports, transitively,
// up to the npm packages. Type-only imports are left out: they vanish when compiled and
// cannot change a byte.
import { readFile } from "node:fs/promises";
import { dirname, extname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { sha256 } from "../util/hash.js";
import { ResinError } from "../util/errors.js";
import { HOST_TOOLS } from "../util/tools.js";

/**
 * The relative module specifiers a source file imports or re-exports for their values,
 * statically or dynamically; `import type` and `export type` are skipped.
 */
export function valueImportsOf(source: string): string[] {
  const specs: string[] = [];
  for (const m of source.matchAll(/^\s*(import|export)\b([^;"'`]*?)\bfrom\s*["']([^"']+)["']/gm)) {
    if (/^\s*type\b/.test(m[2]!)) continue;
    specs.push(m[3]!);
  }
  for (const m of source.matchAll(/^\s*import\s*["']([^"']+)["']/gm)) specs.push(m[1]!);
  for (const m of source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith("."));
}

/**
 * `entry` and every module it reaches through relative value imports, as paths relative
 * to `root` with their contents, sorted. `read` gives a file's text or undefined when
 * there is none; a `./x.js` specifier is read as `./x.ts` when run from source.
 */
export async function sourceClosure(entry: string, root: string, read: (path: string) => Promise<string | undefined>): Promise<[string, string][]> {
  const found = new Map<string, string>();
  const queue = [resolve(entry)];
  while (queue.length > 0) {
    const path = queue.shift()!;
    if (found.has(path)) continue;
    const text = await read(path);
    if (text === undefined) throw new Error(`the image builder's module ${path} cannot be read`);
    found.set(path, text);
    for (const spec of valueImportsOf(text)) {
      const target = resolve(dirname(path), spec);
      const candidates = target.endsWith(".js") ? [target, `${target.slice(0, -3)}.ts`] : [target];
      let hit: string | undefined;
      for (const c of candidates) {
        if (found.has(c) || (await read(c)) !== undefined) {
          hit = c;
          break;
        }
      }
      if (!hit) throw new Error(`${relative(root, path)} imports ${spec}, which cannot be read`);
      queue.push(hit);
    }
  }
  return [...found.entries()].map(([p, text]): [string, string] => [relative(root, p), text]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** One digest over a set of source files, names and contents. */
export function codeDigest(files: [string, string][]): string {
  return sha256(files.map(([name, text]) => `${name}:${sha256(text)}`).join("\n"));
}

let code: Promise<string> | undefined;

/** The digest of the code that writes image bytes: build.ts and all it imports (cli/ or dist/cli/). */
export function builderCode(): Promise<string> {
  code ??= (async () => {
    const self = fileURLToPath(import.meta.url);
    const here = dirname(self);
    const read = (p: string) => readFile(p, "utf8").catch(() => undefined);
    return codeDigest(await sourceClosure(join(here, `build${extname(self)}`), dirname(here), read));
  })();
  return code;
}

/**
 * The host programs the builder runs whose output lands in the image, with the flag
 * that prints their version. mksquashfs writes the root filesystem, depmod the modules
 * files, qemu-img the qcow2 disk, dpkg-deb unpacks the packages image files come from.
 * apt-get and apt-cache only resolve and download what resin.lock.json pins by sha256;
 * busybox's applet list comes from the locked package itself.
 */
export const IMAGE_TOOLS = {
  mksquashfs: ["-version"],
  depmod: ["-V"],
  "qemu-img": ["--version"],
  "dpkg-deb": ["--version"],
} as const satisfies Partial<Record<keyof typeof HOST_TOOLS, readonly string[]>>;

export type ImageTool = keyof typeof IMAGE_TOOLS;

/**
 * The version a program prints, from its first line saying "version": what follows the
 * word, distribution build included ("7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)").
 */
export function parseToolVersion(output: string): string | undefined {
  const line = output.split("\n").find((l) => /\bversion\s+\S/.test(l));
  return line?.replace(/^.*?\bversion\s+/, "").trim().replace(/\.$/, "");
}

let tools: Promise<Record<ImageTool, string>> | undefined;

/** The versions of the image tools on this host, asked once per process. */
export function imageToolVersions(): Promise<Record<ImageTool, string>> {
  tools ??= (async () => {
    const entries = await Promise.all(
      (Object.keys(IMAGE_TOOLS) as ImageTool[]).map(async (tool) => {
        const result = await execa(tool, [...IMAGE_TOOLS[tool]], { reject: false });
        const version = result.exitCode === 0 ? parseToolVersion(`${result.stdout}\n${result.stderr}`) : undefined;
        if (!version) {
          throw new ResinError(
            `cannot tell which version of ${tool} this host has (\`${tool} ${IMAGE_TOOLS[tool].join(" ")}\` ${result.exitCode === 0 ? "printed no version" : `failed: ${result.stderr || result.stdout || result.message}`})`,
            `install it with: apt-get install ${HOST_TOOLS[tool]}`,
          );
        }
        return [tool, version] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<ImageTool, string>;
  })();
  tools.catch(() => (tools = undefined));
  return tools;
}
