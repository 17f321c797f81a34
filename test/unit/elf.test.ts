import { describe, it, expect, afterAll, beforeEach, inject, type TestContext } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readElfDeps } from "../../cli/image/elf.js";

// readElfDeps finds what a binary needs loaded: its program interpreter (PT_INTERP)
// and DT_NEEDED sonames. It is checked on hand-made ELF files (every branch) and on
// real binaries of this host, against readelf where that is installed.

import { PT_DYNAMIC, synthElf } from "./synth-elf.js";

describe("readElfDeps on hand-made ELF files", () => {
  it("reads the interpreter and the needed sonames in order, mapping DT_STRTAB through PT_LOAD", () => {
    const elf = synthElf({ interpreter: "/lib64/ld-linux-x86-64.so.2", needed: ["libfoo.so.1", "libc.so.6"] });
    expect(readElfDeps(elf)).toEqual({ machine: 62, interpreter: "/lib64/ld-linux-x86-64.so.2", needed: ["libfoo.so.1", "libc.so.6"] });
  });

  it("gives no needed libraries and no interpreter for a static binary", () => {
    expect(readElfDeps(synthElf({ static: true }))).toEqual({ machine: 62, interpreter: undefined, needed: [] });
  });

  it("reads a shared library (dynamic, no interpreter)", () => {
    expect(readElfDeps(synthElf({ needed: ["libc.so.6"] }))).toEqual({ machine: 62, interpreter: undefined, needed: ["libc.so.6"] });
  });

  it("stops at DT_NULL", () => {
    const elf = synthElf({ interpreter: "/lib/ld.so", needed: ["liba.so.1"], afterNull: ["libghost.so.9"] });
    expect(readElfDeps(elf)?.needed).toEqual(["liba.so.1"]);
  });

  it("throws when DT_STRTAB lies outside every loaded segment", () => {
    expect(() => readElfDeps(synthElf({ needed: ["libc.so.6"], strtabOutside: true }))).toThrow(/outside every loaded segment/);
  });

  it("refuses 32-bit and big-endian ELF files with a clear message", () => {
    expect(() => readElfDeps(synthElf({ static: true, elfClass: 1 }))).toThrow(/64-bit little-endian/);
    expect(() => readElfDeps(synthElf({ static: true, dataEncoding: 2 }))).toThrow(/64-bit little-endian/);
  });
});

describe("readElfDeps on files that are not ELF", () => {
  it("returns undefined for a shell script, text, an empty file and a near-miss magic", () => {
    expect(readElfDeps(Buffer.from("#!/bin/sh\nexec consul agent\n".repeat(4)))).toBeUndefined();
    expect(readElfDeps(Buffer.from("x".repeat(200)))).toBeUndefined();
    expect(readElfDeps(Buffer.alloc(0))).toBeUndefined();
    const almost = synthElf({ static: true });
    almost[3] = 0x47; // "\x7fELG"
    expect(readElfDeps(almost)).toBeUndefined();
  });

  it("returns undefined for the real shell scripts Resin puts in images", () => {
    const script = new URL("../../services/consul/run", import.meta.url);
    expect(readElfDeps(readFileSync(script))).toBeUndefined();
  });
});

// ---- real binaries -------------------------------------------------------------------

const hasReadelf = spawnSync("readelf", ["--version"]).status === 0;

/** What readelf says: interpreter and NEEDED, or undefined when readelf is missing. */
function readelf(path: string): { interpreter?: string; needed: string[]; dynamic: boolean } | undefined {
  if (!hasReadelf) return undefined;
  const headers = spawnSync("readelf", ["-lW", path], { encoding: "utf8" }).stdout;
  const dynamicSection = spawnSync("readelf", ["-dW", path], { encoding: "utf8" }).stdout;
  return {
    interpreter: headers.match(/Requesting program interpreter: ([^\]]+)\]/)?.[1],
    needed: [...dynamicSection.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!),
    dynamic: /^\s+DYNAMIC\s/m.test(headers),
  };
}

const LS = "/bin/ls";
const LIBC = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"].find(existsSync);
const LOADER = "/lib64/ld-linux-x86-64.so.2";
const onX86_64 = process.arch === "x64" && process.platform === "linux";
const NOT_X86_64 = "this host is not x86-64 Linux: the real binaries compared here are x86-64 ELF";

