import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseHcl2 } from "@cdktf/hcl2json";
import { Agent, request } from "undici";
import { loadRole, type Role } from "../../cli/spec/load.js";
import { renderTemplate } from "../../cli/spec/template.js";
import { imageTemplateContext } from "../../cli/image/build.js";
import { nodeMetadata, serversByService, type MetadataNode, type MetadataTree } from "../../cli/bootstrap/metadata.js";
import { planCluster, type NodePlan } from "../../cli/bootstrap/plan.js";
import { generateSecrets, type Secrets } from "../../cli/bootstrap/secrets.js";
import { serviceRolesOf } from "../../cli/bootstrap/node-secrets.js";
import { VAULT_TLS_SERVER_NAME } from "../../cli/bootstrap/pki.js";
import { hostTls } from "../../cli/cluster/api.js";
import { initVault } from "../../cli/cluster/vault.js";
import { serveHttps, type RunningDouble } from "../doubles/https.js";

// Finding 2 of issue #21: with one CA for the whole cluster and every leaf certificate
// also a client certificate, any node's certificate passed Vault's "client certificate
// required" listener, so root on a Nomad client could PUT /v1/sys/init before the host
// and hold the root token and unseal keys.
//
// A real Vault cannot run here (see the README's Channels), so Vault's side is a TEST
// DOUBLE: a TLS listener configured from the listener block of Vault's role config AS
// RENDERED (tls_cert_file, tls_key_file, tls_client_ca_file,
// tls_require_and_verify_client_cert), with the files those settings name taken from a
// Vault node's metadata as `resin up` renders it. What it checks is what Go's TLS stack
// checks with that configuration: a client certificate that chains to the client CA
// file. The certificates presented are the ones each role's node really gets.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const VERSIONS = { consul: "1.22.6", nomad: "1.11.0", vault: "1.21.0" };
const NAMES = ["control-plane", "control-plane", "control-plane", "consul-server", "nomad-server", "nomad-client", "vault-server"];

let secrets: Secrets;
let roles: Map<string, Role>;
let nodes: NodePlan[];
/** Each node's metadata files by path ("vault/key.pem"), as its config drive carries them. */
const drives = new Map<string, Map<string, string>>();
let vault: RunningDouble;

function flatten(tree: MetadataTree, prefix = "", out = new Map<string, string>()): Map<string, string> {
  for (const [name, node] of Object.entries(tree) as [string, MetadataNode][]) {
    if ("content" in node) out.set(`${prefix}${name}`, node.content);
    else flatten(node.entries, `${prefix}${name}/`, out);
  }
  return out;
}

