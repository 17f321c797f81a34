// Which secrets a node gets, and which the host keeps: least privilege, by role.
//
// nodeSecrets() is the one place that chooses, from the bundle, what a node's role may
// hold; the node's templates see only that (never the bundle), so a template that asks
// for a secret its role does not get fails to render instead of leaking it.
//
// Files: for each service it runs, `<service>/ca.pem` (that product's CA *certificate*),
// `<service>/cert.pem` and `<service>/key.pem` (its own certificate for that service),
// and on a node running Nomad beside Consul, `nomad/consul-ca.pem`, `nomad/consul-cert.pem`
// and `nomad/consul-key.pem` (what Nomad presents to its Consul agent), all 0600 in its
// metadata. Each service's run script copies /run/config/<service>/* into its private
// /run/<service>/, which is where the templates point (ca_file = "/run/consul/ca.pem", …).
// Values for the templates:
//   - Consul's gossip key: every Consul agent; Consul's management token: Consul servers
//     only; the node's own agent token (derived for its name) and the cluster's DNS token
//     (read nodes and services, which every agent token may already): every Consul agent;
//   - Nomad's gossip key: Nomad servers only; the Consul token for Nomad: Nomad agents
//     on a node with a Consul agent.
// The CA keys, the host's client keys, the agent-token key, Nomad's bootstrap secret and
// Vault's unseal keys and root token never reach a node.
// test/unit/node-secrets.test.ts walks every role in machines/ and checks this by content.
import { createHmac } from "node:crypto";
import type { Role } from "../spec/load.js";
import { ResinError } from "../util/errors.js";
import type { Secrets, ServiceRoles } from "./secrets.js";
import type { Product } from "./pki.js";

// Not imported from pki.ts: reading a bundle must not load the PKI (WebCrypto, x509).
const PRODUCTS: readonly Product[] = ["consul", "nomad", "vault"];

export interface SecretFile {
  /** `<service>/<file>` in the node's metadata (/run/config/<service>/<file>), or a file name for the host. */
  path: string;
  content: string;
  perm: "0600";
}

/** How a role runs Consul, Nomad and Vault, from its options (the `server` and `client` options of each). */
export function serviceRolesOf(role: Pick<Role, "services" | "options">): ServiceRoles {
  const runs = (name: string) => role.services.some((s) => s.name === name);
  const option = (service: string, key: string) => role.options[service]?.[key] === true;
  const roles: ServiceRoles = {};
  if (runs("consul")) roles.consul = option("consul", "server") ? "server" : "client";
  // A Nomad server that also runs a client presents its server certificate for both.
  if (runs("nomad")) roles.nomad = option("nomad", "server") ? "server" : "client";
  if (runs("vault")) roles.vault = true;
  return roles;
}

/**
 * Everything of the bundle one node may hold, for the services it runs as `roles` says:
 * the values its templates render and the files of its metadata. Pure.
 */
export interface NodeSecrets {
  /** Consul's gossip key: on every Consul agent. */
  gossipKey?: string;
  /** Nomad's gossip key: on Nomad servers. */
  nomadGossipKey?: string;
  consul: {
    /** The node's own agent token (write on this node only): on every Consul agent. */
    agentToken?: string;
    /** The cluster's DNS token (read nodes and services), every agent's default token: on every Consul agent. */
    dnsToken?: string;
    /** The host's token, pre-seeded on the servers: on Consul servers only. */
    managementToken?: string;
    /** What Nomad registers in Consul with: on Nomad agents beside a Consul agent. */
    nomadToken?: string;
  };
  files: SecretFile[];
}

export function nodeSecrets(bundle: Secrets, node: string | { name: string }, roles: ServiceRoles): NodeSecrets {
  const name = typeof node === "string" ? node : node.name;
  // Keys are left out, not set to undefined: a strict template then fails on one it may not use.
  const chosen: NodeSecrets = { consul: {}, files: nodeSecretFiles(bundle, name, roles) };
  if (roles.consul) {
    chosen.gossipKey = bundle.gossipKey;
    chosen.consul.agentToken = consulAgentToken(bundle, name);
    chosen.consul.dnsToken = consulDnsToken(bundle);
    if (roles.consul === "server") chosen.consul.managementToken = bundle.consul.managementToken;
  }
  if (roles.nomad === "server") chosen.nomadGossipKey = bundle.nomadGossipKey;
  if (roles.nomad && roles.consul) chosen.consul.nomadToken = bundle.consul.nomadToken;
  return chosen;
}

