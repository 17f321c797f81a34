// The build's cache key covers every input that reaches an image's bytes: the code of
// cli/image/build.ts and all it imports (computed from the imports, not listed), and the
// versions of the host programs whose output is in the image.
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codeDigest, IMAGE_TOOLS, imageToolVersions, parseToolVersion, sourceClosure, valueImportsOf, type ImageTool } from "../../cli/image/fingerprint.js";
import { inputDigest } from "../../cli/image/build.js";
import { ImageManifestSchema } from "../../cli/image/manifest.js";
import { loadRole } from "../../cli/spec/load.js";

const REPO = resolve(import.meta.dirname, "..", "..");
const read = (p: string) => readFile(p, "utf8").catch(() => undefined);

/** A source tree in memory, read like the disk. */
function tree(files: Record<string, string>) {
  return async (p: string) => files[p];
}

describe("valueImportsOf", () => {
  it("follows value imports, re-exports, side-effect and dynamic imports, and skips type-only ones and packages", () => {
    const src = [
      `import { a } from "./a.js";`,
      `import type { B } from "./b.js";`,
      `import {\n  c,\n  type C,\n} from "../c/c.js";`,
      `export { d } from "./d.js";`,
      `export type { E } from "./e.js";`,
      `import "./side.js";`,
      `const f = await import("./f.js");`,
      `import { execa } from "execa";`,
      `import { join } from "node:path";`,
    ].join("\n");
    expect(valueImportsOf(src)).toEqual(["./a.js", "../c/c.js", "./d.js", "./side.js", "./f.js"]);
  });
});

