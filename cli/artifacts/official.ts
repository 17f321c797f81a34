// The official-release channel: HashiCorp's own linux_amd64 (or linux_arm64) zips, trusted only after
// their SHA256SUMS verifies against HashiCorp's release key and the zip matches its line
// in those sums. A verified zip goes into the content-addressed cache, and an index file
// per release, <cache>/releases/<product>/<version>/<platform>.json (linux_amd64.json, linux_arm64.json), records which blob
// it is and who signed it, so that later builds need no network. The SHA256SUMS and its
// signature are cached beside it (as blobs too), and every read of the index verifies
// them again against the keys trusted now: a release cached while RESIN_RELEASE_KEY_FILE
// named another key counts as absent once that key is no longer trusted.
//
// Failure rule: nothing that failed verification ever reaches the cache, and a failure
// removes only this run's temp files, never an earlier good copy.
import { createWriteStream, existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { pipeline } from "node:stream/promises";
import { request } from "undici";
import * as openpgp from "openpgp";
import { unzipSync } from "fflate";
import { ResinError } from "../util/errors.js";
import { canonicalJson, sha256File } from "../util/hash.js";
import { writeFileAtomic } from "../util/files.js";
import type { Log } from "../util/log.js";
import { cacheHome } from "../util/paths.js";
import { hasBlob, putBlob, verifiedBlob } from "./cache.js";
import { ARCHES, DEFAULT_ARCH, type Arch } from "../spec/arch.js";
import { HASHICORP_KEY_FINGERPRINT, HASHICORP_PUBLIC_KEY } from "./hashicorp-key.js";
import {
  PRODUCTS,
  checkRef,
  formatRef,
  isValidVersion,
  parseReleaseFileName,
  parseSha256Sums,
  releaseDirUrl,
  RELEASE_KEY_ID,
  releaseFiles,
  releasePlatform,
  releaseUrls,
  type Product,
  type ReleaseFiles,
  type ReleaseRef,
} from "./releases.js";

/** What the cache knows about one verified release archive. */
export interface ReleaseIndex {
  product: Product;
  version: string;
  /** The archive's file name, e.g. nomad_1.9.3_linux_amd64.zip. */
  file: string;
  /** The archive's sha256: its blob in the cache. */
  sha256: string;
  /** sha256 of the SHA256SUMS file whose signature was verified: its blob in the cache. */
  sumsSha256: string;
  /** sha256 of that signature: its blob in the cache. */
  sigSha256: string;
  /** Primary key fingerprint (lower-case hex) of the key that signed the sums. */
  signer: string;
}

export interface ReleaseOptions {
  log: Log;
  /** Armored public key(s) to trust instead of HashiCorp's (tests, private mirrors). */
  trustedKeys?: string;
}

const SMALL_FILE_LIMIT = 1024 * 1024; // SHA256SUMS and .sig are a few hundred bytes
const ARCHIVE_LIMIT = 2 * 1024 ** 3; // far above any real release; stops a runaway server filling the disk
const TIMEOUT_MS = 120_000;

/**
 * Where releases are downloaded from. RESIN_RELEASES_URL points at a mirror (or a test
 * server) laid out like releases.hashicorp.com.
 */
export function releaseBaseUrl(): string {
  return process.env.RESIN_RELEASES_URL ?? "https://releases.hashicorp.com";
}

function releasesRoot(): string {
  return join(cacheHome(), "releases");
}

function indexPath(ref: ReleaseRef): string {
  return join(releasesRoot(), ref.product, ref.version, `${releasePlatform(ref)}.json`);
}

function fail(ref: ReleaseRef, file: string, what: string, hint?: string): ResinError {
  return new ResinError(`${ref.product} ${ref.version}: ${file}: ${what}`, hint);
}

function spacedFingerprint(fpr: string): string {
  return fpr.toUpperCase().replace(/(.{4})(?=.)/g, "$1 ");
}

// ---------------------------------------------------------------------------------
// Signature

interface TrustedKeys {
  keys: openpgp.Key[];
  /** When set, the signing key's primary fingerprint must be exactly this. */
  pinned?: string;
  /** Names the trusted key(s) in error messages. */
  source: string;
}

/**
 * Which keys to trust: the caller's, else those in RESIN_RELEASE_KEY_FILE (an armored
 * public key, for a mirror that signs its own sums, and for end-to-end tests against a
 * local server), else HashiCorp's release key pinned by fingerprint.
 */
async function trustedKeySet(trustedKeys?: string): Promise<TrustedKeys> {
  if (trustedKeys !== undefined) return { keys: await readArmoredKeys(trustedKeys, "the given trusted key"), source: "the given trusted key" };
  const file = process.env.RESIN_RELEASE_KEY_FILE;
  if (file) {
    const source = `the key in RESIN_RELEASE_KEY_FILE (${file})`;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      throw new ResinError(`cannot read ${source}: ${(e as Error).message}`, "point RESIN_RELEASE_KEY_FILE at an armored OpenPGP public key, or unset it to trust HashiCorp's key");
    }
    return { keys: await readArmoredKeys(text, source), source };
  }
  return {
    keys: await readArmoredKeys(HASHICORP_PUBLIC_KEY, "HashiCorp's release key"),
    pinned: HASHICORP_KEY_FINGERPRINT,
    source: `HashiCorp's release key (${spacedFingerprint(HASHICORP_KEY_FINGERPRINT)})`,
  };
}

