import { describe, it, expect, beforeAll, inject } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { request, Agent } from "undici";
import { listRoles, loadRole, type Role } from "../../cli/spec/load.js";
import type { Channel } from "../../cli/spec/schema.js";
import { renderTemplate } from "../../cli/spec/template.js";
import { imageTemplateContext } from "../../cli/image/build.js";
import { nodeMetadata, serversByService, type MetadataNode, type MetadataTree } from "../../cli/bootstrap/metadata.js";
import { defaultJoin, planCluster, type ClusterPlan, type NodePlan } from "../../cli/bootstrap/plan.js";
import { consulAgentPolicy, CONSUL_DNS_POLICY, generateSecrets, type Secrets, type ServiceRoles } from "../../cli/bootstrap/secrets.js";
import { cliSecretFiles, consulAgentToken, consulDnsToken, cliTls, nodeSecretFiles, nodeSecrets, serviceRolesOf, type SecretFile } from "../../cli/bootstrap/node-secrets.js";
import { ResinError } from "../../cli/util/errors.js";
import { dnsQueryTcp } from "../tools/dns.js";

// Least privilege, checked by content: for every role in machines/, a three-node
// cluster of it (and one mixed cluster of every role) is given its secrets, and each
// node's whole config drive (the metadata tree nodeMetadata renders, templates
// included, and the secret files nodeSecretFiles gives it) is searched for every secret
// of the bundle. A secret may appear only on the nodes, and only in the service
// directories, whose role needs it.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const VERSIONS: Record<Channel, Record<string, string>> = {
  official: { consul: "1.22.6", nomad: "1.11.0", vault: "1.21.0" },
  debian: { consul: "1.8.7" },
};

/** Every file of a metadata tree, by path. */
function flatten(tree: MetadataTree, prefix = ""): Map<string, { content: string; perm?: string }> {
  const out = new Map<string, { content: string; perm?: string }>();
  for (const [name, node] of Object.entries(tree) as [string, MetadataNode][]) {
    if ("content" in node) out.set(`${prefix}${name}`, node);
    else for (const [p, f] of flatten(node.entries, `${prefix}${name}/`)) out.set(p, f);
  }
  return out;
}

/** A PEM's base64 body on one line, and the lines of it, so a copy is found however it is wrapped. */
const pemBody = (pem: string) => pem.split("\n").filter((l) => l && !l.startsWith("-----")).join("");

interface Drive {
  node: NodePlan;
  role: Role;
  roles: ServiceRoles;
  files: Map<string, { content: string; perm?: string }>;
  secretFiles: SecretFile[];
}

async function drives(plan: ClusterPlan, roleOf: (n: NodePlan) => Role, channel: Channel, secrets: Secrets): Promise<Drive[]> {
  const servers = serversByService(plan.nodes, roleOf);
  const out: Drive[] = [];
  for (const node of plan.nodes) {
    const role = roleOf(node);
    const roles = serviceRolesOf(role);
    const versions = Object.fromEntries(role.services.map((s) => [s.name, { version: VERSIONS[channel][s.name] ?? "" }]));
    const files = flatten(await nodeMetadata({ plan, node, secrets, role, versions, servers }));
    const secretFiles = nodeSecretFiles(secrets, node, roles);
    for (const f of secretFiles) {
      // nodeMetadata puts them in the tree itself; either way they are on the drive.
      const there = files.get(f.path);
      if (there) expect(there).toEqual({ content: f.content, perm: f.perm });
      else files.set(f.path, { content: f.content, perm: f.perm });
    }
    out.push({ node, role, roles, files, secretFiles });
  }
  return out;
}

async function withVaultKeys(secrets: Secrets): Promise<Secrets> {
  return {
    ...secrets,
    vault: { shares: 5, threshold: 3, unsealKeys: Array.from({ length: 5 }, () => randomBytes(33).toString("hex")), rootToken: `hvs.${randomBytes(18).toString("base64url")}`, initializedAt: new Date().toISOString() },
  };
}

/** The paths holding `needle` on this drive. */
const holders = (d: Drive, needle: string) => [...d.files].filter(([, f]) => f.content.replace(/\n/g, "").includes(needle)).map(([p]) => p);
const dirs = (paths: string[]) => [...new Set(paths.map((p) => p.split("/")[0]))].sort();

