import { describe, it, expect, beforeAll } from "vitest";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadRole, type Role } from "../../cli/spec/load.js";
import { compareVersions, renderTemplate } from "../../cli/spec/template.js";
import {
  addFile,
  nodeMetadata,
  serialiseMetadata,
  templateContext,
  type MetadataNode,
  type MetadataTree,
  type NodeContext,
  nodeId,
} from "../../cli/bootstrap/metadata.js";
import { planCluster, type ClusterPlan } from "../../cli/bootstrap/plan.js";
import { generateSecrets, type Secrets } from "../../cli/bootstrap/secrets.js";
import { consulAgentToken, consulDnsToken, statusToken } from "../../cli/bootstrap/node-secrets.js";

// The Consul templates rendered the way Resin renders them: role.hcl.hbs at image
// build time (the context cli/image/build.ts gives it), node.hcl.hbs per node through
// nodeMetadata. Debian ships Consul 1.8.7, which predates `ui_config` (1.9); newer
// releases deprecate `ui`.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const CONSUL = join(REPO, "services", "consul");
const ROLE_TEMPLATE = readFileSync(join(CONSUL, "role.hcl.hbs"), "utf8");
const VERSIONS = ["1.8.7", "1.22.0"] as const;
/** The secrets of the "demo" clusters below: real certificates (nodeMetadata puts each node's on its drive), fixed keys and tokens. */
let SECRETS: Secrets;
const MANAGEMENT = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const AGENT = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
beforeAll(async () => {
  const plan = planCluster("demo", ["consul-server", "consul-server", "consul-server", "consul-client"]);
  const generated = await generateSecrets(plan, (n) => ({ consul: n.role === "consul-server" ? "server" : "client" }));
  SECRETS = {
    ...generated,
    gossipKey: Buffer.alloc(32, 7).toString("base64"),
    nomadGossipKey: Buffer.alloc(32, 9).toString("base64"),
    consul: { ...generated.consul, managementToken: MANAGEMENT, agentToken: AGENT },
  };
});

// ---- an HCL check ------------------------------------------------------------------
//
// @cdktf/hcl2json (HashiCorp's HCL parser compiled to WASM) is used when installed.
// It is not a dependency of this repository, so without it the rendered files are
// checked against the subset of HCL the templates use: `key = <JSON literal>` lines,
// `name { … }` blocks, `#` comments and blank lines. That subset check also yields the
// values, which the tests compare.

type HclValue = unknown;
interface HclBody {
  attrs: Record<string, HclValue>;
  blocks: Record<string, HclBody>;
}

function parseHclSubset(text: string, name: string): HclBody {
  const root: HclBody = { attrs: {}, blocks: {} };
  const stack: HclBody[] = [root];
  text.split("\n").forEach((raw, i) => {
    const where = `${name}:${i + 1}`;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const body = stack[stack.length - 1]!;
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$/))) {
      const [, key, literal] = m;
      if (key! in body.attrs || key! in body.blocks) throw new Error(`${where}: '${key}' is set twice`);
      try {
        body.attrs[key!] = JSON.parse(literal!);
      } catch {
        throw new Error(`${where}: the value of '${key}' is not a literal: ${literal}`);
      }
    } else if ((m = line.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*\{$/))) {
      const key = m[1]!;
      if (key in body.attrs || key in body.blocks) throw new Error(`${where}: '${key}' is set twice`);
      const block: HclBody = { attrs: {}, blocks: {} };
      body.blocks[key] = block;
      stack.push(block);
    } else if (line === "}") {
      if (stack.length === 1) throw new Error(`${where}: '}' closes nothing`);
      stack.pop();
    } else {
      throw new Error(`${where}: not HCL: ${raw}`);
    }
  });
  if (stack.length !== 1) throw new Error(`${name}: a block is not closed`);
  return root;
}

type Hcl2Json = { parse: (filename: string, content: string) => Promise<Record<string, unknown>> };
let hcl2json: Hcl2Json | undefined;
beforeAll(async () => {
  let resolved: string | undefined;
  try {
    resolved = createRequire(import.meta.url).resolve("@cdktf/hcl2json");
  } catch {
    console.warn("render: @cdktf/hcl2json is not installed; checking rendered HCL against the subset the templates use");
  }
  if (resolved) hcl2json = (await import(pathToFileURL(resolved).href)) as Hcl2Json;
});

