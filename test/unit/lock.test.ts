import { describe, it, expect, afterEach } from "vitest";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emptyLock, lockKey, readLock, upstreamVersion, writeLock, type Lock } from "../../cli/artifacts/lock.js";
import { ResinError } from "../../cli/util/errors.js";

const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-lock-"));
  scratch.push(dir);
  return dir;
}

const SHA = "a".repeat(64);
const sampleLock = (): Lock => ({
  lockfileVersion: 1,
  debian: {
    [lockKey("bullseye", "consul")]: { package: "consul", version: "1.8.7+dfsg1-2+b3", suite: "bullseye", sha256: SHA, size: 1234 },
    [lockKey("bookworm", "busybox-static")]: { package: "busybox-static", version: "1:1.35.0-4+b3", suite: "bookworm", sha256: "b".repeat(64), size: 99 },
  },
});

describe("upstreamVersion", () => {
  it.each([
    ["1.8.7+dfsg1-2+b3", "1.8.7"],
    ["1:1.35.0-4+deb12u1+b1", "1.35.0"],
    ["6.1.176-1", "6.1.176"],
    ["1:1.35.0-4", "1.35.0"],
    ["2.36-9+deb12u10", "2.36"],
    ["1.47.0-2", "1.47.0"],
    ["1.2.0~rc1-1", "1.2.0"],
    ["20230311", "20230311"],
    ["12:3.4.5", "3.4.5"],
  ])("%s → %s", (debian, upstream) => {
    expect(upstreamVersion(debian)).toBe(upstream);
  });
});

describe("readLock", () => {
  it("gives an empty lock when there is no file", async () => {
    const path = join(tempDir(), "resin.lock.json");
    expect(await readLock(path)).toEqual(emptyLock());
    expect(existsSync(path)).toBe(false);
  });

  it("reads back what writeLock wrote, with keys sorted and a final newline", async () => {
    const path = join(tempDir(), "resin.lock.json");
    await writeLock(path, sampleLock());
    expect(await readLock(path)).toEqual(sampleLock());
    const text = readFileSync(path, "utf8");
    expect(text.endsWith("}\n")).toBe(true);
    expect(Object.keys(JSON.parse(text).debian)).toEqual(["bookworm/busybox-static", "bullseye/consul"]);
    // No temporary file is left next to it.
    expect(readdirSync(join(path, ".."))).toEqual(["resin.lock.json"]);
  });

  it("gives a clear ResinError for a file that is not JSON, and leaves the file alone", async () => {
    const path = join(tempDir(), "resin.lock.json");
    const broken = '{\n  "lockfileVersion": 1,\n  "debian": {\n<<<<<<< HEAD\n';
    writeFileSync(path, broken);
    const err = await readLock(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ResinError);
    const e = err as ResinError;
    expect(e.message).toContain(path);
    expect(e.message).toContain("not valid JSON");
    expect(e.hint).toMatch(/restore/i);
    expect(readFileSync(path, "utf8")).toBe(broken);
  });

  it.each([
    ["a wrong lockfileVersion", { lockfileVersion: 2, debian: {} }, "lockfileVersion"],
    ["a bad sha256", { lockfileVersion: 1, debian: { "bullseye/consul": { ...sampleLock().debian["bullseye/consul"]!, sha256: "xyz" } } }, "debian.bullseye/consul.sha256"],
    ["an unknown key", { lockfileVersion: 1, debian: {}, extra: true }, "extra"],
    ["a missing version", { lockfileVersion: 1, debian: { "bullseye/consul": { package: "consul", suite: "bullseye", sha256: SHA, size: 1 } } }, "version"],
  ])("rejects %s with a ResinError naming the field, and leaves the file alone", async (_what, data, field) => {
    const path = join(tempDir(), "resin.lock.json");
    const text = JSON.stringify(data);
    writeFileSync(path, text);
    await expect(readLock(path)).rejects.toThrow(ResinError);
    await expect(readLock(path)).rejects.toThrow(field);
    expect(readFileSync(path, "utf8")).toBe(text);
  });
});