function checkLeastPrivilege(all: Drive[], secrets: Secrets): void {
  const products = ["consul", "nomad", "vault"] as const;
  const never: [string, string][] = [
    ...products.map((p): [string, string] => [`${p}'s CA key`, pemBody(secrets.cas[p].key)]),
    ...products.map((p): [string, string] => [`the host's ${p} key`, pemBody(secrets.cli[p].key)]),
    ...products.map((p): [string, string] => [`the host's ${p} certificate`, pemBody(secrets.cli[p].cert)]),
    ["Nomad's bootstrap secret", secrets.nomad.bootstrapSecret],
    ["the key Consul agent tokens are derived from", secrets.consul.agentToken],
    ["Vault's root token", secrets.vault!.rootToken],
    ...secrets.vault!.unsealKeys.map((k, i): [string, string] => [`Vault unseal key ${i + 1}`, k]),
  ];
  for (const d of all) {
    const where = `${d.node.name} (${d.node.role})`;
    for (const [what, needle] of never) expect(holders(d, needle), `${where} must not hold ${what}`).toEqual([]);

    const consul = d.roles.consul;
    expect(dirs(holders(d, secrets.consul.managementToken)), `${where}: Consul's management token`).toEqual(consul === "server" ? ["consul"] : []);
    // Its own agent token only, never another node's.
    expect(dirs(holders(d, consulAgentToken(secrets, d.node.name))), `${where}: its Consul agent token`).toEqual(consul ? ["consul"] : []);
    for (const other of all.filter((o) => o.node.name !== d.node.name)) {
      expect(holders(d, consulAgentToken(secrets, other.node.name)), `${where} must not hold ${other.node.name}'s agent token`).toEqual([]);
    }
    // The DNS token (read nodes and services) is every agent's default token, on every Consul agent alike.
    expect(dirs(holders(d, consulDnsToken(secrets))), `${where}: Consul's DNS token`).toEqual(consul ? ["consul"] : []);
    expect(dirs(holders(d, secrets.consul.nomadToken)), `${where}: Consul's token for Nomad`).toEqual(d.roles.nomad && consul ? ["nomad"] : []);
    expect(dirs(holders(d, secrets.gossipKey)), `${where}: Consul's gossip key`).toEqual(consul ? ["consul"] : []);
    expect(dirs(holders(d, secrets.nomadGossipKey)), `${where}: Nomad's gossip key`).toEqual(d.roles.nomad === "server" ? ["nomad"] : []);

    // Certificates: each service's own product's CA certificate and this node's own pair,
    // per service it runs (Nomad beside Consul also Consul's CA and its client pair for
    // Consul); no other node's key.
    const services = products.filter((s) => d.roles[s]);
    for (const p of products) {
      const expected = [...(d.roles[p] ? [`${p}/ca.pem`] : []), ...(p === "consul" && d.roles.nomad && consul ? ["nomad/consul-ca.pem"] : [])];
      expect(holders(d, pemBody(secrets.cas[p].cert)).sort(), `${where}: ${p}'s CA certificate`).toEqual(expected.sort());
    }
    const own = secrets.nodes[d.node.name]!;
    for (const s of services) {
      const pair = own[s]!;
      expect(d.files.get(`${s}/ca.pem`)?.content).toBe(secrets.cas[s].cert);
      expect(d.files.get(`${s}/cert.pem`)?.content).toBe(pair.cert);
      expect(d.files.get(`${s}/key.pem`)?.content).toBe(pair.key);
      expect(holders(d, pemBody(pair.key)), `${where}: its ${s} key`).toEqual([`${s}/key.pem`]);
    }
    if (d.roles.nomad && consul) {
      expect(d.files.get("nomad/consul-cert.pem")?.content).toBe(own.nomadConsul!.cert);
      expect(holders(d, pemBody(own.nomadConsul!.key)), `${where}: its Nomad's key for Consul`).toEqual(["nomad/consul-key.pem"]);
    }
    for (const [other, certs] of Object.entries(secrets.nodes)) {
      if (other === d.node.name) continue;
      for (const [s, pair] of Object.entries(certs)) expect(holders(d, pemBody(pair.key)), `${where} must not hold ${other}'s ${s} key`).toEqual([]);
    }
    for (const s of ["consul", "nomad", "vault"] as const) {
      if (!d.roles[s]) expect([...d.files.keys()].filter((p) => p.startsWith(`${s}/`)), `${where} does not run ${s}`).toEqual([]);
    }

    // Everything in a service directory is root's only (the run script hands the service its copy).
    for (const [path, f] of d.files) if (path.includes("/") && !path.startsWith("resin/")) expect(f.perm, `${where}: ${path}`).toBe("0600");
    for (const f of d.secretFiles) expect(f.perm).toBe("0600");
  }
}