/** Check `text` is HCL; returns its attributes and blocks (from the subset parser). */
async function parseHcl(text: string, name: string): Promise<HclBody> {
  const body = parseHclSubset(text, name);
  if (hcl2json) {
    const real = await hcl2json.parse(name, text);
    const compare = (b: HclBody, r: Record<string, unknown>) => {
      for (const [k, v] of Object.entries(b.attrs)) expect(r[k], `${name}: ${k}`).toEqual(v);
      for (const [k, inner] of Object.entries(b.blocks)) {
        const blocks = r[k] as Record<string, unknown>[];
        expect(Array.isArray(blocks), `${name}: block ${k}`).toBe(true);
        compare(inner, blocks[0]!);
      }
    };
    compare(body, real);
  }
  return body;
}

// ---- rendering ---------------------------------------------------------------------

let serverRole: Role;
beforeAll(async () => {
  serverRole = await loadRole(REPO, "consul-server");
});

function withConsul(role: Role, options: Record<string, unknown>): Role {
  return { ...role, options: { ...role.options, consul: { ...role.options.consul!, ...(options as Record<string, boolean | string | number>) } } };
}

/** The image-time context, as cli/image/build.ts builds it for each service template. */
function renderRoleHcl(role: Role, version: string): string {
  const versions = Object.fromEntries(role.services.map((s) => [s.name, { version: s.name === "consul" ? version : "", options: role.options[s.name] }]));
  const context = { role: role.spec.role, service: { name: "consul", ...versions.consul }, options: role.options.consul, services: versions };
  return renderTemplate(ROLE_TEMPLATE, context, "consul/role.hcl.hbs");
}

function nodeContext(plan: ClusterPlan, index: number, role: Role, serverCount: number, version = "1.8.7"): NodeContext {
  return {
    plan,
    node: plan.nodes[index]!,
    secrets: SECRETS,
    role,
    versions: { consul: { version }, base: { version: "" } },
    servers: { consul: plan.nodes.slice(0, serverCount) },
  };
}

describe("nodeId", () => {
  it("is a UUID, stable for a node and different between nodes and clusters", () => {
    const id = nodeId(SECRETS, "demo-1");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(nodeId(SECRETS, "demo-1")).toBe(id);
    expect(nodeId(SECRETS, "demo-2")).not.toBe(id);
    expect(nodeId({ ...SECRETS, gossipKey: Buffer.alloc(32, 1).toString("base64") }, "demo-1")).not.toBe(id);
  });
});

describe("compareVersions", () => {
  it("orders dotted versions numerically", () => {
    expect(compareVersions("1.10.0", "1.9.3")).toBe(1);
    expect(compareVersions("1.9.3", "1.10.0")).toBe(-1);
    expect(compareVersions("1.8.7", "1.9")).toBe(-1);
    expect(compareVersions("1.22.0", "1.9")).toBe(1);
    expect(compareVersions("1.9", "1.9.0")).toBe(0);
    expect(compareVersions("1.9.0", "1.9")).toBe(0);
    expect(compareVersions("2", "1.99.99")).toBe(1);
  });
});