async function readArmoredKeys(armoredKeys: string, source: string): Promise<openpgp.Key[]> {
  try {
    return await openpgp.readKeys({ armoredKeys });
  } catch (e) {
    throw new ResinError(`${source} is not an armored OpenPGP public key: ${(e as Error).message}`);
  }
}

/**
 * Verify a detached OpenPGP signature of a SHA256SUMS file. Returns the primary key
 * fingerprint of the signer. Throws ResinError when the signature is malformed, made by
 * a key that is not trusted, or does not match the bytes.
 */
export async function verifySums(sumsText: Buffer, signature: Buffer, trustedKeys?: string): Promise<{ signer: string }> {
  const trusted = await trustedKeySet(trustedKeys);
  let sig: openpgp.Signature;
  try {
    // HashiCorp publishes binary signatures; a mirror may armor them.
    sig = signature.subarray(0, 40).toString("latin1").includes("-----BEGIN PGP SIGNATURE")
      ? await openpgp.readSignature({ armoredSignature: signature.toString("utf8") })
      : await openpgp.readSignature({ binarySignature: new Uint8Array(signature) });
  } catch (e) {
    throw new ResinError(`signature is not an OpenPGP signature: ${(e as Error).message}`);
  }

  // Name the foreign key plainly: "signed by another key" is the case most worth telling apart.
  const issuers = sig.getSigningKeyIDs();
  const candidates = trusted.keys.filter((k) => issuers.some((id) => k.getKeys(id).length > 0));
  if (candidates.length === 0) {
    const ids = issuers.map((id) => id.toHex().toUpperCase()).join(", ") || "an unnamed key";
    throw new ResinError(`signature was made by key ${ids}, which is not ${trusted.source}`);
  }

  const message = await openpgp.createMessage({ binary: new Uint8Array(sumsText) });
  const result = await openpgp.verify({ message, signature: sig, verificationKeys: candidates, format: "binary" });
  let problem = "no signature by a trusted key";
  for (const s of result.signatures) {
    try {
      await s.verified;
    } catch (e) {
      problem = (e as Error).message;
      continue;
    }
    const key = candidates.find((k) => k.getKeys(s.keyID).length > 0);
    if (!key) continue;
    const signer = key.getFingerprint();
    // A primary key is named by its full fingerprint, not by the 64-bit key id the signature carries.
    if (trusted.pinned !== undefined && signer !== trusted.pinned) {
      problem = `signer ${spacedFingerprint(signer)} is not ${trusted.source}`;
      continue;
    }
    return { signer };
  }
  if (/creation time is in the future/.test(problem)) {
    // openpgp.js judges the key by the self-signatures it had when the signature was made.
    problem += " (the key's self-signatures are all newer than this signature: use an export of the key that keeps its older self-signatures)";
  }
  throw new ResinError(`signature does not verify against ${trusted.source}: ${problem}`);
}

