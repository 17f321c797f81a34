// Per-cluster secrets, generated once. A cluster that has secrets keeps them: a
// missing or broken secrets file is an error, never a reason to make new ones.
//
// The bundle (secrets.json, mode 0600, in the cluster's 0700 state directory) holds:
//   gossipKey, nomadGossipKey   Consul's and Nomad's serf encryption keys
//   cas.<product>               one CA per product (consul, nomad, vault): certificate and
//                               key (the keys never leave the host)
//   cli.<product>               the host's client certificate for that product's HTTPS APIs
//   nodes.<name>.<service>      each node's certificate and key per service it runs, and
//                               nomadConsul: the one its Nomad presents to its Consul agent
//   consul                      ACL tokens: management (pre-seeded on the servers), agent, nomad,
//                               and the web UI's read-only one (added to older bundles by `resin up`)
//   nomad                       the secret Nomad's ACL bootstrap creates its management token with
//   vault                       Vault's unseal keys and root token, once Vault is initialised
//                               (recordVaultInit adds them; they never reach a node)
//
// A bundle of an older Resin has one CA (`ca`, `cli`) for all three products. It is
// re-issued by `resin up` while no node of the cluster runs (reissueSecrets: three new
// CAs and every certificate again; tokens, gossip keys and Vault's keys kept; the old
// file kept beside it); every other command refuses it with that fix (LegacySecretsError).
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { ResinError } from "../util/errors.js";
import type { ClusterPlan, NodePlan } from "./plan.js";
import type { CertifiedKey, Product } from "./pki.js";

// The PKI (WebCrypto + @peculiar/x509) is loaded only to make a bundle, not to read one.
const pki = () => import("./pki.js");

const gossip = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be 32 bytes in base64");
const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "must be a lowercase UUID");
const pemBlock = (label: string) =>
  z.string().regex(new RegExp(`^-----BEGIN ${label}-----\\n([A-Za-z0-9+/=]{1,64}\\n)+-----END ${label}-----\\n$`), `must be one PEM ${label}`);
const certPem = pemBlock("CERTIFICATE");
const keyPem = pemBlock("PRIVATE KEY");
const certifiedKey = z.object({ cert: certPem, key: keyPem }).strict();
const agentCert = z.object({ role: z.enum(["server", "client"]), cert: certPem, key: keyPem }).strict();
const perProduct = z.object({ consul: certifiedKey, nomad: certifiedKey, vault: certifiedKey }).strict();

export const VaultInitSchema = z
  .object({
    shares: z.number().int().min(1).max(255),
    threshold: z.number().int().min(1).max(255),
    /** The unseal key shares, as Vault's init returned them (`keys`, hex). */
    unsealKeys: z.array(z.string().regex(/^[A-Za-z0-9+/=]+$/, "must be a hex or base64 key share")).min(1),
    rootToken: z.string().regex(/^[A-Za-z0-9._-]+$/, "must be a Vault token"),
    initializedAt: z.string().datetime(),
  })
  .strict()
  .refine((v) => v.threshold <= v.shares && v.unsealKeys.length === v.shares, "needs threshold <= shares and one key per share");

export const SecretsSchema = z
  .object({
    /** Consul gossip encryption key: 32 random bytes, base64. */
    // Strict: Consul rejects anything but canonical base64 of 32 bytes, and would only say so on the VM console.
    gossipKey: gossip,
    /** Nomad's serf encryption key, same form. */
    nomadGossipKey: gossip,
    /** One CA per product: each product trusts its own only. */
    cas: perProduct,
    /** The host's client certificate per product, from that product's CA. */
    cli: perProduct,
    nodes: z.record(
      z.string().regex(/^[a-z][a-z0-9-]*$/, "must be a node name"),
      z
        .object({
          consul: agentCert.optional(),
          nomad: agentCert.optional(),
          /** What the node's Nomad presents to its Consul agent (Consul's CA, clientAuth only). */
          nomadConsul: certifiedKey.optional(),
          vault: certifiedKey.optional(),
        })
        .strict(),
    ),
    consul: z
      .object({
        /** Pre-seeded on the servers (acl.tokens.master / initial_management); the host's Consul token. */
        managementToken: uuid,
        /**
         * The key each agent's own token is derived from (consulAgentToken); the host
         * creates each with a policy that writes that node only. Never given to a node.
         */
        agentToken: uuid,
        /** What Nomad agents use to register in Consul; the host creates it with CONSUL_NOMAD_POLICY. */
        nomadToken: uuid,
        /**
         * Read-only, for logging in to the web UI (`resin ui`, `resin env --ui`); the host
         * creates it with CONSUL_UI_POLICY. Optional: bundles made before it get one from
         * withUiToken at their next `resin up`.
         */
        uiToken: uuid.optional(),
      })
      .strict(),
    nomad: z.object({ bootstrapSecret: uuid }).strict(),
    vault: VaultInitSchema.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    const tokens = [s.consul.managementToken, s.consul.agentToken, s.consul.nomadToken, s.nomad.bootstrapSecret, ...(s.consul.uiToken ? [s.consul.uiToken] : [])];
    if (new Set(tokens).size !== tokens.length) ctx.addIssue({ code: "custom", path: ["consul"], message: "every token must be different" });
  });

