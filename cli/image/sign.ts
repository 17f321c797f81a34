// The optional signed boot chain: `resin build --sign KEY,CERT` signs each unified kernel
// image (the disk's and the ISO's) for UEFI Secure Boot with Debian's sbsign, an
// Authenticode signature (PKCS#7, RSA PKCS#1 v1.5 over SHA-256) appended to the PE.
//
// Reproducible: RSA PKCS#1 v1.5 is deterministic, but sbsign (OpenSSL's PKCS7_sign)
// adds a signingTime attribute, the current time, to what it signs, so two signatures a
// second apart differ in that attribute and in the RSA value over it. sbsign therefore
// runs under libfaketime with the clock frozen at SIGNING_TIME: the same key, cert and
// image give the same bytes. Firmware ignores signingTime (UEFI checks no certificate
// dates), so the fixed value costs nothing; it says nothing true about when either.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { ResinError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import { fileBytes, writeLayout, type FileBytes, type Layout } from "./layout.js";

/** The signingTime every signature carries (UTC), so that signing is reproducible. */
export const SIGNING_TIME = "2000-01-01 00:00:00";

/** A checked signing key pair: the files, the certificate's DER (base64) and its SHA-256 fingerprint (lower-case hex). */
export interface SigningKey {
  key: string;
  cert: string;
  certBase64: string;
  certSha256: string;
}

/** Pure: `--sign KEY,CERT` as two paths (resolved against `cwd`). */
export function parseSignOption(value: string, cwd = process.cwd()): { key: string; cert: string } {
  const parts = value.split(",");
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new ResinError(`--sign ${JSON.stringify(value)} is not KEY,CERT`, "give the private key (PEM, unencrypted) and its X.509 certificate (PEM), e.g. --sign db.key,db.pem");
  }
  return { key: resolve(cwd, parts[0]), cert: resolve(cwd, parts[1]) };
}

/** Pure: the SHA-256 fingerprint of a certificate (PEM, or DER as base64), as `openssl x509 -fingerprint -sha256` gives it, lower-case without colons. */
export function certFingerprint(cert: string): string {
  return new X509Certificate(cert.startsWith("-----BEGIN") ? cert : Buffer.from(cert, "base64")).fingerprint256.replaceAll(":", "").toLowerCase();
}

/** Pure: a certificate's DER (base64, as the manifest holds it: one line) as PEM. */
export function certPem(base64: string): string {
  return new X509Certificate(Buffer.from(base64, "base64")).toString();
}