/** The files one node gets in its metadata, for the services it runs as `roles` says. */
export function nodeSecretFiles(bundle: Secrets, node: string | { name: string }, roles: ServiceRoles): SecretFile[] {
  const name = typeof node === "string" ? node : node.name;
  const certs = bundle.nodes[name];
  if (!certs) {
    throw new ResinError(`the cluster's secrets have no certificates for node ${name}`, "the cluster's state and secrets disagree; restore both from your backup");
  }
  const files: SecretFile[] = [];
  const add = (service: "consul" | "nomad" | "vault", pair: { cert: string; key: string }) => {
    files.push({ path: `${service}/ca.pem`, content: bundle.cas[service].cert, perm: "0600" });
    files.push({ path: `${service}/cert.pem`, content: pair.cert, perm: "0600" });
    files.push({ path: `${service}/key.pem`, content: pair.key, perm: "0600" });
  };
  for (const service of ["consul", "nomad"] as const) {
    const role = roles[service];
    if (!role) continue;
    const pair = certs[service];
    if (!pair || pair.role !== role) {
      throw new ResinError(
        `node ${name} runs ${service} as a ${role}, but the cluster's secrets hold ${pair ? `a ${pair.role}` : "no"} ${service} certificate for it`,
        "a cluster keeps the roles it was created with: recreate it to change them",
      );
    }
    add(service, pair);
  }
  if (roles.nomad && roles.consul) {
    const pair = certs.nomadConsul;
    if (!pair) throw new ResinError(`node ${name} runs nomad beside consul, but the cluster's secrets hold no certificate for its Nomad to present to Consul`, "a cluster keeps the roles it was created with: recreate it to change them");
    files.push({ path: "nomad/consul-ca.pem", content: bundle.cas.consul.cert, perm: "0600" });
    files.push({ path: "nomad/consul-cert.pem", content: pair.cert, perm: "0600" });
    files.push({ path: "nomad/consul-key.pem", content: pair.key, perm: "0600" });
  }
  if (roles.vault) {
    if (!certs.vault) throw new ResinError(`node ${name} runs vault, but the cluster's secrets hold no vault certificate for it`, "a cluster keeps the roles it was created with: recreate it to change them");
    add("vault", certs.vault);
  }
  return files;
}

/**
 * The files the host keeps for talking to the cluster, per product: its CA certificate
 * (to check the agents: `consul-ca.pem`) and the host's client certificate and key for it
 * (to present to them: `consul-cli.pem`, `consul-cli-key.pem`). File names, to be written
 * 0600 in a directory of the caller's choosing.
 */
export function cliSecretFiles(bundle: Secrets): SecretFile[] {
  return PRODUCTS.flatMap((p) => [
    { path: `${p}-ca.pem`, content: bundle.cas[p].cert, perm: "0600" as const },
    { path: `${p}-cli.pem`, content: bundle.cli[p].cert, perm: "0600" as const },
    { path: `${p}-cli-key.pem`, content: bundle.cli[p].key, perm: "0600" as const },
  ]);
}

/** The host's TLS material for one product's HTTPS APIs. */
export function cliTls(bundle: Secrets, product: Product): { ca: string; clientCert: string; clientKey: string } {
  return { ca: bundle.cas[product].cert, clientCert: bundle.cli[product].cert, clientKey: bundle.cli[product].key };
}

/**
 * A node's own Consul agent token (a UUID), derived from the cluster's agent-token key
 * and the node's name: the host creates it with a policy that may write that node only,
 * so one node's token cannot register or deregister another.
 */
export function consulAgentToken(bundle: Pick<Secrets, "consul">, node: string): string {
  return derivedToken(bundle, `consul agent\n${node}\n`);
}

/**
 * The cluster's DNS token (a UUID), derived from the agent-token key: every agent's default
 * token, which its DNS interface answers with (Consul 1.8 has no DNS token of its own). The
 * host creates it with CONSUL_DNS_POLICY: read nodes and services, which each node's own
 * agent token may already, so holding it gives a node nothing new. A bundle needs no new
 * field for it: derived like the agent tokens, from a label no node name can produce.
 */
export function consulDnsToken(bundle: Pick<Secrets, "consul">): string {
  return derivedToken(bundle, "consul dns\n");
}

/** A version-4-shaped UUID from the cluster's agent-token key and a label (HMAC-SHA256). */
function derivedToken(bundle: Pick<Secrets, "consul">, label: string): string {
  const h = createHmac("sha256", bundle.consul.agentToken).update(label).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * The token a node's status endpoint wants before it acts on a service or shows a log
 * (resin/status-token in the node's metadata, "Authorization: Bearer" from the host).
 * Derived from Consul's CA key, which never leaves the host, so no bundle change is needed
 * and one node's token opens no other node. Pure: the same bundle gives the same token.
 */
export function statusToken(bundle: Secrets, node: string): string {
  return createHmac("sha256", bundle.cas.consul.key).update(`resin status endpoint\n${node}\n`).digest("hex");
}