describe("services/consul/role.hcl.hbs", () => {
  it("uses `ui = true` for Consul 1.8.7, which has no ui_config", async () => {
    const text = renderRoleHcl(serverRole, "1.8.7");
    expect(text).toMatch(/^ui = true$/m);
    expect(text).not.toContain("ui_config");
    const hcl = await parseHcl(text, "00-role.hcl (1.8.7)");
    expect(hcl.attrs.ui).toBe(true);
    expect(hcl.blocks.ui_config).toBeUndefined();
  });

  it("uses a ui_config block for Consul 1.22.0 (and from 1.9 on)", async () => {
    for (const version of ["1.22.0", "1.9.0", "1.10.1"]) {
      const text = renderRoleHcl(serverRole, version);
      expect(text, version).toMatch(/^ui_config \{$/m);
      expect(text, version).not.toMatch(/^\s*ui\s*=/m);
      const hcl = await parseHcl(text, `00-role.hcl (${version})`);
      expect(hcl.blocks.ui_config?.attrs).toEqual({ enabled: true });
      expect(hcl.attrs.ui).toBeUndefined();
    }
  });

  it.each(VERSIONS)("renders the shared settings for Consul %s", async (version) => {
    const text = renderRoleHcl(serverRole, version);
    expect(text).toMatch(/^disable_update_check = true$/m);
    expect(text).toContain(`Consul ${version} settings`);
    expect(text).toContain("the consul-server role");
    const hcl = await parseHcl(text, `00-role.hcl (${version})`);
    expect(hcl.attrs).toMatchObject({
      data_dir: "/var/lib/consul",
      disable_update_check: true,
      client_addr: "0.0.0.0",
      server: true,
      log_level: "INFO",
    });
  });

  it("turns on mutual TLS with top-level keys before 1.12, and in a tls block from 1.12", async () => {
    const files = { ca_file: "/run/consul/ca.pem", cert_file: "/run/consul/cert.pem", key_file: "/run/consul/key.pem" };
    for (const version of ["1.8.7", "1.11.9"]) {
      const hcl = await parseHcl(renderRoleHcl(serverRole, version), `00-role.hcl (${version})`);
      expect(hcl.attrs, version).toMatchObject({ ...files, verify_incoming: true, verify_outgoing: true, verify_server_hostname: true });
      expect(hcl.blocks.tls, version).toBeUndefined();
    }
    for (const version of ["1.12.0", "1.22.0"]) {
      const hcl = await parseHcl(renderRoleHcl(serverRole, version), `00-role.hcl (${version})`);
      expect(hcl.attrs.verify_incoming, version).toBeUndefined();
      expect(hcl.attrs.ca_file, version).toBeUndefined();
      expect(hcl.blocks.tls?.blocks.defaults?.attrs, version).toEqual({ ...files, verify_incoming: true, verify_outgoing: true });
      expect(hcl.blocks.tls?.blocks.internal_rpc?.attrs, version).toEqual({ verify_server_hostname: true });
    }
  });

  it("serves the API on HTTPS 8501 only, and gRPC with TLS on grpc_tls from 1.14", async () => {
    const ports = async (version: string) => (await parseHcl(renderRoleHcl(serverRole, version), `00-role.hcl (${version})`)).blocks.ports?.attrs;
    expect(await ports("1.8.7")).toEqual({ http: -1, https: 8501, grpc: 8502 });
    expect(await ports("1.13.9")).toEqual({ http: -1, https: 8501, grpc: 8502 });
    expect(await ports("1.14.0")).toEqual({ http: -1, https: 8501, grpc: -1, grpc_tls: 8503 });
    expect(await ports("1.22.0")).toEqual({ http: -1, https: 8501, grpc: -1, grpc_tls: 8503 });
  });

  it.each(VERSIONS)("turns ACLs on, denying by default (Consul %s)", async (version) => {
    const hcl = await parseHcl(renderRoleHcl(withConsul(serverRole, { server: false }), version), `00-role.hcl (${version})`);
    expect(hcl.blocks.acl?.attrs).toEqual({ enabled: true, default_policy: "deny", enable_token_persistence: true });
    expect(hcl.blocks.acl?.blocks).toEqual({});
  });

  it.each(VERSIONS)("sets raft's timing, and autopilot's stabilisation on servers only (Consul %s)", async (version) => {
    const server = await parseHcl(renderRoleHcl(withConsul(serverRole, { raft_multiplier: 1, server_stabilization_seconds: 4 }), version), `00-role.hcl (${version})`);
    expect(server.blocks.performance?.attrs).toEqual({ raft_multiplier: 1 });
    expect(server.blocks.autopilot?.attrs).toEqual({ server_stabilization_time: "4s" });
    const client = await parseHcl(renderRoleHcl(withConsul(serverRole, { server: false, raft_multiplier: 5 }), version), `00-role.hcl (client, ${version})`);
    expect(client.blocks.performance?.attrs).toEqual({ raft_multiplier: 5 });
    expect(client.blocks.autopilot).toBeUndefined();
  });

  it.each(VERSIONS)("leaves the UI off when ui is false (Consul %s)", async (version) => {
    const text = renderRoleHcl(withConsul(serverRole, { ui: false, server: false, log_level: "DEBUG" }), version);
    expect(text).not.toMatch(/\bui(_config)?\b\s*(=|\{)/);
    const hcl = await parseHcl(text, `00-role.hcl (client, ${version})`);
    expect(hcl.attrs.server).toBe(false);
    expect(hcl.attrs.log_level).toBe("DEBUG");
  });
});

describe("services/consul/node.hcl.hbs through nodeMetadata", () => {
  const plan = planCluster("demo", ["consul-server", "consul-server", "consul-server", "consul-client"]);
  const serverAddresses = ["10.88.0.11", "10.88.0.12", "10.88.0.13"];

  function nodeHcl(tree: MetadataTree): { content: string; perm?: string } {
    const consul = tree.consul as { entries: Record<string, MetadataNode> };
    expect(consul && "entries" in consul).toBe(true);
    const file = consul.entries["10-node.hcl"]!;
    expect(file && "content" in file).toBe(true);
    return file as { content: string; perm?: string };
  }

  it.each(VERSIONS)("writes a server's node config (Consul %s)", async (version) => {
    const tree = await nodeMetadata(nodeContext(plan, 1, serverRole, 3, version));
    const file = nodeHcl(tree);
    expect(file.perm).toBe("0600");
    expect(file.content).toContain(`retry_join         = ${JSON.stringify(serverAddresses)}`);
    const hcl = await parseHcl(file.content, `10-node.hcl (${version})`);
    expect(hcl.attrs).toEqual({
      node_name: "demo-2",
      node_id: nodeId(SECRETS, "demo-2"),
      datacenter: "dc1",
      primary_datacenter: "dc1",
      bind_addr: "10.88.0.12",
      advertise_addr: "10.88.0.12",
      encrypt: SECRETS.gossipKey,
      retry_join: serverAddresses,
      bootstrap_expect: 3,
    });
    // The management token a server bootstraps ACLs with: `master` before 1.11, `initial_management` from 1.11.
    const management = compareVersions(version, "1.11") >= 0 ? "initial_management" : "master";
    // The agent token is this node's own, derived from the cluster's key: never the key itself;
    // the default token is the cluster's DNS token, the same on every node.
    expect(hcl.blocks.acl?.blocks.tokens?.attrs).toEqual({ [management]: MANAGEMENT, agent: consulAgentToken(SECRETS, "demo-2"), default: consulDnsToken(SECRETS) });
    expect(JSON.stringify(tree)).not.toContain(AGENT);
  });

  it("names the management token by the release: master up to 1.10, initial_management from 1.11", async () => {
    for (const [version, key] of [["1.10.12", "master"], ["1.11.0", "initial_management"]] as const) {
      const tree = await nodeMetadata(nodeContext(plan, 0, serverRole, 3, version));
      const hcl = await parseHcl(nodeHcl(tree).content, `10-node.hcl (${version})`);
      expect(Object.keys(hcl.blocks.acl!.blocks.tokens!.attrs).sort(), version).toEqual(["agent", "default", key].sort());
    }
  });

  it("leaves bootstrap_expect out for a client, which still joins the servers", async () => {
    const client = withConsul(serverRole, { server: false });
    const tree = await nodeMetadata(nodeContext(plan, 3, client, 3));
    const file = nodeHcl(tree);
    expect(file.content).not.toContain("bootstrap_expect");
    const hcl = await parseHcl(file.content, "10-node.hcl (client)");
    expect(hcl.attrs.bind_addr).toBe("10.88.0.14");
    expect(hcl.attrs.retry_join).toEqual(serverAddresses);
    expect(hcl.attrs.bootstrap_expect).toBeUndefined();
    // A client agent holds its own token, never the management token.
    expect(hcl.blocks.acl?.blocks.tokens?.attrs).toEqual({ agent: consulAgentToken(SECRETS, "demo-4"), default: consulDnsToken(SECRETS) });
    expect(consulAgentToken(SECRETS, "demo-4")).not.toBe(consulAgentToken(SECRETS, "demo-1"));
    expect(file.content).not.toContain(MANAGEMENT);
  });

  it("gives the template context the node, cluster, secrets, service and options", () => {
    const ctx = templateContext(nodeContext(plan, 0, serverRole, 3), "consul");
    expect(ctx).toEqual({
      node: { name: "demo-1", id: nodeId(SECRETS, "demo-1"), consulAgentToken: consulAgentToken(SECRETS, "demo-1"), address: "10.88.0.11", index: 1, role: "consul-server" },
      cluster: { name: "demo", datacenter: "dc1", serverAddresses, serverCount: 3, servers: { consul: serverAddresses }, autoJoin: "" },
      // Of the bundle, only what a Consul server's templates may render: no CA or host key,
      // no other node's certificate, no Nomad or Vault secret.
      secrets: { gossipKey: SECRETS.gossipKey, consul: { agentToken: consulAgentToken(SECRETS, "demo-1"), dnsToken: consulDnsToken(SECRETS), managementToken: SECRETS.consul.managementToken } },
      service: { name: "consul", version: "1.8.7" },
      options: { server: true, ui: true, log_level: "INFO", raft_multiplier: 1, server_stabilization_seconds: 10 },
    });
  });

  it("builds the metadata tree: hostname, resin/network and the consul directory", async () => {
    const node = plan.nodes[0]!;
    const tree = await nodeMetadata(nodeContext(plan, 0, serverRole, 3));
    expect(Object.keys(tree).sort()).toEqual(["consul", "hostname", "resin"]);
    expect(tree.hostname).toEqual({ content: "demo-1\n", perm: "0644" });
    const resin = tree.resin as { entries: Record<string, MetadataNode> };
    expect(Object.keys(resin.entries)).toEqual(["network", "status-token"]);
    // The status endpoint's token: 0600, 64 hex digits, this node's own.
    expect(resin.entries["status-token"]).toEqual({ content: `${statusToken(SECRETS, "demo-1")}\n`, perm: "0600" });
    expect(statusToken(SECRETS, "demo-1")).toMatch(/^[0-9a-f]{64}$/);
    expect(statusToken(SECRETS, "demo-1")).not.toBe(statusToken(SECRETS, "demo-2"));
    const network = resin.entries.network as { content: string; perm?: string };
    expect(network.content).toBe(`${node.clusterMac} 10.88.0.11/24 cluster\n${node.hostMac} 10.0.2.15/24 host\n`);
    for (const line of network.content.trimEnd().split("\n")) {
      expect(line).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5} \d{1,3}(\.\d{1,3}){3}\/\d{1,2} (cluster|host)$/);
    }
    // The node config, and the node's TLS files (the CA certificate and its own pair, 0600).
    const consul = (tree.consul as { entries: Record<string, MetadataNode> }).entries;
    expect(Object.keys(consul).sort()).toEqual(["10-node.hcl", "ca.pem", "cert.pem", "key.pem"]);
    expect(consul["ca.pem"]).toEqual({ content: SECRETS.cas.consul.cert, perm: "0600" });
    expect(consul["cert.pem"]).toEqual({ content: SECRETS.nodes["demo-1"]!.consul!.cert, perm: "0600" });
    expect(consul["key.pem"]).toEqual({ content: SECRETS.nodes["demo-1"]!.consul!.key, perm: "0600" });
  });
});

