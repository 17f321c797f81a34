// The host's side of the cluster's TLS, per product (Consul, Nomad, Vault): that
// product's CA certificate and the host's client certificate and key for it, as files
// the stock CLIs and provisioners can point at.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterHandle } from "../state/state.js";
import { writeFileAtomic } from "../util/files.js";
import { cliSecretFiles } from "./node-secrets.js";
import type { Product } from "./pki.js";
import type { Secrets } from "./secrets.js";

export type HostTlsFiles = Record<Product, { ca: string; cert: string; key: string }>;

/** Per product, its CA and the host's client certificate and key as files (0600) in the cluster's state directory. */
export async function writeHostTls(cluster: ClusterHandle, secrets: Secrets): Promise<HostTlsFiles> {
  const tlsDir = join(cluster.dir, "tls");
  await mkdir(tlsDir, { recursive: true, mode: 0o700 });
  for (const f of cliSecretFiles(secrets)) await writeFileAtomic(join(tlsDir, f.path), f.content, 0o600);
  const files = (p: Product) => ({ ca: join(tlsDir, `${p}-ca.pem`), cert: join(tlsDir, `${p}-cli.pem`), key: join(tlsDir, `${p}-cli-key.pem`) });
  return { consul: files("consul"), nomad: files("nomad"), vault: files("vault") };
}