/** Every /run/<service>/<file> a role's templates name must be a file of that service's metadata. */
function checkReferencedFiles(all: Drive[], imageTexts: Map<string, string[]>): void {
  for (const d of all) {
    const texts = [...[...d.files].filter(([p]) => p.endsWith(".hcl")).map(([, f]) => f.content), ...(imageTexts.get(d.role.spec.role) ?? [])];
    const referenced = new Set<string>();
    for (const text of texts) {
      const live = text.split("\n").filter((l) => !l.trim().startsWith("#")).join("\n"); // a commented-out example is no reference
      for (const [, service, file] of live.matchAll(/"\/run\/([a-z]+)\/([^"/]+)"/g)) {
        expect(d.files.has(`${service}/${file}`), `${d.node.name}: /run/${service}/${file} is referenced but /run/config/${service}/${file} is not on the drive`).toBe(true);
        expect(d.roles[service as "consul"], `${d.node.name}: a template names /run/${service} but the node does not run ${service}`).toBeTruthy();
        referenced.add(`${service}/${file}`);
      }
    }
    // Each service's config names its CA, certificate and key (so the check above is not
    // vacuous), and Nomad's consul block Consul's CA and its client pair for Consul.
    const expected = (["consul", "nomad", "vault"] as const).filter((s) => d.roles[s]).flatMap((s) => [`${s}/ca.pem`, `${s}/cert.pem`, `${s}/key.pem`]);
    if (d.roles.nomad) expected.push("nomad/consul-ca.pem", "nomad/consul-cert.pem", "nomad/consul-key.pem");
    expect([...referenced].sort(), `${d.node.name}: files its configs reference`).toEqual(expected.sort());
  }
}

async function imageTexts(role: Role, channel: Channel): Promise<string[]> {
  const out: string[] = [];
  for (const s of role.services) {
    for (const t of s.templates.image.filter((t) => t.dst.endsWith(".hcl"))) {
      const versions = Object.fromEntries(role.services.map((x) => [x.name, VERSIONS[channel][x.name] ?? ""]));
      out.push(renderTemplate(readFileSync(join(s.dir, t.src), "utf8"), imageTemplateContext(role, s.name, versions), t.src));
    }
  }
  return out;
}

describe("serviceRolesOf", () => {
  it("reads each role's server and client options", async () => {
    const of = async (name: string) => serviceRolesOf(await loadRole(REPO, name, "official"));
    expect(await of("consul-server")).toEqual({ consul: "server" });
    expect(await of("control-plane")).toEqual({ consul: "server", nomad: "server", vault: true });
    expect(await of("nomad-server")).toEqual({ consul: "client", nomad: "server" });
    expect(await of("nomad-client")).toEqual({ consul: "client", nomad: "client" });
    expect(await of("vault-server")).toEqual({ consul: "client", vault: true });
  });
});

