// resin.lock.json pins every Debian package a build takes to one version and sha256,
// so that the same checkout builds the same bytes and an offline build needs no apt.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { writeFileAtomic } from "../util/files.js";
import { canonicalJson } from "../util/hash.js";
import { ResinError } from "../util/errors.js";
import { DEFAULT_ARCH, type Arch } from "../spec/arch.js";

export const LockedDebSchema = z
  .object({
    /** The concrete package (a kernel metapackage resolves to its versioned image package). */
    package: z.string(),
    version: z.string(),
    suite: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    size: z.number().int().nonnegative(),
    /**
     * For a package of a service without `libraries:`: what it Depends/Pre-Depends on,
     * transitively, in its suite (Debian's data when it was locked), nearest first. The
     * shared libraries of the service's files are looked for in these packages.
     */
    depends: z.array(z.string()).optional(),
  })
  .strict();

export const LockSchema = z
  .object({
    lockfileVersion: z.literal(1),
    /** Keyed by "<suite>/<requested package>", with ":<arch>" for an architecture other than amd64 (lockKey). */
    debian: z.record(z.string(), LockedDebSchema),
  })
  .strict();

export type LockedDeb = z.infer<typeof LockedDebSchema>;
export type Lock = z.infer<typeof LockSchema>;

export const emptyLock = (): Lock => ({ lockfileVersion: 1, debian: {} });

/**
 * A package's key in the lock: "<suite>/<package>" for amd64, the key every lock had
 * before Resin built for another architecture (so existing locks stay valid), and
 * "<suite>/<package>:<arch>", Debian's notation for a package of a foreign architecture,
 * for the others. One lock pins every architecture a project builds for.
 */
export const lockKey = (suite: string, name: string, arch: Arch = DEFAULT_ARCH) => `${suite}/${name}${arch === DEFAULT_ARCH ? "" : `:${arch}`}`;

export async function readLock(path: string): Promise<Lock> {
  if (!existsSync(path)) return emptyLock();
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ResinError(`${path}: not valid JSON (${(e as Error).message})`, "restore it from version control (git checkout -- resin.lock.json)");
  }
  const parsed = LockSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ResinError(`${path}: ${issue.path.join(".")}: ${issue.message}`, "restore it from version control (git checkout -- resin.lock.json)");
  }
  return parsed.data;
}

export async function writeLock(path: string, lock: Lock): Promise<void> {
  await writeFileAtomic(path, `${canonicalJson(lock)}\n`);
}

/** Upstream version from a Debian version: "1.8.7+dfsg1-2+b3" → "1.8.7", "1:1.35.0-4" → "1.35.0". */
export function upstreamVersion(debianVersion: string): string {
  return debianVersion.replace(/^\d+:/, "").replace(/[+~-].*$/, "");
}