// Each test below names what it needs and skips with that reason where it is missing.
const needLs = (ctx: TestContext) => ctx.skip(!onX86_64 || !existsSync(LS), onX86_64 ? `${LS} is missing` : NOT_X86_64);
const needReadelf = (ctx: TestContext) => ctx.skip(!hasReadelf, "readelf (Debian's binutils) is not installed");

describe("readElfDeps on /bin/ls", () => {
  it("finds the x86-64 loader and libc", (ctx) => {
    needLs(ctx);
    const deps = readElfDeps(readFileSync(LS));
    expect(deps?.interpreter).toBe("/lib64/ld-linux-x86-64.so.2");
    expect(deps?.needed).toContain("libc.so.6");
  });

  it("agrees with readelf", (ctx) => {
    needLs(ctx);
    needReadelf(ctx);
    const want = readelf(LS)!;
    expect(readElfDeps(readFileSync(LS))).toEqual({ machine: 62, interpreter: want.interpreter, needed: want.needed });
  });
});

describe("readElfDeps on shared libraries", () => {
  const needLoader = (ctx: TestContext) => ctx.skip(!onX86_64 || !existsSync(LOADER), onX86_64 ? `${LOADER} is missing` : NOT_X86_64);
  it("finds nothing needed by the loader itself", (ctx) => {
    needLoader(ctx);
    expect(readElfDeps(readFileSync(LOADER))).toEqual({ machine: 62, interpreter: undefined, needed: [] });
  });

  it("agrees with readelf on libc", (ctx) => {
    needLoader(ctx);
    ctx.skip(!LIBC, "no libc.so.6 in /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu or /lib64");
    needReadelf(ctx);
    const want = readelf(LIBC!)!;
    expect(readElfDeps(readFileSync(LIBC!))).toEqual({ machine: 62, interpreter: want.interpreter, needed: want.needed });
    expect(want.needed).toContain("ld-linux-x86-64.so.2");
  });
});

// Debian's busybox package is dynamically linked (busybox-static is the static one),
// so /bin/busybox is compared with readelf whatever it is; a static binary is looked
// for separately, and compiled with `gcc -static` if none is found.
describe("readElfDeps on /bin/busybox", () => {
  it("agrees with readelf", (ctx) => {
    ctx.skip(!onX86_64, NOT_X86_64);
    ctx.skip(!existsSync("/bin/busybox"), "/bin/busybox is missing (Debian's busybox package)");
    needReadelf(ctx);
    const want = readelf("/bin/busybox")!;
    expect(readElfDeps(readFileSync("/bin/busybox"))).toEqual({ machine: 62, interpreter: want.interpreter, needed: want.needed });
  });
});

const scratch: string[] = [];
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

function findStaticBinary(): string | undefined {
  if (!hasReadelf || !onX86_64) return undefined;
  const candidates = [
    "/bin/busybox",
    "/usr/bin/busybox",
    "/bin/busybox.static",
    "/usr/libexec/valgrind/memcheck-amd64-linux",
    "/usr/libexec/valgrind/cachegrind-amd64-linux",
  ];
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    const r = readelf(c)!;
    const isElf64 = spawnSync("readelf", ["-hW", c], { encoding: "utf8" }).stdout.includes("ELF64");
    if (isElf64 && !r.dynamic && !r.interpreter) return c;
  }
  // Build one: a static C program, if gcc and a static libc are installed.
  if (spawnSync("gcc", ["--version"]).status !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "resin-elf-"));
  scratch.push(dir);
  writeFileSync(join(dir, "hello.c"), "int main(void) { return 0; }\n");
  const out = join(dir, "hello");
  return spawnSync("gcc", ["-static", "-o", out, join(dir, "hello.c")]).status === 0 ? out : undefined;
}

const staticBinary = findStaticBinary();
describe("readElfDeps on a real static binary", () => {
  it(`finds no interpreter and no libraries (${staticBinary ?? "none found"})`, (ctx) => {
    ctx.skip(!staticBinary, "no static x86-64 binary here, and none could be built (needs readelf, and gcc with a static libc)");
    expect(readElfDeps(readFileSync(staticBinary!))).toEqual({ machine: 62, interpreter: undefined, needed: [] });
  });
});

