import { describe, it, expect, afterEach } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createSecrets, generateSecrets, readSecrets } from "../../cli/bootstrap/secrets.js";
import { ResinError } from "../../cli/util/errors.js";

// A cluster's secrets are made once: createSecrets never replaces a file, and
// readSecrets never makes new ones, whatever state the file is in.

const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-secrets-"));
  scratch.push(dir);
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<ResinError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ResinError);
  return err as ResinError;
}

/** Write `text` as the secrets file, read it, and check nothing was created or changed. */
async function readBroken(text: string): Promise<ResinError> {
  const dir = tempDir();
  const path = join(dir, "secrets.json");
  writeFileSync(path, text, { mode: 0o600 });
  const err = await rejection(readSecrets(path));
  expect(readFileSync(path, "utf8")).toBe(text);
  expect(readdirSync(dir)).toEqual(["secrets.json"]);
  expect(err.message).toContain(path);
  expect(err.hint).toMatch(/will not replace/);
  return err;
}

const key = () => randomBytes(32).toString("base64");

describe("generateSecrets", () => {
  it("makes a 32-byte base64 gossip key, different each time", () => {
    const a = generateSecrets();
    const b = generateSecrets();
    expect(Buffer.from(a.gossipKey, "base64")).toHaveLength(32);
    expect(a.gossipKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(a.gossipKey).not.toBe(b.gossipKey);
  });
});

describe("createSecrets", () => {
  it("writes the file with mode 0600 in a 0700 directory it creates", async () => {
    const path = join(tempDir(), "clusters", "demo", "secrets.json");
    const secrets = await createSecrets(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual(secrets);
    expect(await readSecrets(path)).toEqual(secrets);
    expect(Buffer.from(secrets.gossipKey, "base64")).toHaveLength(32);
  });

  it("refuses to overwrite an existing file and leaves its bytes and mode unchanged", async () => {
    const path = join(tempDir(), "secrets.json");
    const original = Buffer.from(`{"gossipKey":"${key()}"}\n`);
    writeFileSync(path, original, { mode: 0o640 });
    const err = await rejection(createSecrets(path));
    expect(err.message).toContain(path);
    expect(err.message).toContain("already exist");
    expect(readFileSync(path).equals(original)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o640);
  });

  it("refuses a second call and keeps the first secrets", async () => {
    const path = join(tempDir(), "secrets.json");
    const first = await createSecrets(path);
    await rejection(createSecrets(path));
    expect(await readSecrets(path)).toEqual(first);
  });

  it("refuses to replace even an empty or broken file", async () => {
    const path = join(tempDir(), "secrets.json");
    writeFileSync(path, "");
    await rejection(createSecrets(path));
    expect(readFileSync(path, "utf8")).toBe("");
  });
});

describe("readSecrets", () => {
  it("reads a good file", async () => {
    const dir = tempDir();
    const path = join(dir, "secrets.json");
    const good = { gossipKey: key(), nomadGossipKey: key() };
    writeFileSync(path, JSON.stringify(good));
    expect(await readSecrets(path)).toEqual(good);
  });

  it("is a ResinError for a missing file, and does not create one", async () => {
    const dir = tempDir();
    const path = join(dir, "clusters", "demo", "secrets.json");
    const err = await rejection(readSecrets(path));
    expect(err.message).toContain(path);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(dirname(path))).toBe(false);
  });

  it("is a ResinError for a directory in the file's place", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "secrets.json"));
    await rejection(readSecrets(join(dir, "secrets.json")));
  });

  it.each([
    ["truncated JSON", '{"gossipKey": "abc'],
    ["an empty file", ""],
    ["text", "not json at all\n"],
  ])("is a ResinError for %s", async (_what, text) => {
    const err = await readBroken(text);
    expect(err.message).toContain("cannot be read");
  });

  it.each([
    ["a short key", JSON.stringify({ gossipKey: Buffer.alloc(16).toString("base64") })],
    ["a long key", JSON.stringify({ gossipKey: Buffer.alloc(64).toString("base64") })],
    ["a key that is a number", JSON.stringify({ gossipKey: 42 })],
    ["no key", JSON.stringify({})],
    ["an extra field", JSON.stringify({ gossipKey: key(), token: "x" })],
    ["an array", JSON.stringify([key()])],
    ["null", "null"],
  ])("is a ResinError for %s", async (_what, text) => {
    const err = await readBroken(text);
    expect(err.message).toContain("damaged");
  });

  it.each([
    ["junk after the key", (k: string) => `${k}!!!`],
    ["junk before the key", (k: string) => `!!${k}`],
    ["a key split by a newline", (k: string) => `${k.slice(0, 20)}\n${k.slice(20)}`],
  ])("is a ResinError for %s (Consul would refuse the key)", async (_what, mangle) => {
    const err = await readBroken(JSON.stringify({ gossipKey: mangle(key()) }));
    expect(err.message).toContain("gossipKey");
  });
});