// ---------------------------------------------------------------------------------
// Cache

function isIndex(value: unknown, ref: ReleaseRef): value is ReleaseIndex {
  const v = value as Partial<ReleaseIndex> | null;
  return (
    !!v &&
    v.product === ref.product &&
    v.version === ref.version &&
    v.file === releaseFiles(ref).zip &&
    typeof v.sha256 === "string" &&
    /^[0-9a-f]{64}$/.test(v.sha256) &&
    typeof v.sumsSha256 === "string" &&
    /^[0-9a-f]{64}$/.test(v.sumsSha256) &&
    typeof v.sigSha256 === "string" &&
    /^[0-9a-f]{64}$/.test(v.sigSha256) &&
    typeof v.signer === "string"
  );
}

/**
 * The index entry of a cached release whose SHA256SUMS verifies now, against the keys
 * trusted now (`trustedKeys`, else RESIN_RELEASE_KEY_FILE, else HashiCorp's key), and
 * lists the cached archive; else undefined. A damaged index, one from before the sums
 * were cached, and one whose signer is not trusted now all count as absent.
 */
export async function cachedRelease(ref: ReleaseRef, trustedKeys?: string): Promise<ReleaseIndex | undefined> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(indexPath(ref), "utf8"));
  } catch {
    return undefined;
  }
  if (!isIndex(value, ref) || !hasBlob(value.sumsSha256) || !hasBlob(value.sigSha256)) return undefined;
  try {
    const what = `${ref.product} ${ref.version}`;
    const sumsText = await readFile(await verifiedBlob(value.sumsSha256, `${what} ${releaseFiles(ref).sums}`));
    const signature = await readFile(await verifiedBlob(value.sigSha256, `${what} ${releaseFiles(ref).sig}`));
    const verified = await verifiedSums(ref, sumsText, signature, { log: () => undefined, trustedKeys });
    return verified.expected === value.sha256 ? { ...value, signer: verified.signer } : undefined;
  } catch (e) {
    if (e instanceof ResinError) return undefined;
    throw e;
  }
}

/** Every release in the cache, sorted by product, version, then architecture. */
export async function listCachedReleases(): Promise<ReleaseIndex[]> {
  const found: ReleaseIndex[] = [];
  for (const product of PRODUCTS) {
    const dir = join(releasesRoot(), product);
    if (!existsSync(dir)) continue;
    for (const version of (await readdir(dir)).sort()) {
      if (!isValidVersion(version)) continue;
      for (const arch of ARCHES) {
        const entry = await cachedRelease({ product, version, ...(arch === DEFAULT_ARCH ? {} : { arch }) });
        if (entry) found.push(entry);
      }
    }
  }
  return found;
}

/**
 * The files inside a cached release archive (after re-checking its sha256), by path
 * within the zip. `want` limits which files are decompressed. Directory entries are left
 * out; an entry with an absolute path or a ".." component is refused outright.
 */
export async function releaseEntries(ref: ReleaseRef, want: (name: string) => boolean = () => true): Promise<Map<string, Buffer>> {
  const entry = await cachedRelease(ref);
  if (!entry) throw missingReleaseError([ref]);
  const path = await verifiedBlob(entry.sha256, `${ref.product} ${ref.version} release archive ${entry.file}`);
  const data = await readFile(path);
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(data, {
      filter: (f) => {
        if (isUnsafeEntryName(f.name)) throw fail(ref, entry.file, `archive entry ${JSON.stringify(f.name)} has an absolute path or "..", refusing to unpack it`);
        return !f.name.endsWith("/") && want(f.name);
      },
    });
  } catch (e) {
    if (e instanceof ResinError) throw e;
    throw fail(ref, entry.file, `is not a readable zip archive: ${(e as Error).message}`);
  }
  return new Map(Object.entries(files).map(([name, bytes]) => [name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]));
}

function isUnsafeEntryName(name: string): boolean {
  return name === "" || name.startsWith("/") || name.includes("\\") || /^[A-Za-z]:/.test(name) || name.split("/").includes("..");
}