describe("sourceClosure", () => {
  const files = {
    "/src/image/build.ts": `import { render } from "../spec/template.js";\nimport type { T } from "../spec/types.js";\n`,
    "/src/spec/template.ts": `import { sha256 } from "../util/hash.js";\n`,
    "/src/spec/types.ts": `export type T = string;\n`,
    "/src/util/hash.ts": `export const sha256 = 1;\n`,
    "/src/unrelated.ts": `export const x = 1;\n`,
  };

  it("holds the entry and every module it reaches, transitively, by path relative to the root", async () => {
    const closure = await sourceClosure("/src/image/build.ts", "/src", tree(files));
    expect(closure.map(([n]) => n)).toEqual(["image/build.ts", "spec/template.ts", "util/hash.ts"]);
  });

  it("changes its digest when a transitively imported file changes, and only then", async () => {
    const before = codeDigest(await sourceClosure("/src/image/build.ts", "/src", tree(files)));
    const deep = codeDigest(await sourceClosure("/src/image/build.ts", "/src", tree({ ...files, "/src/util/hash.ts": `export const sha256 = 2;\n` })));
    const unrelated = codeDigest(await sourceClosure("/src/image/build.ts", "/src", tree({ ...files, "/src/unrelated.ts": "changed" })));
    const typeOnly = codeDigest(await sourceClosure("/src/image/build.ts", "/src", tree({ ...files, "/src/spec/types.ts": "export type T = number;\n" })));
    expect(deep).not.toBe(before);
    expect(unrelated).toBe(before);
    expect(typeOnly).toBe(before);
  });

  it("names a module it cannot read", async () => {
    await expect(sourceClosure("/src/image/build.ts", "/src", tree({ "/src/image/build.ts": `import "./gone.js";\n` }))).rejects.toThrow(/imports \.\/gone\.js/);
  });

  describe("of the real builder", () => {
    let copy: string;
    beforeAll(async () => {
      copy = await mkdtemp(join(tmpdir(), "resin-fingerprint-"));
      await cp(join(REPO, "cli"), join(copy, "cli"), { recursive: true });
    });
    afterAll(async () => {
      await rm(copy, { recursive: true, force: true });
    });
    const closureOf = (root: string) => sourceClosure(join(root, "cli", "image", "build.ts"), join(root, "cli"), read);

    it("covers the template engine, the spec loader, package unpacking and hashing, but not the stages after image", async () => {
      const names = (await closureOf(REPO)).map(([n]) => n);
      for (const n of ["image/build.ts", "image/squashfs.ts", "image/kernel.ts", "image/disk.ts", "image/manifest.ts", "spec/template.ts", "spec/load.ts", "artifacts/cache.ts", "artifacts/official.ts", "util/hash.ts"]) {
        expect(names).toContain(n);
      }
      expect(names.every((n) => /^(util|spec|artifacts|image)\//.test(n))).toBe(true);
      // Its caller is not an input.
      expect(names).not.toContain("image/roles.ts");
    });

    it("changes when a file build.ts imports only through others changes (cli/spec/template.ts)", async () => {
      const before = codeDigest(await closureOf(copy));
      expect(before).toBe(codeDigest(await closureOf(REPO)));
      const template = join(copy, "cli", "spec", "template.ts");
      await writeFile(template, `${await readFile(template, "utf8")}\n// a fix to the template engine\n`);
      expect(codeDigest(await closureOf(copy))).not.toBe(before);
    });
  });
});

describe("image tool versions", () => {
  it("parse what each program prints", () => {
    expect(parseToolVersion("mksquashfs version 4.5.1 (2022/03/17)\ncopyright (C) 2022 Phillip Lougher\n")).toBe("4.5.1 (2022/03/17)");
    expect(parseToolVersion("kmod version 30\n+ZSTD +XZ -ZLIB +LIBCRYPTO -EXPERIMENTAL\n")).toBe("30");
    expect(parseToolVersion("qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n")).toBe("7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
    expect(parseToolVersion("Debian 'dpkg-deb' package archive backend version 1.21.22 (amd64).\nThis is free software\n")).toBe("1.21.22 (amd64)");
    expect(parseToolVersion("no such thing\n")).toBeUndefined();
  });

  it("are read from this machine's own programs", async () => {
    const versions = await imageToolVersions();
    expect(Object.keys(versions).sort()).toEqual(["depmod", "dpkg-deb", "mksquashfs", "qemu-img"]);
    for (const tool of Object.keys(IMAGE_TOOLS) as ImageTool[]) {
      const { stdout } = await execa(tool, [...IMAGE_TOOLS[tool]]);
      const version = versions[tool];
      expect(version).toMatch(/^\d+(\.\d+)*\b/);
      // The number the program printed on its version line.
      expect(stdout.split("\n").find((l) => l.includes("version"))).toContain(version.split(" ")[0]);
    }
  });
});

describe("the input digest", () => {
  it("is the same for the same inputs, and changes with the builder's code or a tool's version", async () => {
    const role = await loadRole(REPO, "consul-server", "debian");
    const builder = { code: "a".repeat(64), tools: { mksquashfs: "4.5.1 (2022/03/17)", depmod: "30", "qemu-img": "7.2.22", "dpkg-deb": "1.21.22" } };
    const digest = (b: typeof builder) => inputDigest(role, new Map(), new Map(), b);
    const base = await digest(builder);
    expect(await digest(structuredClone(builder))).toBe(base);
    expect(await digest({ ...builder, tools: { ...builder.tools, mksquashfs: "4.6.1 (2023/03/25)" } })).not.toBe(base);
    expect(await digest({ ...builder, tools: { ...builder.tools, "qemu-img": "8.2.2" } })).not.toBe(base);
    expect(await digest({ ...builder, code: "b".repeat(64) })).not.toBe(base);
  });
});

describe("the image manifest's builder field", () => {
  it("is optional, so manifests written before it still read", () => {
    const hex = (c: string) => c.repeat(64);
    const f = (file: string) => ({ file, sha256: hex("a"), size: 1 });
    const manifest = {
      role: "consul-server",
      channel: "debian",
      inputDigest: hex("b"),
      digest: `sha256:${hex("c")}`,
      kernel: { ...f("vmlinuz"), version: "6.1", modules: [] },
      initrd: f("initrd.img"),
      rootfs: f("rootfs.squashfs"),
      disk: { raw: f("disk.raw"), qcow2: f("disk.qcow2"), iso: f("disk.iso") },
      services: [],
      packages: [],
      releases: [],
      files: [],
      initramfsFiles: [],
    };
    expect(ImageManifestSchema.safeParse(manifest).success).toBe(true);
    const withBuilder = { ...manifest, builder: { code: hex("d"), tools: { mksquashfs: "4.5.1 (2022/03/17)" } } };
    expect(ImageManifestSchema.parse(withBuilder).builder).toEqual(withBuilder.builder);
    expect(ImageManifestSchema.safeParse({ ...manifest, builder: { code: hex("d"), tools: { mksquashfs: 4 } } }).success).toBe(false);
  });
});