function readOrFail(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new ResinError(`cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, "give an existing, readable file: --sign KEY,CERT");
  }
}

/**
 * Read and check a key pair before anything is built: the certificate an X.509 PEM with
 * an RSA key, the key an unencrypted PEM private key that belongs to it (sbsign would
 * ask for a passphrase on the terminal, and would sign with a key the firmware then refuses).
 */
export function loadSigningKey(spec: { key: string; cert: string }): SigningKey {
  const certPem = readOrFail(spec.cert, "certificate");
  const keyPem = readOrFail(spec.key, "signing key");
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new ResinError(`the certificate ${spec.cert} is not an X.509 certificate in PEM`, "convert it with: openssl x509 -inform DER -in CERT.der -out CERT.pem");
  }
  if (cert.publicKey.asymmetricKeyType !== "rsa") {
    throw new ResinError(`the certificate ${spec.cert} has a ${cert.publicKey.asymmetricKeyType} key; UEFI Secure Boot verifies RSA signatures only`, "make an RSA 2048 key pair: openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj /CN=my-db/ -keyout db.key -out db.pem");
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    const encrypted = /ENCRYPTED|passphrase|password/i.test(keyPem.slice(0, 200) + String((e as Error).message));
    throw new ResinError(
      `the signing key ${spec.key} is ${encrypted ? "encrypted" : "not a PEM private key"}`,
      encrypted ? `write an unencrypted copy somewhere private: openssl pkey -in ${spec.key} -out KEY.pem` : "give the PEM private key the certificate was made for",
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new ResinError(`the signing key ${spec.key} does not belong to the certificate ${spec.cert}`, "give the key the certificate was made for (openssl x509 -noout -pubkey -in CERT and openssl pkey -pubout -in KEY print the same key)");
  }
  return { key: spec.key, cert: spec.cert, certBase64: cert.raw.toString("base64"), certSha256: certFingerprint(certPem) };
}

/**
 * Debian's test key pair for Secure Boot (package ovmf): the certificate OVMF_VARS_4M.snakeoil.fd
 * has enrolled as PK, KEK and db, and its key, which Debian ships encrypted with the
 * passphrase "snakeoil" (README.Debian). Public, so fit for local clusters and tests only.
 */
export const DEBIAN_TEST_PAIR = { key: "/usr/share/ovmf/PkKek-1-snakeoil.key", cert: "/usr/share/ovmf/PkKek-1-snakeoil.pem", passphrase: "snakeoil" } as const;

/** Debian's test pair as a SigningKey: its key decrypted into `dir` (0600), since sbsign cannot be given a passphrase. */
export async function debianTestKey(dir: string): Promise<SigningKey> {
  const encrypted = readOrFail(DEBIAN_TEST_PAIR.key, "signing key (install the ovmf package: apt-get install ovmf)");
  const key = join(dir, "snakeoil.key");
  const pem = createPrivateKey({ key: encrypted, passphrase: DEBIAN_TEST_PAIR.passphrase }).export({ type: "pkcs8", format: "pem" });
  await writeFile(key, pem, { mode: 0o600 });
  return loadSigningKey({ key, cert: DEBIAN_TEST_PAIR.cert });
}

/** Pure: the command that signs `input` into `output`, its clock frozen (see the header). */
export function sbsignCommand(key: Pick<SigningKey, "key" | "cert">, input: string, output: string): { command: string; args: string[]; env: Record<string, string> } {
  return { command: "faketime", args: ["-f", SIGNING_TIME, "sbsign", "--key", key.key, "--cert", key.cert, "--output", output, input], env: { TZ: "UTC" } };
}

/**
 * Sign a UKI: write it to `scratch`, sign it there, and give the signed file (a layout
 * piece the disk writers copy in). `name` keeps the disk's and the ISO's apart.
 */
export async function signUki(uki: Layout, key: SigningKey, scratch: string, name: string): Promise<FileBytes> {
  requireTools(["sbsign", "faketime"]);
  const input = join(scratch, `${name}.unsigned.efi`);
  const output = join(scratch, `${name}.efi`);
  await writeLayout(input, uki);
  const { command, args, env } = sbsignCommand(key, input, output);
  const run = await execa(command, args, { reject: false, stdin: "ignore", env });
  await rm(input, { force: true });
  if (run.exitCode !== 0) throw new ResinError(`sbsign could not sign the unified kernel image with ${key.key}: ${(run.stderr || run.stdout).trim().split("\n")[0]}`, "check the key pair with: sbsign --key KEY --cert CERT FILE");
  return fileBytes(output);
}

/** Whether `efi` carries a signature sbverify accepts against `certPem`; sbverify's own words when not. */
export async function verifySignature(efi: string, certPem: string): Promise<{ ok: boolean; said: string }> {
  requireTools(["sbverify"]);
  const dir = await mkdtemp(join(tmpdir(), "resin-sbverify-"));
  try {
    const cert = join(dir, "cert.pem");
    await writeFile(cert, certPem);
    const run = await execa("sbverify", ["--cert", cert, efi], { reject: false, stdin: "ignore" });
    const said = `${run.stdout}\n${run.stderr}`.split("\n").map((l) => l.trim()).filter((l) => l && !/^(warning:|gaps in the section table|\.\w+\s*:)/.test(l)).join("; ");
    return { ok: run.exitCode === 0, said };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

