// Per-cluster secrets, generated once. A cluster that has secrets keeps them: a
// missing or broken secrets file is an error, never a reason to make new ones.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { ResinError } from "../util/errors.js";

export const SecretsSchema = z
  .object({
    /** Consul gossip encryption key: 32 random bytes, base64. */
    // Strict: Consul rejects anything but canonical base64 of 32 bytes, and would only say so on the VM console.
    gossipKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64"),
    /** Nomad's serf encryption key, same form. */
    nomadGossipKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64"),
  })
  .strict();

export type Secrets = z.infer<typeof SecretsSchema>;

export function generateSecrets(): Secrets {
  return { gossipKey: randomBytes(32).toString("base64"), nomadGossipKey: randomBytes(32).toString("base64") };
}

export async function readSecrets(path: string): Promise<Secrets> {
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ResinError(`cluster secrets ${path} cannot be read: ${(e as Error).message}`, "restore the file from your backup; Resin will not replace a cluster's secrets");
  }
  const parsed = SecretsSchema.safeParse(data);
  if (!parsed.success) {
    throw new ResinError(`cluster secrets ${path} are damaged (${parsed.error.issues[0]!.path.join(".")}: ${parsed.error.issues[0]!.message})`, "restore the file from your backup; Resin will not replace a cluster's secrets");
  }
  return parsed.data;
}

/** Write new secrets, refusing to replace a file that exists (flag "wx"), mode 0600. */
export async function createSecrets(path: string): Promise<Secrets> {
  if (existsSync(path)) throw new ResinError(`cluster secrets ${path} already exist`);
  const secrets = generateSecrets();
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  return secrets;
}