export type Secrets = z.infer<typeof SecretsSchema>;

/** A bundle of an older Resin: one CA for Consul, Nomad and Vault, one host certificate. */
const LegacySecretsSchema = z
  .object({ ca: certifiedKey, cli: certifiedKey })
  .passthrough()
  .refine((s) => !("cas" in s));

/** A bundle with one CA for every product: `resin up` of the stopped cluster issues its certificates again. */
export class LegacySecretsError extends ResinError {
  constructor(path: string, cluster?: string) {
    const name = cluster ?? "<name>";
    super(
      `cluster secrets ${path} are from an older Resin: one CA for Consul, Nomad and Vault, so one product's certificates open the others`,
      `stop the whole cluster and start it again, which issues every certificate again from a CA per product (tokens, gossip keys and Vault's keys are kept):\n  resin down --name ${name} && resin up --name ${name}`,
    );
    this.name = "LegacySecretsError";
  }
}
export type VaultInit = z.infer<typeof VaultInitSchema>;
export type NodeCertificates = Secrets["nodes"][string];

/** Which services a node runs, and as what. */
export interface ServiceRoles {
  consul?: "server" | "client";
  nomad?: "server" | "client";
  vault?: boolean;
}

/** Policies the host gives the tokens it pre-seeds, once Consul has a leader (rules in Consul's ACL language). */
/**
 * One agent's: write its own node and exactly the services its role registers (none for
 * most stock roles), read the rest (what anti-entropy, its checks and DNS need).
 */
export function consulAgentPolicy(node: string, services: string[] = []): string {
  const writes = [...new Set(services)].sort().map((s) => `service ${JSON.stringify(s)} {\n  policy = "write"\n}\n`).join("");
  return `node ${JSON.stringify(node)} {\n  policy = "write"\n}\nnode_prefix "" {\n  policy = "read"\n}\nservice_prefix "" {\n  policy = "read"\n}\n${writes}`;
}
/** The web UI's read-only token: see nodes, services (with their health) and keys; nothing else. */
export const CONSUL_UI_POLICY = `node_prefix "" {\n  policy = "read"\n}\nservice_prefix "" {\n  policy = "read"\n}\nkey_prefix "" {\n  policy = "read"\n}\n`;
/**
 * The DNS token's policy: what Consul's DNS interface answers (node and service lookups),
 * read only. Every agent sends it as its default token; see consulDnsToken.
 */
export const CONSUL_DNS_POLICY = `node_prefix "" {\n  policy = "read"\n}\nservice_prefix "" {\n  policy = "read"\n}\n`;
export const CONSUL_NOMAD_POLICY = `agent_prefix "" {\n  policy = "read"\n}\nnode_prefix "" {\n  policy = "read"\n}\nservice_prefix "" {\n  policy = "write"\n}\n`;

const HINT = "restore the file from your backup; Resin will not replace a cluster's secrets";

export type ProductCas = Record<Product, CertifiedKey>;