describe("every role's nodes get only what their role needs", async () => {
  const roleNames = await listRoles(REPO);
  const cases = roleNames.flatMap((r) => (r === "consul-server" ? [[r, "debian"], [r, "official"]] : [[r, "official"]]) as [string, Channel][]);

  it("covers every role in machines/", () => {
    expect(roleNames.sort()).toEqual(["consul-server", "control-plane", "nomad-client", "nomad-client-docker", "nomad-server", "vault-server"]);
  });

  it.each(cases)("a three-node cluster of %s (%s)", async (name, channel) => {
    const role = await loadRole(REPO, name, channel);
    const plan = planCluster("least", [name, name, name]);
    const secrets = await withVaultKeys(await generateSecrets(plan, () => serviceRolesOf(role)));
    const all = await drives(plan, () => role, channel, secrets);
    checkLeastPrivilege(all, secrets);
    checkReferencedFiles(all, new Map([[name, await imageTexts(role, channel)]]));
  });

  it("a mixed cluster of every role", async () => {
    const names = ["control-plane", "control-plane", "control-plane", "consul-server", "nomad-server", "nomad-client", "vault-server"];
    const roles = new Map<string, Role>();
    for (const n of new Set(names)) roles.set(n, await loadRole(REPO, n, "official"));
    const plan = planCluster("mixed", names);
    const roleOf = (n: NodePlan) => roles.get(n.role)!;
    const secrets = await withVaultKeys(await generateSecrets(plan, (n) => serviceRolesOf(roleOf(n))));
    const all = await drives(plan, roleOf, "official", secrets);
    checkLeastPrivilege(all, secrets);
    const texts = new Map<string, string[]>();
    for (const [n, r] of roles) texts.set(n, await imageTexts(r, "official"));
    checkReferencedFiles(all, texts);
    // The Nomad client in particular: its own client certificates, no management token, no CA key, no Vault.
    const client = all.find((d) => d.node.role === "nomad-client")!;
    expect([...client.files.keys()].filter((p) => p.endsWith(".pem")).sort()).toEqual([
      "consul/ca.pem",
      "consul/cert.pem",
      "consul/key.pem",
      "nomad/ca.pem",
      "nomad/cert.pem",
      "nomad/consul-ca.pem",
      "nomad/consul-cert.pem",
      "nomad/consul-key.pem",
      "nomad/key.pem",
    ]);
  });
});

describe("nodeSecretFiles", () => {
  let secrets: Secrets;
  const plan = planCluster("demo", ["control-plane", "nomad-client"]);
  beforeAll(async () => {
    secrets = await generateSecrets(plan, (n) => (n.role === "control-plane" ? { consul: "server", nomad: "server", vault: true } : { consul: "client", nomad: "client" }));
  });

  it("gives a node its product's CA certificate and its own pair per service, 0600", () => {
    const files = nodeSecretFiles(secrets, plan.nodes[1]!, { consul: "client", nomad: "client" });
    expect(files.map((f) => f.path)).toEqual([
      "consul/ca.pem",
      "consul/cert.pem",
      "consul/key.pem",
      "nomad/ca.pem",
      "nomad/cert.pem",
      "nomad/key.pem",
      "nomad/consul-ca.pem",
      "nomad/consul-cert.pem",
      "nomad/consul-key.pem",
    ]);
    expect(files.every((f) => f.perm === "0600")).toBe(true);
    const content = (path: string) => files.find((f) => f.path === path)!.content;
    expect(content("nomad/key.pem")).toBe(secrets.nodes["demo-2"]!.nomad!.key);
    expect(content("consul/ca.pem")).toBe(secrets.cas.consul.cert);
    expect(content("nomad/ca.pem")).toBe(secrets.cas.nomad.cert);
    expect(content("nomad/consul-ca.pem")).toBe(secrets.cas.consul.cert);
    expect(content("nomad/consul-cert.pem")).toBe(secrets.nodes["demo-2"]!.nomadConsul!.cert);
  });

  it("refuses a node whose role changed since the cluster was made, or that it does not know", () => {
    expect(() => nodeSecretFiles(secrets, "demo-2", { consul: "server" })).toThrow(ResinError);
    expect(() => nodeSecretFiles(secrets, "demo-2", { consul: "client", vault: true })).toThrow(/holds? no vault certificate/);
    expect(() => nodeSecretFiles(secrets, "demo-9", { consul: "client" })).toThrow(/no certificates for node demo-9/);
  });

  it("gives the host each product's CA certificate and its client pair for it, and never a CA key", () => {
    const files = cliSecretFiles(secrets);
    expect(files.map((f) => [f.path, f.perm])).toEqual(
      ["consul", "nomad", "vault"].flatMap((p) => [
        [`${p}-ca.pem`, "0600"],
        [`${p}-cli.pem`, "0600"],
        [`${p}-cli-key.pem`, "0600"],
      ]),
    );
    for (const p of ["consul", "nomad", "vault"] as const) {
      expect(files.filter((f) => f.path.startsWith(`${p}-`)).map((f) => f.content)).toEqual([secrets.cas[p].cert, secrets.cli[p].cert, secrets.cli[p].key]);
      expect(cliTls(secrets, p)).toEqual({ ca: secrets.cas[p].cert, clientCert: secrets.cli[p].cert, clientKey: secrets.cli[p].key });
      expect(files.some((f) => f.content === secrets.cas[p].key)).toBe(false);
    }
  });
});