/** `resin artifacts fetch` for the refs, one command per architecture (--arch for all but amd64). */
function fetchCommands(refs: ReleaseRef[]): string[] {
  const byArch = new Map<Arch, ReleaseRef[]>();
  for (const r of refs) byArch.set(r.arch ?? DEFAULT_ARCH, [...(byArch.get(r.arch ?? DEFAULT_ARCH) ?? []), r]);
  return [...byArch].map(([arch, rs]) => `  resin artifacts fetch${arch === DEFAULT_ARCH ? "" : ` --arch ${arch}`} ${rs.map(formatRef).join(" ")}`);
}

/** The error for releases a build needs but the cache lacks, with the commands that fix it. */
export function missingReleaseError(refs: ReleaseRef[]): ResinError {
  const base = releaseBaseUrl();
  const list = refs.map((r) => `${r.product} ${r.version} (${releaseFiles(r).zip})`).join(", ");
  const offline = refs.map((r) => {
    const f = releaseFiles(r);
    return `  resin artifacts import <dir>/${f.zip}    # with ${f.sums} and ${f.sums}.sig beside it, from ${releaseDirUrl(r, base)}`;
  });
  return new ResinError(
    `official release${refs.length === 1 ? "" : "s"} not in the cache: ${list}`,
    [
      "with network access, download and verify them:",
      ...fetchCommands(refs),
      "without, copy each release's zip, SHA256SUMS and SHA256SUMS.sig into one directory <dir> and run:",
      ...offline,
      "(a release cached while another release key was trusted counts as missing: its sums do not verify against the key trusted now)",
    ].join("\n"),
  );
}

// ---------------------------------------------------------------------------------
// Fetch and import

/**
 * Check the sums' signature, then find the archive's line in them. Both fetch and import
 * go through here, so the two paths trust exactly the same things.
 */
async function verifiedSums(ref: ReleaseRef, sumsText: Buffer, signature: Buffer, opts: ReleaseOptions): Promise<{ expected: string; signer: string }> {
  const files = releaseFiles(ref);
  let signer: string;
  try {
    ({ signer } = await verifySums(sumsText, signature, opts.trustedKeys));
  } catch (e) {
    if (!(e instanceof ResinError)) throw e;
    throw fail(ref, files.sig, e.message, e.hint ?? `${files.sums} or its signature is corrupt or forged; nothing was cached`);
  }
  let sums: Map<string, string>;
  try {
    sums = parseSha256Sums(sumsText.toString("utf8"));
  } catch (e) {
    if (!(e instanceof ResinError)) throw e;
    throw fail(ref, files.sums, e.message.replace(/^SHA256SUMS /, ""));
  }
  const expected = sums.get(files.zip);
  if (!expected) {
    throw fail(ref, files.zip, `not listed in ${files.sums}`, `the release may not exist for ${releasePlatform(ref)}, or the sums file is not this release's`);
  }
  return { expected, signer };
}

/** Admit a downloaded or imported archive whose sums verified: check its sha256, cache it with its sums and signature, write its index. */
async function admit(
  ref: ReleaseRef,
  archive: string,
  archiveSha: string,
  proof: { sumsText: Buffer; signature: Buffer },
  verified: { expected: string; signer: string },
  log: Log,
): Promise<ReleaseIndex> {
  const files = releaseFiles(ref);
  if (archiveSha !== verified.expected) {
    throw fail(
      ref,
      files.zip,
      `sha256 is ${archiveSha}, but ${files.sums} says ${verified.expected}: the archive is corrupt or has been tampered with`,
      "it was not cached; try again, or get the release from another source",
    );
  }
  const sha = await putBlob(archive);
  // putBlob keeps an existing blob of the same name; make sure that one is sound too.
  await verifiedBlob(sha, `${ref.product} ${ref.version} release archive ${files.zip}`);
  // The sums and signature, so that each later use can verify them again (cachedRelease).
  const sumsFile = join(dirname(archive), files.sums);
  const sigFile = join(dirname(archive), files.sig);
  await writeFile(sumsFile, proof.sumsText);
  await writeFile(sigFile, proof.signature);
  const [sumsSha256, sigSha256] = [await putBlob(sumsFile), await putBlob(sigFile)];
  await verifiedBlob(sumsSha256, `${ref.product} ${ref.version} ${files.sums}`);
  await verifiedBlob(sigSha256, `${ref.product} ${ref.version} ${files.sig}`);
  const entry: ReleaseIndex = {
    product: ref.product,
    version: ref.version,
    file: files.zip,
    sha256: sha,
    sumsSha256,
    sigSha256,
    signer: verified.signer,
  };
  await writeFileAtomic(indexPath(ref), `${canonicalJson(entry)}\n`);
  log(`  ${ref.product} ${ref.version}: verified (SHA256SUMS signed by ${spacedFingerprint(verified.signer)}), cached as ${sha}`);
  return entry;
}

