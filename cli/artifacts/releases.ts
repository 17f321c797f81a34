// Names of HashiCorp's official release files, and the parsing of their SHA256SUMS.
// Pure: no I/O, so every rule about what a release is can be tested directly.
// A release lives at <base>/<product>/<version>/ as
//   <product>_<version>_<platform>.zip (linux_amd64, linux_arm64: the architecture's
//   hashicorpPlatform in cli/spec/arch.ts), <product>_<version>_SHA256SUMS and
//   <product>_<version>_SHA256SUMS.sig (a detached binary OpenPGP signature of the sums).
import { ResinError } from "../util/errors.js";
import { ARCH, ARCHES, DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export type Product = "consul" | "nomad" | "vault";
export const PRODUCTS: readonly Product[] = ["consul", "nomad", "vault"];

export interface ReleaseRef {
  product: Product;
  version: string;
  /** The architecture whose archive is meant; absent: amd64 (refs from before arm64). */
  arch?: Arch;
}

/** The release platform of a ref's architecture: linux_amd64 when it names none. */
export function releasePlatform(ref: ReleaseRef): string {
  return ARCH[ref.arch ?? DEFAULT_ARCH].hashicorpPlatform;
}

// Versions end up in URLs and cache paths, so they are held to a narrow shape:
// 1.9.3, 1.10.0-beta.1, 1.15.2+ent.
const VERSION = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+ent)?$/;

export function isProduct(value: string): value is Product {
  return (PRODUCTS as readonly string[]).includes(value);
}

export function isValidVersion(version: string): boolean {
  return VERSION.test(version);
}

/** Throws unless the ref names a known product and a well-formed version. */
export function checkRef(ref: ReleaseRef): ReleaseRef {
  if (!isProduct(ref.product)) {
    throw new ResinError(`unknown HashiCorp product "${ref.product}"`, `use one of: ${PRODUCTS.join(", ")}`);
  }
  if (!isValidVersion(ref.version)) {
    throw new ResinError(
      `invalid ${ref.product} version "${ref.version}"`,
      "write a release version such as 1.9.3, 1.10.0-beta.1 or 1.15.2+ent",
    );
  }
  return ref;
}

/** `nomad@1.9.3` → { product: "nomad", version: "1.9.3" } (the form the CLI takes). */
export function parseReleaseRef(text: string): ReleaseRef {
  const at = text.indexOf("@");
  if (at < 0) {
    throw new ResinError(`"${text}" is not <product>@<version>`, "write a release as, for example, nomad@1.9.3");
  }
  return checkRef({ product: text.slice(0, at) as Product, version: text.slice(at + 1) });
}

/** The ref of a service's release for one architecture (amd64 left implicit, as refs from before arm64). */
export function releaseRef(release: { product: Product; version: string }, arch: Arch): ReleaseRef {
  return { product: release.product, version: release.version, ...(arch === DEFAULT_ARCH ? {} : { arch }) };
}

export function formatRef(ref: ReleaseRef): string {
  return `${ref.product}@${ref.version}`;
}

export interface ReleaseFiles {
  zip: string;
  sums: string;
  sig: string;
  /**
   * The same signature under the release key's id. Releases made while HashiCorp
   * signed with more than one key have only this name, so it is the fallback.
   */
  keySig: string;
}

/** The short id of HashiCorp's release key, as its signature files are named. */
export const RELEASE_KEY_ID = "72D7468F";

export function releaseFiles(ref: ReleaseRef): ReleaseFiles {
  const stem = `${ref.product}_${ref.version}`;
  const sums = `${stem}_SHA256SUMS`;
  return { zip: `${stem}_${releasePlatform(ref)}.zip`, sums, sig: `${sums}.sig`, keySig: `${sums}.${RELEASE_KEY_ID}.sig` };
}

/** The release's directory URL, with a trailing slash; a base URL's own trailing slashes are ignored. */
export function releaseDirUrl(ref: ReleaseRef, baseUrl: string): string {
  // Versions contain only URL-safe characters ("+" is literal in HashiCorp's paths).
  return `${baseUrl.replace(/\/+$/, "")}/${ref.product}/${ref.version}/`;
}

export function releaseUrls(ref: ReleaseRef, baseUrl: string): ReleaseFiles {
  const dir = releaseDirUrl(ref, baseUrl);
  const files = releaseFiles(ref);
  return { zip: dir + files.zip, sums: dir + files.sums, sig: dir + files.sig, keySig: dir + files.keySig };
}

/**
 * The ref a release archive's file name stands for, e.g. for `resin artifacts import`,
 * with the architecture its platform names (amd64 left implicit); undefined if it is not one.
 */
export function parseReleaseFileName(name: string): ReleaseRef | undefined {
  const m = /^([a-z]+)_(.+)_(linux_[a-z0-9]+)\.zip$/.exec(name);
  const arch = m && ARCHES.find((a) => ARCH[a].hashicorpPlatform === m[3]);
  if (!m || !arch || !isProduct(m[1]!) || !isValidVersion(m[2]!)) return undefined;
  return { product: m[1], version: m[2]!, ...(arch === DEFAULT_ARCH ? {} : { arch }) };
}

// `sha256sum` text-mode output as HashiCorp publishes it: 64 lower-case hex digits,
// two spaces, a bare file name. Anything else (a path, a "*" binary marker, CRLF)
// means the file is not what we think it is, so it is rejected rather than guessed at.
const SUMS_LINE = /^([0-9a-f]{64}) {2}([A-Za-z0-9][A-Za-z0-9._+-]*)$/;

/** Parse a SHA256SUMS file into file name → sha256. Throws ResinError naming the first bad line. */
export function parseSha256Sums(text: string): Map<string, string> {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop(); // the final newline
  if (lines.length === 0) throw new ResinError("SHA256SUMS is empty");
  const sums = new Map<string, string>();
  lines.forEach((line, i) => {
    const m = SUMS_LINE.exec(line);
    if (!m) {
      throw new ResinError(`SHA256SUMS line ${i + 1} is not "<sha256>  <file name>": ${JSON.stringify(line.slice(0, 120))}`);
    }
    const [, sha, file] = m as unknown as [string, string, string];
    if (sums.has(file)) throw new ResinError(`SHA256SUMS line ${i + 1} names ${file} a second time`);
    sums.set(file, sha);
  });
  return sums;
}
