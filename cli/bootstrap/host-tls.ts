// The host's side of the cluster's TLS: the CA certificate and the host's client
// certificate and key, as files the stock CLIs and provisioners can point at.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { clusterPaths } from "../state/state.js";
import { writeFileAtomic } from "../util/files.js";
import { cliSecretFiles } from "./node-secrets.js";
import type { Secrets } from "./secrets.js";

/** The cluster CA and the host's client certificate and key as files (0600) in the cluster's state directory. */
export async function writeHostTls(cluster: string, secrets: Secrets): Promise<{ ca: string; cert: string; key: string }> {
  const tlsDir = join(clusterPaths(cluster).dir, "tls");
  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  for (const f of cliSecretFiles(secrets)) await writeFileAtomic(join(tlsDir, f.path), f.content, 0o600);
  return { ca: join(tlsDir, "ca.pem"), cert: join(tlsDir, "cli.pem"), key: join(tlsDir, "cli-key.pem") };
}