/** A node's certificates for the services it runs, each from its product's CA. */
export async function issueNodeCertificates(cas: ProductCas, plan: ClusterPlan, node: NodePlan, roles: ServiceRoles): Promise<NodeCertificates> {
  const { consulCertSpec, issueCertificate, nomadCertSpec, nomadConsulCertSpec, vaultCertSpec } = await pki();
  const out: NodeCertificates = {};
  if (roles.consul) out.consul = { role: roles.consul, ...(await issueCertificate(cas.consul, consulCertSpec(node, plan.datacenter, roles.consul))) };
  if (roles.nomad) {
    out.nomad = { role: roles.nomad, ...(await issueCertificate(cas.nomad, nomadCertSpec(node, roles.nomad))) };
    // Nomad registers with the node's Consul agent only where there is one.
    if (roles.consul) out.nomadConsul = await issueCertificate(cas.consul, nomadConsulCertSpec(node));
  }
  if (roles.vault) out.vault = await issueCertificate(cas.vault, vaultCertSpec(node));
  return out;
}

/** Three new CAs, the host's certificate from each, and every node's certificates. */
async function issueAll(plan: ClusterPlan, serviceRoles: (node: NodePlan) => ServiceRoles): Promise<Pick<Secrets, "cas" | "cli" | "nodes">> {
  const { cliCertSpec, createCa, issueCertificate, PRODUCTS } = await pki();
  const cas = {} as ProductCas;
  const cli = {} as ProductCas;
  for (const product of PRODUCTS) {
    cas[product] = await createCa(plan.name, { product });
    cli[product] = await issueCertificate(cas[product], cliCertSpec(plan.name, product));
  }
  const nodes: Secrets["nodes"] = {};
  for (const node of plan.nodes) nodes[node.name] = await issueNodeCertificates(cas, plan, node, serviceRoles(node));
  return { cas, cli, nodes };
}

/** A new bundle for the plan: fresh keys, CAs, certificates and tokens. Pure (no I/O). */
export async function generateSecrets(plan: ClusterPlan, serviceRoles: (node: NodePlan) => ServiceRoles): Promise<Secrets> {
  const secrets: Secrets = {
    gossipKey: randomBytes(32).toString("base64"),
    nomadGossipKey: randomBytes(32).toString("base64"),
    ...(await issueAll(plan, serviceRoles)),
    consul: { managementToken: randomUUID(), agentToken: randomUUID(), nomadToken: randomUUID(), uiToken: randomUUID() },
    nomad: { bootstrapSecret: randomUUID() },
  };
  return SecretsSchema.parse(secrets);
}

/**
 * An older bundle (one CA) made current: a CA per product and every certificate issued
 * again; the gossip keys, every token and Vault's keys are kept as they are, so Consul's
 * and Vault's data stay theirs. Pure (no I/O). Every node must then boot with new
 * metadata: `resin up` does this only while no node runs.
 */
export async function reissueSecrets(legacy: unknown, plan: ClusterPlan, serviceRoles: (node: NodePlan) => ServiceRoles): Promise<Secrets> {
  const kept: Record<string, unknown> = { ...LegacySecretsSchema.parse(legacy) };
  for (const replaced of ["ca", "cli", "nodes"]) delete kept[replaced];
  const current = SecretsSchema.safeParse({ ...kept, ...(await issueAll(plan, serviceRoles)) });
  if (!current.success) throw new ResinError(`the older cluster secrets are damaged (${describeIssues(current.error)})`, HINT);
  return current.data;
}

/**
 * The bundle, made current first when it is an older one and `reissue` allows it (no
 * node runs): the older file is kept beside it (secrets.json.one-ca, 0600). Otherwise
 * as readSecrets.
 */
