// Which secrets a node gets, and which the host keeps: least privilege, by role.
//
// A node gets, for each service it runs, `<service>/ca.pem` (the CA *certificate*),
// `<service>/cert.pem` and `<service>/key.pem` (its own certificate for that service),
// all 0600 in its metadata. Each service's run script copies /run/config/<service>/*
// into its private /run/<service>/, which is where the templates point
// (ca_file = "/run/consul/ca.pem", …). Nothing else of the bundle is a file:
//   - the gossip keys and ACL tokens are rendered by the node templates, which write
//     each only where its role needs it (Consul's management token on Consul servers
//     only, the agent token on every Consul agent, Nomad's gossip key on Nomad servers
//     only, the Consul token for Nomad on Nomad agents only);
//   - the CA key, the CLI key, Nomad's bootstrap secret and Vault's unseal keys and root
//     token never reach a node.
// test/unit/node-secrets.test.ts walks every role in machines/ and checks this by content.
import { createHmac } from "node:crypto";
import type { Role } from "../spec/load.js";
import { ResinError } from "../util/errors.js";
import type { Secrets, ServiceRoles } from "./secrets.js";

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

/** The files one node gets in its metadata, for the services it runs as `roles` says. */
export function nodeSecretFiles(bundle: Secrets, node: string | { name: string }, roles: ServiceRoles): SecretFile[] {
  const name = typeof node === "string" ? node : node.name;
  const certs = bundle.nodes[name];
  if (!certs) {
    throw new ResinError(`the cluster's secrets have no certificates for node ${name}`, "the cluster's state and secrets disagree; restore both from your backup");
  }
  const files: SecretFile[] = [];
  const add = (service: string, pair: { cert: string; key: string }) => {
    files.push({ path: `${service}/ca.pem`, content: bundle.ca.cert, perm: "0600" });
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
  if (roles.vault) {
    if (!certs.vault) throw new ResinError(`node ${name} runs vault, but the cluster's secrets hold no vault certificate for it`, "a cluster keeps the roles it was created with: recreate it to change them");
    add("vault", certs.vault);
  }
  return files;
}

/**
 * The files the host keeps for talking to the cluster: the CA certificate (to check the
 * agents) and the CLI's client certificate and key (to present to them). File names, to
 * be written 0600 in a directory of the caller's choosing.
 */
export function cliSecretFiles(bundle: Secrets): SecretFile[] {
  return [
    { path: "ca.pem", content: bundle.ca.cert, perm: "0600" },
    { path: "cli.pem", content: bundle.cli.cert, perm: "0600" },
    { path: "cli-key.pem", content: bundle.cli.key, perm: "0600" },
  ];
}

/** The host's TLS material for the agents' HTTPS APIs, in the shape cli/cluster/{nomad,vault}.ts take. */
export function cliTls(bundle: Secrets): { ca: string; clientCert: string; clientKey: string } {
  return { ca: bundle.ca.cert, clientCert: bundle.cli.cert, clientKey: bundle.cli.key };
}

/**
 * The token a node's status endpoint wants before it acts on a service or shows a log
 * (resin/status-token in the node's metadata, "Authorization: Bearer" from the host).
 * Derived from the CA key, which never leaves the host, so no bundle change is needed
 * and one node's token opens no other node. Pure: the same bundle gives the same token.
 */
/**
 * A node's own Consul agent token (a UUID), derived from the cluster's agent-token key
 * and the node's name: the host creates it with a policy that may write that node only,
 * so one node's token cannot register or deregister another.
 */
export function consulAgentToken(bundle: Pick<Secrets, "consul">, node: string): string {
  const h = createHmac("sha256", bundle.consul.agentToken).update(`consul agent\n${node}\n`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function statusToken(bundle: Secrets, node: string): string {
  return createHmac("sha256", bundle.ca.key).update(`resin status endpoint\n${node}\n`).digest("hex");
}