// The one function that chooses what of the bundle a node's role may hold (its templates
// see nothing else): the values by role, exactly.
describe("nodeSecrets", () => {
  let secrets: Secrets;
  const plan = planCluster("demo", ["control-plane", "consul-server", "nomad-server", "nomad-client", "vault-server"]);
  const ROLES: Record<string, ServiceRoles> = {
    "control-plane": { consul: "server", nomad: "server", vault: true },
    "consul-server": { consul: "server" },
    "nomad-server": { consul: "client", nomad: "server" },
    "nomad-client": { consul: "client", nomad: "client" },
    "vault-server": { consul: "client", vault: true },
  };
  beforeAll(async () => {
    secrets = await generateSecrets(plan, (n) => ROLES[n.role]!);
  });
  const values = (role: string) => {
    const node = plan.nodes.find((n) => n.role === role)!;
    const { files, ...chosen } = nodeSecrets(secrets, node, ROLES[role]!);
    return { node: node.name, chosen, paths: files.map((f) => f.path) };
  };

  it("gives a Nomad client its own agent token and Nomad's Consul token: no management token, no gossip key of Nomad, no Vault material", () => {
    const { node, chosen, paths } = values("nomad-client");
    expect(chosen).toEqual({ gossipKey: secrets.gossipKey, consul: { agentToken: consulAgentToken(secrets, node), dnsToken: consulDnsToken(secrets), nomadToken: secrets.consul.nomadToken } });
    expect(paths.filter((p) => p.startsWith("vault/"))).toEqual([]);
  });

  it("gives the management token to Consul servers only, and Nomad's gossip key to Nomad servers only", () => {
    expect(values("consul-server").chosen).toEqual({ gossipKey: secrets.gossipKey, consul: { agentToken: consulAgentToken(secrets, values("consul-server").node), dnsToken: consulDnsToken(secrets), managementToken: secrets.consul.managementToken } });
    const cp = values("control-plane");
    expect(cp.chosen).toEqual({
      gossipKey: secrets.gossipKey,
      nomadGossipKey: secrets.nomadGossipKey,
      consul: { agentToken: consulAgentToken(secrets, cp.node), dnsToken: consulDnsToken(secrets), managementToken: secrets.consul.managementToken, nomadToken: secrets.consul.nomadToken },
    });
    const ns = values("nomad-server");
    expect(ns.chosen).toEqual({ gossipKey: secrets.gossipKey, nomadGossipKey: secrets.nomadGossipKey, consul: { agentToken: consulAgentToken(secrets, ns.node), dnsToken: consulDnsToken(secrets), nomadToken: secrets.consul.nomadToken } });
    const vs = values("vault-server");
    expect(vs.chosen).toEqual({ gossipKey: secrets.gossipKey, consul: { agentToken: consulAgentToken(secrets, vs.node), dnsToken: consulDnsToken(secrets) } });
  });

  it("leaves out, rather than empties, what a role does not get: a template asking for it fails to render", async () => {
    const { chosen } = values("nomad-client");
    expect("managementToken" in chosen.consul).toBe(false);
    expect("nomadGossipKey" in chosen).toBe(false);
    const asking = "encrypt = {{json secrets.nomadGossipKey}}\n";
    expect(() => renderTemplate(asking, { secrets: chosen }, "nomad/asking.hbs")).toThrow(/nomad\/asking.hbs: {{json}} of a value the context does not have/);
    expect(renderTemplate(asking, { secrets: values("nomad-server").chosen }, "nomad/asking.hbs")).toBe(`encrypt = ${JSON.stringify(secrets.nomadGossipKey)}\n`);
  });

  it("never holds the bundle's keys, the host's, Nomad's bootstrap secret or Vault's", () => {
    for (const role of Object.keys(ROLES)) {
      const text = JSON.stringify(values(role).chosen);
      for (const p of ["consul", "nomad", "vault"] as const) {
        expect(text).not.toContain(pemBody(secrets.cas[p].key).slice(0, 40));
        expect(text).not.toContain(pemBody(secrets.cli[p].key).slice(0, 40));
      }
      expect(text).not.toContain(secrets.nomad.bootstrapSecret);
      expect(text).not.toContain(secrets.consul.agentToken);
    }
  });
});