function logTrust(opts: ReleaseOptions): void {
  if (opts.trustedKeys === undefined && process.env.RESIN_RELEASE_KEY_FILE) {
    opts.log(`  trusting the release key in RESIN_RELEASE_KEY_FILE (${process.env.RESIN_RELEASE_KEY_FILE}) instead of HashiCorp's`);
  }
}

async function tempDir(): Promise<string> {
  // In the cache, so that putBlob's rename stays on one filesystem.
  await mkdir(cacheHome(), { recursive: true });
  return mkdtemp(join(cacheHome(), "release-"));
}

/**
 * Download, verify and cache one official release. With a verified copy already cached
 * (and `force` unset) it touches no network. `force` re-downloads and re-verifies; if
 * that fails the cached copy is left as it was.
 */
export async function fetchRelease(ref: ReleaseRef, opts: ReleaseOptions & { baseUrl?: string; force?: boolean }): Promise<ReleaseIndex> {
  checkRef(ref);
  const files = releaseFiles(ref);
  if (!opts.force) {
    const cached = await cachedRelease(ref, opts.trustedKeys);
    if (cached && hasBlob(cached.sha256)) {
      await verifiedBlob(cached.sha256, `${ref.product} ${ref.version} release archive ${cached.file}`);
      opts.log(`  ${ref.product} ${ref.version}: already cached and verified (${cached.sha256})`);
      return cached;
    }
  }
  const urls = releaseUrls(ref, opts.baseUrl ?? releaseBaseUrl());
  opts.log(`  fetch ${ref.product} ${ref.version} from ${releaseDirUrl(ref, opts.baseUrl ?? releaseBaseUrl())}`);
  logTrust(opts);
  const tmp = await tempDir();
  try {
    const sumsText = await download(ref, files.sums, urls.sums, SMALL_FILE_LIMIT);
    const signature = await downloadSignature(ref, urls);
    // Verify the small files before fetching the large one: a forgery costs no more traffic.
    const verified = await verifiedSums(ref, sumsText, signature, opts);
    const archive = join(tmp, files.zip);
    const archiveSha = await downloadToFile(ref, files.zip, urls.zip, archive, ARCHIVE_LIMIT);
    return await admit(ref, archive, archiveSha, { sumsText, signature }, verified, opts.log);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * The air-gapped path: verify and cache a release archive copied onto this machine.
 * The sums and signature are looked for beside the zip unless given.
 */
export async function importRelease(zipPath: string, opts: ReleaseOptions & { sums?: string; sig?: string }): Promise<ReleaseIndex> {
  const name = basename(zipPath);
  const ref = parseReleaseFileName(name);
  if (!ref) {
    throw new ResinError(
      `${zipPath}: not an official release archive name`,
      "import the file under its original name, <product>_<version>_<platform>.zip (product: consul, nomad or vault; platform: linux_amd64 or linux_arm64)",
    );
  }
  const files = releaseFiles(ref);
  const sumsPath = opts.sums ?? join(dirname(zipPath), files.sums);
  // The signature beside the sums: `.sig`, else the key-named one older releases have.
  const keySigPath = `${sumsPath}.${RELEASE_KEY_ID}.sig`;
  const sigPath = opts.sig ?? (!existsSync(`${sumsPath}.sig`) && existsSync(keySigPath) ? keySigPath : `${sumsPath}.sig`);
  const readInput = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch (e) {
      throw fail(ref, what, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, `put ${files.zip}, ${files.sums} and ${files.sig} from ${releaseDirUrl(ref, releaseBaseUrl())} in one directory`);
    }
  };
  const sumsText = await readInput(sumsPath, files.sums);
  const signature = await readInput(sigPath, files.sig);
  opts.log(`  import ${ref.product} ${ref.version} from ${zipPath}`);
  logTrust(opts);
  const verified = await verifiedSums(ref, sumsText, signature, opts);
  const tmp = await tempDir();
  try {
    // Hash a private copy, so the bytes verified are the bytes cached.
    const archive = join(tmp, files.zip);
    try {
      await copyFile(zipPath, archive);
    } catch (e) {
      throw fail(ref, files.zip, `cannot read ${zipPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return await admit(ref, archive, await sha256File(archive), { sumsText, signature }, verified, opts.log);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------
// HTTP

function downloadFailed(ref: ReleaseRef, file: string, url: string, what: string, status?: number): ResinError {
  const dir = url.slice(0, url.lastIndexOf("/") + 1);
  const hint =
    status === 404
      ? `is ${ref.product} ${ref.version} a published release? see ${dir} (RESIN_RELEASES_URL sets another server)`
      : `check the network and the release server ${new URL(url).origin} (RESIN_RELEASES_URL sets another); without network, use \`resin artifacts import\``;
  return Object.assign(fail(ref, file, `download from ${url} failed: ${what}`, hint), { status });
}

async function open(ref: ReleaseRef, file: string, url: string, limit: number) {
  let res;
  try {
    res = await request(url, { headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  } catch (e) {
    throw downloadFailed(ref, file, url, (e as Error).message);
  }
  if (res.statusCode !== 200) {
    await res.body.dump().catch(() => {});
    throw downloadFailed(ref, file, url, `HTTP status ${res.statusCode}`, res.statusCode);
  }
  const header = res.headers["content-length"];
  const length = typeof header === "string" ? Number(header) : undefined;
  if (length !== undefined && length > limit) {
    res.body.destroy();
    throw downloadFailed(ref, file, url, `the server announces ${length} bytes, more than the ${limit} a release file can be`);
  }
  return { body: res.body, length };
}

/** Read a small file into memory. */
/** The sums' signature: `.sig`, or where the server has none, the key-named `.72D7468F.sig`. */
async function downloadSignature(ref: ReleaseRef, urls: ReleaseFiles): Promise<Buffer> {
  const files = releaseFiles(ref);
  try {
    return await download(ref, files.sig, urls.sig, SMALL_FILE_LIMIT);
  } catch (e) {
    if ((e as { status?: number }).status !== 404) throw e;
    return download(ref, files.keySig, urls.keySig, SMALL_FILE_LIMIT);
  }
}

async function download(ref: ReleaseRef, file: string, url: string, limit: number): Promise<Buffer> {
  const { body, length } = await open(ref, file, url, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > limit) throw new Error(`more than ${limit} bytes`);
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    body.destroy();
    throw downloadFailed(ref, file, url, `after ${size} bytes: ${(e as Error).message}`);
  }
  if (length !== undefined && size !== length) throw downloadFailed(ref, file, url, `got ${size} of ${length} bytes`);
  return Buffer.concat(chunks);
}

/** Stream a large file to `dest`; returns its sha256. */
async function downloadToFile(ref: ReleaseRef, file: string, url: string, dest: string, limit: number): Promise<string> {
  const { body, length } = await open(ref, file, url, limit);
  const hash = createHash("sha256");
  let size = 0;
  try {
    await pipeline(
      body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          if (size > limit) throw new Error(`more than ${limit} bytes`);
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(dest),
    );
  } catch (e) {
    throw downloadFailed(ref, file, url, `after ${size} bytes: ${(e as Error).message}`);
  }
  if (length !== undefined && size !== length) throw downloadFailed(ref, file, url, `got ${size} of ${length} bytes`);
  return hash.digest("hex");
}