describe("serialiseMetadata", () => {
  function sortedEverywhere(value: unknown): boolean {
    if (!value || typeof value !== "object" || Array.isArray(value)) return true;
    const keys = Object.keys(value);
    return keys.join("\0") === [...keys].sort().join("\0") && keys.every((k) => sortedEverywhere((value as Record<string, unknown>)[k]));
  }

  it("gives the same bytes whatever order the tree was built in, with keys sorted", () => {
    const a: MetadataTree = {};
    addFile(a, "hostname", "n\n");
    addFile(a, "resin/network", "net\n");
    addFile(a, "consul/10-node.hcl", "x\n", "0600");
    addFile(a, "consul/00-extra.hcl", "y\n");
    const b: MetadataTree = {};
    addFile(b, "consul/00-extra.hcl", "y\n");
    addFile(b, "consul/10-node.hcl", "x\n", "0600");
    addFile(b, "resin/network", "net\n");
    addFile(b, "hostname", "n\n");
    const bytes = serialiseMetadata(a);
    expect(bytes.equals(serialiseMetadata(b))).toBe(true);
    expect(bytes.toString().endsWith("\n")).toBe(true);
    const parsed = JSON.parse(bytes.toString());
    expect(sortedEverywhere(parsed)).toBe(true);
    expect(Object.keys(parsed)).toEqual(["consul", "hostname", "resin"]);
    expect(Object.keys(parsed.consul.entries)).toEqual(["00-extra.hcl", "10-node.hcl"]);
    expect(parsed.consul.entries["10-node.hcl"]).toEqual({ content: "x\n", perm: "0600" });
  });

  it("is deterministic for a real node's metadata", async () => {
    const plan = planCluster("demo", ["consul-server", "consul-server", "consul-server"]);
    const one = serialiseMetadata(await nodeMetadata(nodeContext(plan, 0, serverRole, 3)));
    const two = serialiseMetadata(await nodeMetadata(nodeContext(plan, 0, serverRole, 3)));
    expect(one.equals(two)).toBe(true);
    expect(sortedEverywhere(JSON.parse(one.toString()))).toBe(true);
  });
});

describe("addFile", () => {
  it("refuses a path set twice and a file used as a directory", () => {
    const tree: MetadataTree = {};
    addFile(tree, "consul/10-node.hcl", "x");
    expect(() => addFile(tree, "consul/10-node.hcl", "y")).toThrow(/set twice/);
    addFile(tree, "hostname", "n");
    expect(() => addFile(tree, "hostname/x", "y")).toThrow(/is a file/);
  });
});
