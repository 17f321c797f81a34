import { describe, it, expect, afterEach } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readlinkSync, lstatSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeCpio } from "../../cli/image/cpio.js";
import type { TreeEntry } from "../../cli/image/tree.js";

const CPIO = "/usr/bin/cpio";

/** Minimal newc reader, to check header fields the cpio tool does not show. */
function parseNewc(buf: Buffer) {
  const out: { name: string; ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number; data: Buffer; offset: number }[] = [];
  let off = 0;
  for (;;) {
    expect(off % 4).toBe(0);
    expect(buf.toString("ascii", off, off + 6)).toBe("070701");
    const field = (i: number) => parseInt(buf.toString("ascii", off + 6 + i * 8, off + 14 + i * 8), 16);
    const nameSize = field(11);
    const fileSize = field(6);
    const name = buf.toString("utf8", off + 110, off + 110 + nameSize - 1);
    expect(buf[off + 110 + nameSize - 1]).toBe(0);
    const dataStart = Math.ceil((off + 110 + nameSize) / 4) * 4;
    const entry = {
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      nlink: field(4),
      mtime: field(5),
      data: buf.subarray(dataStart, dataStart + fileSize),
      offset: off,
    };
    out.push(entry);
    off = Math.ceil((dataStart + fileSize) / 4) * 4;
    if (name === "TRAILER!!!") break;
  }
  expect(off).toBe(buf.length);
  return out;
}

const tree: TreeEntry[] = [
  { type: "dir", path: "etc", mode: 0o755 },
  { type: "file", path: "etc/passwd", mode: 0o644, data: Buffer.from("root:x:0:0:root:/root:/bin/sh\n") },
  { type: "file", path: "etc/shadow", mode: 0o600, data: Buffer.from("root:*:0::::::\n") },
  { type: "dir", path: "root", mode: 0o700 },
  { type: "dir", path: "bin", mode: 0o755 },
  { type: "file", path: "bin/busybox", mode: 0o4755, data: Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]) },
  { type: "symlink", path: "bin/sh", target: "busybox" },
  { type: "symlink", path: "init", target: "/bin/busybox" },
  { type: "file", path: "empty", mode: 0o644, data: Buffer.alloc(0) },
  { type: "dir", path: "a-b", mode: 0o755 }, // '-' < '/': "a-b" sorts between "a" and "a/x"
  { type: "dir", path: "a", mode: 0o755 },
  { type: "file", path: "a/x", mode: 0o640, data: Buffer.from("abc") },
  { type: "file", path: "a-b/y", mode: 0o640, data: Buffer.from("abcd") },
];

function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const tempDirs: string[] = [];
afterEach(() => {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("writeCpio", () => {
  it("round-trips through the real cpio tool", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-cpio-"));
    tempDirs.push(dir);
    execFileSync(CPIO, ["-idmv", "--no-absolute-filenames"], { cwd: dir, input: writeCpio(tree), stdio: ["pipe", "pipe", "pipe"] });

    for (const e of tree) {
      const p = join(dir, e.path);
      const st = lstatSync(p);
      if (e.type === "dir") {
        expect(st.isDirectory(), e.path).toBe(true);
        expect(st.mode & 0o7777, e.path).toBe(e.mode);
      } else if (e.type === "file") {
        expect(st.isFile(), e.path).toBe(true);
        expect(st.mode & 0o7777, e.path).toBe(e.mode);
        expect(readFileSync(p).equals(e.data), e.path).toBe(true);
      } else {
        expect(st.isSymbolicLink(), e.path).toBe(true);
        expect(readlinkSync(p), e.path).toBe(e.target);
      }
    }
    expect(readdirSync(dir).sort()).toEqual(["a", "a-b", "bin", "empty", "etc", "init", "root"]);
  });

  it("cpio -t lists the entries in sorted order, without the trailer", () => {
    const listed = execFileSync(CPIO, ["-t"], { input: writeCpio(tree), stdio: ["pipe", "pipe", "pipe"] })
      .toString()
      .trim()
      .split("\n");
    expect(listed).toEqual([
      "a", "a-b", "a-b/y", "a/x", "bin", "bin/busybox", "bin/sh",
      "empty", "etc", "etc/passwd", "etc/shadow", "init", "root",
    ]);
  });

  it("writes the expected header fields", () => {
    const parsed = parseNewc(writeCpio(tree));
    expect(parsed.map((p) => p.ino)).toEqual([...Array(tree.length).keys()].map((i) => i + 1).concat([0]));
    for (const p of parsed.slice(0, -1)) {
      expect([p.uid, p.gid, p.mtime]).toEqual([0, 0, 0]);
      const type = p.mode & 0o170000;
      expect(p.nlink).toBe(type === 0o040000 ? 2 : 1);
    }
    const byName = new Map(parsed.map((p) => [p.name, p]));
    expect(byName.get("etc")!.mode).toBe(0o040755);
    expect(byName.get("bin/busybox")!.mode).toBe(0o104755);
    expect(byName.get("bin/sh")!.mode).toBe(0o120777);
    expect(byName.get("bin/sh")!.data.toString()).toBe("busybox");
    expect(parsed.at(-1)!.name).toBe("TRAILER!!!");
  });

  it("is deterministic regardless of input order", () => {
    const a = writeCpio(tree);
    for (const seed of [1, 2, 3, 42]) expect(writeCpio(shuffled(tree, seed)).equals(a)).toBe(true);
  });

  // How fast is the bench's business (its build times); here only that a file the size of
  // a Consul binary, with a length that needs padding, comes back whole.
  it("writes a 70 MB file whole", () => {
    const big = Buffer.alloc(70 * 1024 * 1024 + 3, 0xab);
    const out = writeCpio([{ type: "dir", path: "lib", mode: 0o755 }, { type: "file", path: "lib/big", mode: 0o644, data: big }]);
    const parsed = parseNewc(out);
    expect(parsed[1]!.data.equals(big)).toBe(true);
  });

  it("rejects duplicate paths", () => {
    expect(() =>
      writeCpio([
        { type: "dir", path: "etc", mode: 0o755 },
        { type: "file", path: "etc", mode: 0o644, data: Buffer.from("x") },
      ]),
    ).toThrow(/duplicate path "etc"/);
  });

  it("rejects entries whose parent directory is missing", () => {
    expect(() => writeCpio([{ type: "file", path: "etc/passwd", mode: 0o644, data: Buffer.from("x") }])).toThrow(
      /parent directory "etc" of "etc\/passwd" is missing/,
    );
    // A parent that exists but is not a directory counts as missing.
    expect(() =>
      writeCpio([
        { type: "symlink", path: "lib", target: "usr/lib" },
        { type: "file", path: "lib/x", mode: 0o644, data: Buffer.from("x") },
      ]),
    ).toThrow(/parent directory "lib"/);
  });

  it("rejects bad paths and modes", () => {
    for (const path of ["/etc", "a//b", "a/../b", "./a", "a/", ""]) {
      expect(() => writeCpio([{ type: "dir", path, mode: 0o755 }]), path).toThrow(/invalid path/);
    }
    expect(() => writeCpio([{ type: "dir", path: "a", mode: 0o040755 }])).toThrow(/invalid mode/);
  });
});