beforeAll(async () => {
  roles = new Map();
  for (const n of new Set(NAMES)) roles.set(n, await loadRole(REPO, n, "official"));
  const plan = planCluster("trust", NAMES);
  nodes = plan.nodes;
  const roleOf = (n: NodePlan) => roles.get(n.role)!;
  secrets = await generateSecrets(plan, (n) => serviceRolesOf(roleOf(n)));
  const servers = serversByService(plan.nodes, roleOf);
  for (const node of plan.nodes) {
    const role = roleOf(node);
    const versions = Object.fromEntries(role.services.map((s) => [s.name, { version: VERSIONS[s.name as keyof typeof VERSIONS] ?? "" }]));
    drives.set(node.name, flatten(await nodeMetadata({ plan, node, secrets, role, versions, servers })));
  }

  // Vault's listener as the vault-server role renders it, its files from that node's drive.
  const role = roles.get("vault-server")!;
  const svc = role.services.find((s) => s.name === "vault")!;
  const t = svc.templates.image.find((t) => t.dst.endsWith("00-role.hcl"))!;
  const text = renderTemplate(readFileSync(join(svc.dir, t.src), "utf8"), imageTemplateContext(role, "vault", VERSIONS), t.src);
  const hcl = (await parseHcl2("00-role.hcl", text)) as { listener: { tcp: Record<string, unknown>[] } };
  const listener = hcl.listener.tcp[0]!;
  const vaultNode = nodes.find((n) => n.role === "vault-server")!;
  const file = (setting: string) => {
    const path = String(listener[setting]);
    expect(path, setting).toMatch(/^\/run\/vault\//);
    return drives.get(vaultNode.name)!.get(`vault/${path.slice("/run/vault/".length)}`)!;
  };
  expect(listener.tls_require_and_verify_client_cert).toBe(true);
  vault = await serveHttps(
    { cert: file("tls_cert_file"), key: file("tls_key_file"), ca: file("tls_client_ca_file"), requireClientCert: listener.tls_require_and_verify_client_cert === true },
    (req) => (req.method === "PUT" && req.path === "/v1/sys/init" ? { status: 200, body: { keys: ["aa"], keys_base64: ["qg=="], root_token: "hvs.double" } } : { status: 404, body: "" }),
  );
});
afterAll(async () => {
  await vault?.close();
});

/** PUT /v1/sys/init as a process on a node would: with a certificate and key from its drive, trusting anything. */
async function initAs(pair: { cert: string; key: string }): Promise<number | string> {
  const dispatcher = new Agent({ connect: { cert: pair.cert, key: pair.key, rejectUnauthorized: false } });
  try {
    const res = await request(`${vault.url}/v1/sys/init`, { method: "PUT", dispatcher, body: '{"secret_shares":1,"secret_threshold":1}', headersTimeout: 3000 });
    await res.body.text();
    return res.statusCode;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  } finally {
    await dispatcher.close();
  }
}

const pairOn = (node: NodePlan, service: string) => {
  const drive = drives.get(node.name)!;
  const prefix = service === "nomad-consul" ? "nomad/consul-" : `${service}/`;
  return { cert: drive.get(`${prefix}cert.pem`)!, key: drive.get(`${prefix}key.pem`)! };
};

describe("Vault's listener, as rendered, with the certificates each node holds", () => {
  const attackers: [string, string, string][] = [
    ["a Nomad client's Nomad certificate", "nomad-client", "nomad"],
    ["a Nomad client's Consul agent certificate", "nomad-client", "consul"],
    ["a Nomad client's Nomad certificate for Consul", "nomad-client", "nomad-consul"],
    ["a Nomad server's Nomad certificate", "nomad-server", "nomad"],
    ["a Consul server's certificate", "consul-server", "consul"],
    ["a control-plane node's Consul server certificate", "control-plane", "consul"],
    ["a control-plane node's Nomad server certificate", "control-plane", "nomad"],
  ];

  it.each(attackers)("refuses sys/init with %s: the handshake fails, Vault sees no request", async (_what, role, service) => {
    const node = nodes.find((n) => n.role === role)!;
    const before = vault.requests.length;
    const pair = pairOn(node, service);
    expect(pair.cert, `${node.name} holds ${service}`).toMatch(/BEGIN CERTIFICATE/);
    const answer = await initAs(pair);
    expect(answer, `sys/init with ${node.name}'s ${service} certificate`).not.toBe(200);
    expect(vault.requests.length).toBe(before);
  });

  it("answers the host's Vault certificate (through the host's own code) and a Vault peer's, which raft retry_join presents", async () => {
    const before = vault.requests.length;
    const init = await initVault(vault.url, { shares: 1, threshold: 1 }, { ...hostTls(secrets, "vault", VAULT_TLS_SERVER_NAME), timeoutMs: 3000 });
    expect(init.rootToken).toBe("hvs.double");
    const peer = nodes.find((n) => n.role === "control-plane")!;
    expect(await initAs(pairOn(peer, "vault"))).toBe(200);
    expect(vault.requests.slice(before).map((r) => [r.path, r.authorizedClient])).toEqual([
      ["/v1/sys/init", true],
      ["/v1/sys/init", true],
    ]);
  });

  it("is not answered by the host with its Consul or Nomad certificate either", async () => {
    for (const product of ["consul", "nomad"] as const) {
      const before = vault.requests.length;
      await expect(initVault(vault.url, { shares: 1, threshold: 1 }, { ...hostTls(secrets, product, VAULT_TLS_SERVER_NAME), timeoutMs: 3000 })).rejects.toThrow();
      expect(vault.requests.length).toBe(before);
    }
  });
});