// ---- a real Consul 1.8.7 ------------------------------------------------------------
//
// Consul 1.8.7 (the Debian package Resin's debian channel builds with) runs on this
// machine: the unit suite's global setup (test/unit/global-setup.ts) fetches and unpacks
// it through Resin's artifact cache. Two real agents, a server and a client, are started
// on loopback addresses with the files a consul-server node and a Consul client node get
// (their config dirs rewritten from /run/consul to a temporary directory and from the
// cluster subnet to 127.77.0.x), and the host's calls are checked: mutual TLS on 8501
// only, the server bootstraps the management token from its config, the client agent
// joins over verified TLS, and one node's token may register and deregister only itself.

const consulBin = inject("consul187");

describe("a real Consul 1.8.7 server and client agent, with these files", () => {
  it("serve only mutual TLS, bootstrap the management token, and join with verified certificates", { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-consul187-"));
    const procs: ChildProcess[] = [];
    const server = await loadRole(REPO, "consul-server", "debian");
    const client: Role = { ...server, options: { ...server.options, consul: { ...server.options.consul!, server: false, ui: false } } };
    const node = (i: number): NodePlan => ({ name: `t-${i}`, index: i, role: i === 1 ? "consul-server" : "client", address: `127.77.0.${i}`, prefix: 8, clusterMac: "", hostMac: "", hostAddress: "" });
    const plan: ClusterPlan = { name: "t", datacenter: "dc1", subnet: "127.77.0.0/16", network: { mode: "static" }, nodes: [node(1), node(2)] };
    const roleOf = (n: NodePlan) => (n.index === 1 ? server : client);
    const secrets = await generateSecrets(plan, (n) => serviceRolesOf(roleOf(n)));
    const all = await drives(plan, roleOf, "debian", secrets);
    try {
      for (const d of all) {
        const cfg = join(dir, d.node.name);
        mkdirSync(join(cfg, "data"), { recursive: true });
        const fix = (s: string) =>
          s.replaceAll("/run/consul", cfg).replaceAll("/var/lib/consul", join(cfg, "data")).replace(/^client_addr .*$/m, `client_addr = "${d.node.address}"`);
        for (const text of await imageTexts(d.role, "debian")) writeFileSync(join(cfg, "00-role.hcl"), fix(text));
        for (const [path, f] of d.files) if (path.startsWith("consul/")) writeFileSync(join(cfg, path.slice("consul/".length)), fix(f.content), { mode: 0o600 });
        const validate = spawnSync(consulBin, ["validate", cfg], { encoding: "utf8" });
        expect(validate.status, validate.stdout + validate.stderr).toBe(0);
        procs.push(spawn(consulBin, ["agent", `-config-dir=${cfg}`], { stdio: ["ignore", "pipe", "pipe"] }));
      }
      const logs = procs.map(() => [] as string[]);
      procs.forEach((p, i) => {
        p.stdout!.on("data", (b: Buffer) => logs[i]!.push(b.toString()));
        p.stderr!.on("data", (b: Buffer) => logs[i]!.push(b.toString()));
      });
      const tls = cliTls(secrets, "consul");
      const dispatcher = new Agent({ connect: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } });
      const get = async (url: string, token?: string, d = dispatcher) => {
        const res = await request(url, { dispatcher: d, headers: token ? { "x-consul-token": token } : {}, headersTimeout: 3000, bodyTimeout: 3000 });
        return { status: res.statusCode, text: await res.body.text() };
      };
      const deadline = Date.now() + 60_000;
      let leader = "";
      while (Date.now() < deadline) {
        leader = await get("https://127.77.0.1:8501/v1/status/leader").then((r) => (r.status === 200 ? (JSON.parse(r.text) as string) : ""), () => "");
        if (leader) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(leader, logs[0]!.join("")).toBe("127.77.0.1:8300");

      // The management token came from the server's config; without a token, nothing.
      const self = await get("https://127.77.0.1:8501/v1/acl/token/self", secrets.consul.managementToken);
      expect(self.status, self.text).toBe(200);
      expect(JSON.parse(self.text).Policies).toEqual([expect.objectContaining({ Name: "global-management" })]);
      expect((await get("https://127.77.0.1:8501/v1/operator/autopilot/health")).status).toBe(403);
      // No plain HTTP, and no HTTPS without the CA-signed client certificate.
      await expect(request("http://127.77.0.1:8500/v1/status/leader")).rejects.toThrow();
      const anonymous = new Agent({ connect: { ca: tls.ca } });
      await expect(get("https://127.77.0.1:8501/v1/status/leader", undefined, anonymous)).rejects.toThrow();
      await anonymous.close();
      // Nor with a certificate of another product's CA: the host's own for Nomad or Vault
      // (signed by a CA Consul does not trust) opens nothing. Before there was a CA per
      // product, any of the cluster's certificates was a valid Consul client.
      for (const product of ["nomad", "vault"] as const) {
        const other = new Agent({ connect: { ca: tls.ca, cert: secrets.cli[product].cert, key: secrets.cli[product].key } });
        await expect(get("https://127.77.0.1:8501/v1/status/leader", undefined, other), `the host's ${product} certificate`).rejects.toThrow();
        await other.close();
      }

      // The agent token starts to work once the host creates it (as cli/cluster/bootstrap.ts does).
      const put = async (path: string, body: unknown) => {
        const res = await request(`https://127.77.0.1:8501${path}`, { method: "PUT", dispatcher, body: JSON.stringify(body), headers: { "x-consul-token": secrets.consul.managementToken } });
        return { status: res.statusCode, text: await res.body.text() };
      };
      for (const node of ["t-1", "t-2"]) {
        expect((await put("/v1/acl/policy", { Name: `resin-agent-${node}`, Rules: consulAgentPolicy(node) })).status).toBe(200);
        expect((await put("/v1/acl/token", { SecretID: consulAgentToken(secrets, node), Policies: [{ Name: `resin-agent-${node}` }] })).status).toBe(200);
      }
      let nodes: string[] = [];
      while (Date.now() < deadline) {
        const r = await get("https://127.77.0.1:8501/v1/catalog/nodes", secrets.consul.managementToken);
        nodes = r.status === 200 ? (JSON.parse(r.text) as { Node: string }[]).map((n) => n.Node).sort() : [];
        if (nodes.length === 2) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(nodes, logs[1]!.join("")).toEqual(["t-1", "t-2"]);
      // Least privilege: t-2's own token may write t-2 in the catalog, and not t-1.
      const register = async (node: string, token: string) => {
        const res = await request("https://127.77.0.1:8501/v1/catalog/register", {
          method: "PUT",
          dispatcher,
          body: JSON.stringify({ Node: node, Address: node === "t-1" ? "127.77.0.1" : "127.77.0.2", NodeMeta: { probe: "least-privilege" } }),
          headers: { "x-consul-token": token },
        });
        return { status: res.statusCode, text: await res.body.text() };
      };
      const own = await register("t-2", consulAgentToken(secrets, "t-2"));
      expect(own.status, own.text).toBe(200);
      const other = await register("t-1", consulAgentToken(secrets, "t-2"));
      expect(other.status, other.text).toBe(403);
      // And the same for deregister: t-2's token may not remove t-1, and may remove t-2.
      const deregister = async (node: string, token: string) => {
        const res = await request("https://127.77.0.1:8501/v1/catalog/deregister", { method: "PUT", dispatcher, body: JSON.stringify({ Node: node }), headers: { "x-consul-token": token } });
        return { status: res.statusCode, text: await res.body.text() };
      };
      const otherGone = await deregister("t-1", consulAgentToken(secrets, "t-2"));
      expect(otherGone.status, otherGone.text).toBe(403);
      const catalogNodes = async () => (JSON.parse((await get("https://127.77.0.1:8501/v1/catalog/nodes", secrets.consul.managementToken)).text) as { Node: string }[]).map((n) => n.Node).sort();
      expect(await catalogNodes()).toEqual(["t-1", "t-2"]);
      const ownGone = await deregister("t-2", consulAgentToken(secrets, "t-2"));
      expect(ownGone.status, ownGone.text).toBe(200);
      expect(await catalogNodes()).toEqual(["t-1"]);
      // DNS answers with every agent's default token, the cluster's DNS token: refused
      // while the host has not created it (the agent holds a token Consul does not know),
      // answered once it has, on the client agent as on the server. The same token opens
      // nothing else to a request that carries none: no write, no key.
      const dnsAsk = () => Promise.all(["127.77.0.1", "127.77.0.2"].map((a) => dnsQueryTcp(a, 8600, "consul.service.consul")));
      const before = await dnsAsk();
      expect(before.map((a) => a.addresses), JSON.stringify(before)).toEqual([[], []]);
      expect((await put("/v1/acl/policy", { Name: "resin-dns", Rules: CONSUL_DNS_POLICY })).status).toBe(200);
      expect((await put("/v1/acl/token", { SecretID: consulDnsToken(secrets), Policies: [{ Name: "resin-dns" }] })).status).toBe(200);
      let after = await dnsAsk();
      for (let i = 0; i < 20 && after.some((a) => a.addresses.length === 0); i++) {
        await new Promise((r) => setTimeout(r, 500));
        after = await dnsAsk();
      }
      expect(after, JSON.stringify(after)).toEqual([{ rcode: "NOERROR", addresses: ["127.77.0.1"] }, { rcode: "NOERROR", addresses: ["127.77.0.1"] }]);
      const tokenless = await register("t-1", "");
      expect(tokenless.status, tokenless.text).toBe(403);
      expect((await put("/v1/kv/resin/probe", "written with the management token")).status).toBe(200);
      const keyTokenless = await get("https://127.77.0.2:8501/v1/kv/resin/probe");
      expect(keyTokenless.status, keyTokenless.text).toBe(403);
      // The client agent serves its API over TLS too, with its client.dc1.consul certificate.
      const agentSelf = await get("https://127.77.0.2:8501/v1/agent/self", secrets.consul.managementToken);
      expect(JSON.parse(agentSelf.text).Config.NodeName).toBe("t-2");
      await dispatcher.close();
    } finally {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once("exit", r)))));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// A cloud cluster's agents learn their address at start (go-sockaddr) and find their
// servers by cloud auto-join. Consul 1.8.7 is asked whether it accepts that config; it
// is not started, since auto-join would ask a cloud's API.
describe("a real Consul 1.8.7 with a DHCP cluster's files", () => {
  it("accepts go-sockaddr addresses and a cloud auto-join string (consul validate)", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-consul187-dhcp-"));
    try {
      const server = await loadRole(REPO, "consul-server", "debian");
      const plan = planCluster("cloud", ["consul-server", "consul-server", "consul-server"], undefined, { mode: "dhcp", join: defaultJoin("cloud") });
      const secrets = await generateSecrets(plan, () => serviceRolesOf(server));
      const [d] = await drives(plan, () => server, "debian", secrets);
      const fix = (s: string) => s.replaceAll("/run/consul", dir).replaceAll("/var/lib/consul", join(dir, "data"));
      for (const text of await imageTexts(server, "debian")) writeFileSync(join(dir, "00-role.hcl"), fix(text));
      const node = d!.files.get("consul/10-node.hcl")!.content;
      expect(node).toContain('bind_addr          = "{{ GetPrivateIP }}"');
      expect(node).toContain('retry_join         = ["provider=aws tag_key=resin-cluster tag_value=cloud"]');
      for (const [path, f] of d!.files) if (path.startsWith("consul/")) writeFileSync(join(dir, path.slice("consul/".length)), fix(f.content), { mode: 0o600 });
      const validate = spawnSync(consulBin, ["validate", dir], { encoding: "utf8" });
      expect(validate.status, validate.stdout + validate.stderr).toBe(0);
      expect(validate.stdout).toContain("Configuration is valid!");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