export async function readOrReissueSecrets(
  path: string,
  opts: { reissue: boolean; cluster: string; plan: ClusterPlan; serviceRoles: (node: NodePlan) => ServiceRoles; log?: (line: string) => void },
): Promise<Secrets> {
  try {
    return await readSecrets(path, opts.cluster);
  } catch (e) {
    if (!(e instanceof LegacySecretsError) || !opts.reissue) throw e;
  }
  const text = await readFile(path, "utf8");
  const current = await reissueSecrets(JSON.parse(text), opts.plan, opts.serviceRoles);
  await writeFile(`${path}.one-ca`, text, { mode: 0o600, flag: "wx" }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "EEXIST") throw e; // an earlier attempt kept it already
  });
  await rewriteSecrets(path, current);
  opts.log?.(`  secrets: a CA per product (Consul, Nomad, Vault) and every certificate issued again; tokens, gossip keys and Vault's keys kept (the older bundle is in ${path}.one-ca)`);
  return current;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join(".") || "(the whole file)"}: ${i.message}`)
    .join("; ");
}

/** The cluster's bundle, checked. `cluster` names it in the fix for an older bundle. */
export async function readSecrets(path: string, cluster?: string): Promise<Secrets> {
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new ResinError(`cluster secrets ${path} cannot be read: ${(e as Error).message}`, HINT);
  }
  const parsed = SecretsSchema.safeParse(data);
  if (!parsed.success) {
    const keys = data && typeof data === "object" && !Array.isArray(data) ? Object.keys(data) : [];
    if (keys.includes("gossipKey") && keys.every((k) => k === "gossipKey" || k === "nomadGossipKey") && gossip.safeParse((data as { gossipKey: unknown }).gossipKey).success) {
      throw new ResinError(
        `cluster secrets ${path} are from an older Resin: they have no CA, certificates or ACL tokens`,
        "a cluster made before TLS and ACLs cannot be upgraded in place: `resin destroy` it and `resin up` a new one",
      );
    }
    if (LegacySecretsSchema.safeParse(data).success) throw new LegacySecretsError(path, cluster ?? clusterOf(path));
    throw new ResinError(`cluster secrets ${path} are damaged (${describeIssues(parsed.error)})`, HINT);
  }
  return parsed.data;
}

/** Write new secrets, refusing to replace a file that exists (flag "wx"), mode 0600 in a 0700 directory. */
export async function createSecrets(path: string, plan: ClusterPlan, serviceRoles: (node: NodePlan) => ServiceRoles): Promise<Secrets> {
  if (existsSync(path)) throw new ResinError(`cluster secrets ${path} already exist`);
  const secrets = await generateSecrets(plan, serviceRoles);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, serialise(secrets), { mode: 0o600, flag: "wx" });
  return secrets;
}

/** The cluster's name from its bundle's path (…/clusters/<name>/secrets.json), for messages. */
function clusterOf(path: string): string | undefined {
  const m = path.match(/\/clusters\/([a-z][a-z0-9-]*)\/secrets\.json$/);
  return m?.[1];
}

function serialise(secrets: Secrets): string {
  return `${JSON.stringify(secrets, null, 2)}\n`;
}

/**
 * Add Vault's init results to the bundle, once: the file is rewritten atomically (a
 * 0600 sibling, synced, renamed over it). Refuses when the bundle already holds them,
 * since replacing unseal keys would lock Vault's data away for good.
 */
export async function recordVaultInit(path: string, init: Omit<VaultInit, "initializedAt"> & { initializedAt?: string }): Promise<Secrets> {
  const secrets = await readSecrets(path);
  if (secrets.vault) {
    throw new ResinError(`cluster secrets ${path} already hold Vault's unseal keys`, "Vault is initialised once per cluster; Resin will not replace its keys");
  }
  const vault = VaultInitSchema.safeParse({ ...init, initializedAt: init.initializedAt ?? new Date().toISOString() });
  if (!vault.success) throw new Error(`Vault init results are not as expected (${describeIssues(vault.error)})`);
  return rewriteSecrets(path, SecretsSchema.parse({ ...secrets, vault: vault.data }));
}

/**
 * The bundle with the web UI's read-only token: a bundle made before there was one gets
 * a fresh one, written back atomically; every other field stays as it was.
 */
export async function withUiToken(path: string): Promise<Secrets> {
  const secrets = await readSecrets(path);
  if (secrets.consul.uiToken) return secrets;
  return rewriteSecrets(path, SecretsSchema.parse({ ...secrets, consul: { ...secrets.consul, uiToken: randomUUID() } }));
}

/** Replace the bundle atomically: a 0600 sibling, synced, renamed over it, the directory synced. */
async function rewriteSecrets(path: string, updated: Secrets): Promise<Secrets> {
  const tmp = `${path}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  const file = await open(tmp, "wx", 0o600);
  try {
    await file.writeFile(serialise(updated));
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
  // The rename itself must reach the disk before anyone relies on the keys being kept.
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return updated;
}