describe("readElfDeps on a real 32-bit binary", () => {
  it("refuses it with a clear message", (ctx) => {
    ctx.skip(!onX86_64, NOT_X86_64);
    ctx.skip(!existsSync("/usr/libexec/valgrind/cachegrind-x86-linux"), "no 32-bit binary here: /usr/libexec/valgrind/cachegrind-x86-linux (Debian's valgrind) is missing");
    expect(() => readElfDeps(readFileSync("/usr/libexec/valgrind/cachegrind-x86-linux"))).toThrow(/64-bit little-endian/);
  });
});

// A truncated ELF (a damaged download, a short read) is an error, never a silent
// "no dependencies". What the reader does today:
//   - shorter than the 64-byte ELF header: undefined, as if it were not ELF;
//   - header present, program headers or dynamic section cut off: it throws Node's
//     RangeError (ERR_OUT_OF_RANGE / ERR_BUFFER_OUT_OF_BOUNDS) from Buffer.read*, which
//     names neither the file nor the problem (see the report).
describe("readElfDeps on a truncated /bin/ls", () => {
  const ls = onX86_64 && existsSync(LS) ? readFileSync(LS) : Buffer.alloc(0);
  beforeEach((ctx) => needLs(ctx));

  it("reports a file cut inside the ELF header as truncated", () => {
    expect(() => readElfDeps(ls.subarray(0, 32))).toThrow(/truncated or corrupt ELF/);
  });

  it("throws when cut after the ELF header (program headers missing)", () => {
    expect(() => readElfDeps(ls.subarray(0, 64))).toThrow();
    expect(() => readElfDeps(ls.subarray(0, 100))).toThrow();
  });

  it("throws when cut before the dynamic section", () => {
    const dynamicAt = (() => {
      const phoff = Number(ls.readBigUInt64LE(0x20));
      for (let i = 0; i < ls.readUInt16LE(0x38); i++) {
        const ph = phoff + i * ls.readUInt16LE(0x36);
        if (ls.readUInt32LE(ph) === PT_DYNAMIC) return Number(ls.readBigUInt64LE(ph + 8));
      }
      throw new Error("/bin/ls has no PT_DYNAMIC");
    })();
    expect(() => readElfDeps(ls.subarray(0, dynamicAt + 8))).toThrow();
  });

  it("says the file is truncated, not just that an offset is out of range", () => {
    expect(() => readElfDeps(ls.subarray(0, 100))).toThrow(/truncated|too short|outside the file/i);
  });
});

// ---- aarch64 -------------------------------------------------------------------------

// Real aarch64 files from Debian's arm64 packages (unpacked by the unit suite's global
// setup, as resin.lock.json pins them): the reader must take them as readelf does, and
// say they are AArch64 (e_machine 183), whatever the host is.
describe("readElfDeps on Debian's arm64 packages", () => {
  const roots = inject("arm64Packages");
  const machineOf = (path: string) => spawnSync("readelf", ["-hW", path], { encoding: "utf8" }).stdout.match(/Machine:\s+(.+)/)?.[1]?.trim();

  it("reads the static busybox as AArch64, with no interpreter and no libraries, as readelf does", (ctx) => {
    needReadelf(ctx);
    const path = join(roots.busybox, "bin", "busybox");
    const want = readelf(path)!;
    expect(machineOf(path)).toBe("AArch64");
    expect(readElfDeps(readFileSync(path))).toEqual({ machine: 183, interpreter: want.interpreter, needed: want.needed });
  });

  it("reads Consul's arm64 binary as readelf does", (ctx) => {
    needReadelf(ctx);
    const path = join(roots.consul, "usr", "bin", "consul");
    const want = readelf(path)!;
    expect(machineOf(path)).toBe("AArch64");
    expect(readElfDeps(readFileSync(path))).toEqual({ machine: 183, interpreter: want.interpreter, needed: want.needed });
  });

  it("reads an arm64 kernel module (relocatable, no program headers) as AArch64 with nothing needed", (ctx) => {
    needReadelf(ctx);
    const [version] = readdirSync(join(roots.kernel, "lib", "modules"));
    const path = join(roots.kernel, "lib", "modules", version!, "kernel", "drivers", "md", "dm-verity.ko");
    expect(machineOf(path)).toBe("AArch64");
    expect(readElfDeps(readFileSync(path))).toEqual({ machine: 183, interpreter: undefined, needed: [] });
  });
});
