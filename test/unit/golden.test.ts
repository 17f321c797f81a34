import { describe, it, expect, beforeAll } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseHcl2 } from "@cdktf/hcl2json";
import { listRoles, loadRole, type Role, type Service } from "../../cli/spec/load.js";
import { compareVersions, renderTemplate } from "../../cli/spec/template.js";
import { CHANNELS, type Channel } from "../../cli/spec/schema.js";
import { imageTemplateContext, serviceVersion } from "../../cli/image/build.js";
import { lockKey, readLock, type LockedDeb } from "../../cli/artifacts/lock.js";
import { DHCP_BIND_ADDRESS, nodeMetadata, serversByService, type MetadataNode, type MetadataTree, type ServiceVersions } from "../../cli/bootstrap/metadata.js";
import { defaultJoin, planCluster, type ClusterPlan, type NodePlan } from "../../cli/bootstrap/plan.js";
import { generateSecrets, type Secrets } from "../../cli/bootstrap/secrets.js";
import { consulAgentToken, consulDnsToken, serviceRolesOf } from "../../cli/bootstrap/node-secrets.js";
import { VAULT_TLS_SERVER_NAME } from "../../cli/bootstrap/pki.js";

// Golden files for every template of every role, at every release Resin supports.
//
// Each role is loaded with the real loadRole (machines/*.yml + services/*/service.yml),
// its image templates are rendered with the context cli/image/build.ts gives them, and
// its node templates through nodeMetadata for a three-node cluster of that role, as
// `resin up` does. The output is compared byte for byte with
//
//   test/golden/<role>/<service>-<version>/image/<dst>            (image templates)
//   test/golden/<role>/<service>-<version>/node/<node>/<dst>      (node templates)
//
// so any change to a template, a role's options or the contexts shows up here. When the
// change is meant, regenerate and review the diff:
//
//   UPDATE_GOLDEN=1 npx vitest run --project unit test/unit/golden.test.ts
//
// Every rendered HCL file is also parsed with HashiCorp's HCL parser (@cdktf/hcl2json,
// HCL2 compiled to WASM; the agents themselves read these files with HCL1, so the
// templates stay within the syntax both accept) and checked for the keys each agent
// accepts (Consul and Nomad refuse unknown keys) and for the facts the cluster needs.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const GOLDEN = join(REPO, "test", "golden");
const UPDATE = process.env.UPDATE_GOLDEN === "1";
/** Suite of the lock entries for packages that name none (build.ts asks the host; Resin builds on bookworm). */
const HOST_SUITE = "bookworm";
const CLUSTER = "resin";
const NODES = 3;
/** What the templates render from the secrets is fixed, so the golden files stay the same. */
const FIXED = {
  gossipKey: Buffer.alloc(32, 0x11).toString("base64"),
  nomadGossipKey: Buffer.alloc(32, 0x22).toString("base64"),
  consul: {
    managementToken: "11111111-1111-4111-8111-111111111111",
    agentToken: "22222222-2222-4222-8222-222222222222",
    nomadToken: "33333333-3333-4333-8333-333333333333",
  },
  nomad: { bootstrapSecret: "44444444-4444-4444-8444-444444444444" },
};

/** A real bundle for the plan (certificates for every node, as nodeMetadata needs), with FIXED's values. */
async function secretsFor(plan: ClusterPlan, roleOf: (n: NodePlan) => Role): Promise<Secrets> {
  return { ...(await generateSecrets(plan, (n) => serviceRolesOf(roleOf(n)))), ...FIXED };
}

interface Case {
  role: string;
  channel: Channel;
  /** The release of each templated service this case renders: the golden directories' names. */
  versions: Record<string, string>;
  /** A cluster whose addresses come from DHCP (cloud auto-join); its files go under <role>+dhcp/. */
  dhcp?: boolean;
}

/** Every role on every channel it supports. A role or channel missing here fails the coverage test below. */
const CASES: Case[] = [
  { role: "consul-server", channel: "debian", versions: { consul: "1.8.7" } },
  { role: "consul-server", channel: "official", versions: { consul: "1.22.6" } },
  { role: "nomad-server", channel: "official", versions: { consul: "1.22.6", nomad: "1.11.0" } },
  { role: "vault-server", channel: "official", versions: { consul: "1.22.6", vault: "1.21.0" } },
  { role: "nomad-client", channel: "official", versions: { consul: "1.22.6", nomad: "1.11.0" } },
  { role: "nomad-client-docker", channel: "official", versions: { consul: "1.22.6", nomad: "1.11.0" } },
  { role: "control-plane", channel: "official", versions: { consul: "1.22.6", nomad: "1.11.0", vault: "1.21.0" } },
  { role: "consul-server", channel: "debian", versions: { consul: "1.8.7" }, dhcp: true },
  { role: "control-plane", channel: "official", versions: { consul: "1.22.6", nomad: "1.11.0", vault: "1.21.0" }, dhcp: true },
];

const caseName = (c: Case) => `${c.role}${c.dhcp ? " with DHCP addresses" : ""} (${c.channel}: ${Object.entries(c.versions).map(([s, v]) => `${s} ${v}`).join(", ")})`;

// ---- rendering, the way Resin renders ------------------------------------------------

interface Rendered {
  /** Path under test/golden → content. */
  files: Map<string, string>;
  role: Role;
  plan: ClusterPlan;
  servers: Record<string, NodePlan[]>;
  /** Per service: the image files and, per node, the node files it rendered (path under test/golden). */
  image: Map<string, { dst: string; key: string }[]>;
  node: Map<string, { node: NodePlan; dst: string; key: string; perm?: string; mode: string }[]>;
}

/** The version each service reports, as serviceVersion does from the locked packages (or the release). */
async function versionsOf(role: Role): Promise<Record<string, string>> {
  const lock = await readLock(join(REPO, "resin.lock.json"));
  const debs = new Map<string, LockedDeb>();
  for (const s of role.services) {
    for (const p of s.packages) {
      const entry = lock.debian[lockKey(p.suite ?? HOST_SUITE, p.name)];
      if (entry) debs.set(p.name, entry);
    }
  }
  // A package not yet in resin.lock.json (resolved on the next online build) has no
  // version here; no template reads the version of such a service.
  const known = (s: Service) => s.release !== undefined || (s.packages[0] !== undefined && debs.has(s.packages[0].name));
  return Object.fromEntries(role.services.map((s) => [s.name, known(s) ? (serviceVersion(s, debs) ?? "") : ""]));
}

function fileAt(tree: MetadataTree, path: string): { content: string; perm?: string } | undefined {
  const parts = path.split("/");
  let entries: Record<string, MetadataNode> = tree;
  for (const dir of parts.slice(0, -1)) {
    const next = entries[dir];
    if (!next || !("entries" in next)) return undefined;
    entries = next.entries;
  }
  const file = entries[parts[parts.length - 1]!];
  return file && "content" in file ? file : undefined;
}

async function render(c: Case): Promise<Rendered> {
  const role = await loadRole(REPO, c.role, c.channel);
  const name = role.spec.role;
  const serviceVersions = await versionsOf(role);
  const files = new Map<string, string>();
  const image = new Map<string, { dst: string; key: string }[]>();
  const node = new Map<string, { node: NodePlan; dst: string; key: string; perm?: string; mode: string }[]>();
  const dirOf = (service: string) => `${c.role}${c.dhcp ? "+dhcp" : ""}/${service}-${serviceVersions[service]}`;

  // Image time: the context cli/image/build.ts gives templates.
  for (const service of role.services) {
    for (const t of service.templates.image) {
      const context = imageTemplateContext(role, service.name, serviceVersions);
      const text = renderTemplate(await readFile(join(service.dir, t.src), "utf8"), context, `${service.name}/${t.src}`);
      const key = `${dirOf(service.name)}/image/${t.dst}`;
      files.set(key, text);
      (image.get(service.name) ?? image.set(service.name, []).get(service.name)!).push({ dst: t.dst, key });
    }
  }

  // Boot time: a three-node cluster of this role, rendered by nodeMetadata as `resin up` does.
  const network = c.dhcp ? { mode: "dhcp" as const, join: defaultJoin(CLUSTER) } : undefined;
  const plan = planCluster(CLUSTER, Array.from({ length: NODES }, () => name), undefined, network);
  const servers = serversByService(plan.nodes, () => role);
  const secrets = await secretsFor(plan, () => role);
  const nodeVersions: ServiceVersions = Object.fromEntries(role.services.map((s) => [s.name, { version: serviceVersions[s.name] ?? "" }]));
  for (const n of plan.nodes) {
    const tree = await nodeMetadata({ plan, node: n, secrets, role, versions: nodeVersions, servers });
    for (const service of role.services) {
      for (const t of service.templates.node) {
        const file = fileAt(tree, t.dst);
        if (!file) throw new Error(`${name}: nodeMetadata has no ${t.dst} for ${n.name}`);
        const key = `${dirOf(service.name)}/node/${n.name}/${t.dst}`;
        files.set(key, file.content);
        (node.get(service.name) ?? node.set(service.name, []).get(service.name)!).push({ node: n, dst: t.dst, key, perm: file.perm, mode: t.mode });
      }
    }
  }
  return { files, role, plan, servers, image, node };
}

function goldenFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(GOLDEN, join(e.parentPath, e.name)))
    .sort();
}

function writeGolden(key: string, text: string): void {
  const path = join(GOLDEN, key);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

// ---- the HCL check -------------------------------------------------------------------
//
// hcl2json gives blocks as arrays of bodies ({server: [{…}]}), labelled blocks as
// {listener: {tcp: [{…}]}}, and attributes as their values.

type Body = Record<string, unknown>;

async function parseHcl(text: string, name: string): Promise<Body> {
  return (await parseHcl2(name, text)) as Body;
}

/** The keys an agent accepts where Resin writes them. An attribute is `true`; a block is its own Keys. */
interface Keys {
  [key: string]: true | Keys | { labels: Record<string, Keys> } | { repeated: Keys };
}

function checkKeys(body: Body, keys: Keys, where: string): void {
  for (const [key, value] of Object.entries(body)) {
    const rule = keys[key];
    if (rule === undefined) throw new Error(`${where}: '${key}' is not a key this agent accepts here (allowed: ${Object.keys(keys).join(", ")})`);
    if (rule === true) {
      // An attribute: never a block.
      const isBlock = Array.isArray(value) && value.length > 0 && value.every((v) => v && typeof v === "object" && !Array.isArray(v));
      expect(isBlock, `${where}: '${key}' must be an attribute (key = value), not a block`).toBe(false);
    } else if ("labels" in rule && typeof rule.labels === "object") {
      const labelled = value as Record<string, Body[]>;
      for (const [label, bodies] of Object.entries(labelled)) {
        const inner = (rule.labels as Record<string, Keys>)[label];
        expect(inner, `${where}: ${key} "${label}" is not used by Resin`).toBeDefined();
        for (const b of bodies) checkKeys(b, inner!, `${where}: ${key} "${label}"`);
      }
    } else if ("repeated" in rule && typeof rule.repeated === "object") {
      expect(Array.isArray(value), `${where}: '${key}' must be a block`).toBe(true);
      for (const b of value as Body[]) checkKeys(b, rule.repeated as Keys, `${where}: ${key}`);
    } else {
      expect(Array.isArray(value), `${where}: '${key}' must be a block`).toBe(true);
      // Consul and Nomad merge blocks across files, but one file holds each block once.
      expect((value as Body[]).length, `${where}: block '${key}' appears more than once`).toBe(1);
      checkKeys((value as Body[])[0]!, rule as Keys, `${where}: ${key}`);
    }
  }
}

// Only keys checked against each agent's configuration reference (and, for Nomad, its
// config struct tags) belong here; adding a key to a template means adding it here.
// Consul's depend on the release: it refuses keys it does not know ("invalid config key"),
// so 1.8.7 must not see `tls {}`, `initial_management` or `grpc_tls`, and from 1.12 the TLS
// settings belong in `tls {}` (verify_server_hostname only in tls.internal_rpc).
function consulKeys(version: string): Keys {
  const since = (v: string) => compareVersions(version, v) >= 0;
  const keys: Keys = {
    data_dir: true,
    disable_update_check: true,
    client_addr: true,
    server: true,
    log_level: true,
    ...(since("1.9") ? { ui_config: { enabled: true } } : { ui: true }),
    node_name: true,
    node_id: true,
    datacenter: true,
    primary_datacenter: true,
    bind_addr: true,
    advertise_addr: true,
    encrypt: true,
    retry_join: true,
    bootstrap_expect: true,
    // Both since Consul 0.8 (raft_multiplier 0.7).
    performance: { raft_multiplier: true },
    autopilot: { server_stabilization_time: true },
    ports: { http: true, https: true, grpc: true, ...(since("1.14") ? { grpc_tls: true } : {}) },
    acl: {
      enabled: true,
      default_policy: true,
      enable_token_persistence: true,
      // agent and default since 1.4 (the ACL system of today); master became initial_management in 1.11.
      tokens: { agent: true, default: true, ...(since("1.11") ? { initial_management: true } : { master: true }) },
    },
  };
  if (since("1.12")) {
    keys.tls = {
      defaults: { ca_file: true, cert_file: true, key_file: true, verify_incoming: true, verify_outgoing: true },
      internal_rpc: { verify_server_hostname: true },
    };
  } else {
    Object.assign(keys, { ca_file: true, cert_file: true, key_file: true, verify_incoming: true, verify_outgoing: true, verify_server_hostname: true });
  }
  return keys;
}
const NOMAD_JOIN: Keys = { retry_join: true };
const NOMAD_KEYS: Keys = {
  name: true,
  datacenter: true,
  data_dir: true,
  bind_addr: true,
  log_level: true,
  disable_update_check: true,
  advertise: { http: true, rpc: true, serf: true },
  server: { enabled: true, bootstrap_expect: true, encrypt: true, server_join: NOMAD_JOIN },
  client: { enabled: true, cni_path: true, options: true, server_join: NOMAD_JOIN },
  tls: { http: true, rpc: true, ca_file: true, cert_file: true, key_file: true, verify_server_hostname: true, verify_https_client: true },
  acl: { enabled: true },
  consul: { address: true, ssl: true, ca_file: true, cert_file: true, key_file: true, token: true },
};
const VAULT_KEYS: Keys = {
  ui: true,
  disable_mlock: true,
  log_level: true,
  cluster_name: true,
  api_addr: true,
  cluster_addr: true,
  listener: { labels: { tcp: { address: true, cluster_address: true, tls_cert_file: true, tls_key_file: true, tls_client_ca_file: true, tls_require_and_verify_client_cert: true } } },
  storage: {
    labels: { raft: { path: true, node_id: true, retry_join: { repeated: { leader_api_addr: true, auto_join: true, auto_join_scheme: true, leader_ca_cert_file: true, leader_client_cert_file: true, leader_client_key_file: true, leader_tls_servername: true } } } },
  },
};
const keysFor = (service: string, version: string): Keys => (service === "consul" ? consulKeys(version) : service === "nomad" ? NOMAD_KEYS : VAULT_KEYS);

const block = (body: Body, key: string): Body | undefined => (body[key] as Body[] | undefined)?.[0];
const labelled = (body: Body, key: string, label: string): Body[] => ((body[key] as Record<string, Body[]> | undefined)?.[label] ?? []);

/** POSIX shell syntax (the image runs these with busybox sh). */
function checkShell(text: string, name: string): void {
  const result = spawnSync("sh", ["-n"], { input: text, encoding: "utf8" });
  expect(result.status, `${name}: sh -n: ${result.stderr}`).toBe(0);
  expect(text.startsWith("#!/bin/sh\n"), `${name}: starts with #!/bin/sh`).toBe(true);
}

// ---- the tests -----------------------------------------------------------------------

// A DHCP case's image files are the same as its static case's (image templates never
// see the network mode): they are checked against those golden files, not kept twice.
const sharedImageFile = (key: string) => /^[^/]+\+dhcp\/[^/]+\/image\//.test(key);
const staticTwin = (key: string) => key.replace(/^([^/]+)\+dhcp\//, "$1/");

const rendered = new Map<Case, Rendered>();
beforeAll(async () => {
  for (const c of CASES) rendered.set(c, await render(c));
});

describe("golden coverage", () => {
  it("covers every role in machines/ on every channel it can be built on", async () => {
    const roles = await listRoles(REPO);
    expect([...new Set(CASES.map((c) => c.role))].sort()).toEqual(roles);
    for (const role of roles) {
      for (const channel of CHANNELS) {
        const covered = CASES.some((c) => c.role === role && c.channel === channel);
        if (covered) continue;
        await expect(loadRole(REPO, role, channel), `${role} loads on ${channel}: add a golden case for it`).rejects.toThrow(`has no '${channel}' channel`);
      }
    }
  });

  it("renders the release each case is named after", () => {
    for (const c of CASES) {
      const r = rendered.get(c)!;
      const templated = r.role.services.filter((s) => s.templates.image.length + s.templates.node.length > 0).map((s) => s.name);
      expect(templated.sort(), caseName(c)).toEqual(Object.keys(c.versions).sort());
      for (const [service, version] of Object.entries(c.versions)) {
        const dirs = [...r.files.keys()].map((k) => k.split("/")[1]).filter((d) => d!.startsWith(`${service}-`));
        expect(new Set(dirs), caseName(c)).toEqual(new Set([`${service}-${version}`]));
      }
    }
  });

  it("test/golden holds exactly the rendered files", () => {
    // Two channels that take a service from the same place (debian and source for
    // Consul 1.8.7) render the same golden path; they must render the same bytes there.
    const byPath = new Map<string, string>();
    for (const c of CASES) {
      for (const [key, text] of rendered.get(c)!.files) {
        if (sharedImageFile(key)) continue;
        expect(byPath.get(key) ?? text, `${caseName(c)} renders ${key} unlike another case`).toBe(text);
        byPath.set(key, text);
      }
    }
    const expected = [...byPath.keys()].sort();
    if (UPDATE) {
      for (const stale of goldenFiles(GOLDEN).filter((f) => !expected.includes(f))) rmSync(join(GOLDEN, stale));
      for (const c of CASES) for (const [key, text] of rendered.get(c)!.files) if (!sharedImageFile(key)) writeGolden(key, text);
    }
    expect(goldenFiles(GOLDEN), "stale or missing golden files: run with UPDATE_GOLDEN=1 and review the diff").toEqual(expected);
  });
});

describe.each(CASES.map((c) => ({ ...c, addresses: c.dhcp ? "DHCP" : "static", original: c })))("$role on the $channel channel, $addresses addresses", (c) => {
  const r = () => rendered.get(c.original)!;
  // On a DHCP cluster an agent binds where go-sockaddr finds its private address and
  // finds its servers by cloud auto-join; on a static one, by the plan's addresses.
  const bindAddress = (n: NodePlan) => (c.dhcp ? DHCP_BIND_ADDRESS : n.address);
  const joinTargets = (nodes: NodePlan[]) => (c.dhcp ? [defaultJoin(CLUSTER)] : nodes.map((n) => n.address));

  it("matches its golden files", () => {
    for (const [key, text] of r().files) {
      if (sharedImageFile(key)) {
        expect(text, `${key} differs from the static case's ${staticTwin(key)}`).toBe(readFileSync(join(GOLDEN, staticTwin(key)), "utf8"));
        continue;
      }
      const path = join(GOLDEN, key);
      if (UPDATE) {
        writeGolden(key, text);
        continue;
      }
      expect(existsSync(path), `test/golden/${key} is missing: run with UPDATE_GOLDEN=1 and review it`).toBe(true);
      expect(text, `test/golden/${key} differs from the rendered template (UPDATE_GOLDEN=1 if the change is meant)`).toBe(readFileSync(path, "utf8"));
    }
  });

  it("renders HCL every agent accepts, and scripts sh accepts", async () => {
    for (const [key, text] of r().files) {
      const [service, version] = key.split("/")[1]!.split(/-(?=[0-9])/) as [string, string];
      if (key.endsWith(".hcl")) {
        const body = await parseHcl(text, key);
        checkKeys(body, keysFor(service, version), key);
      } else if (/\/etc\/service\/[^/]+\/run$/.test(key)) {
        checkShell(text, key);
      } else {
        throw new Error(`${key}: no check for this kind of file; add one`);
      }
    }
    // The service run scripts that are plain files, not templates.
    for (const service of r().role.services) {
      for (const f of service.files.filter((f) => /^etc\/service\/[^/]+\/run$/.test(f.dst))) {
        checkShell(readFileSync(join(service.dir, f.src), "utf8"), `${service.name}/${f.src}`);
      }
    }
  });

  it("writes node configs readable by root only", () => {
    for (const files of r().node.values()) {
      for (const f of files) {
        expect(f.perm, f.key).toBe(f.mode);
        expect(f.mode, `${f.key} holds secrets or addresses only root should read`).toBe("0600");
      }
    }
  });

  const consul = c.versions.consul;
  if (consul) {
    it(`configures Consul ${consul}`, async () => {
      const { role, image, node, servers } = r();
      const options = role.options.consul!;
      const [roleFile] = image.get("consul")!;
      const hcl = await parseHcl(r().files.get(roleFile!.key)!, roleFile!.key);
      expect(hcl.disable_update_check).toBe(true);
      expect(hcl.data_dir).toBe("/var/lib/consul");
      expect(hcl.server).toBe(options.server);
      if (options.ui && compareVersions(consul, "1.9") < 0) {
        // 1.8 has no ui_config and rejects it.
        expect(hcl.ui).toBe(true);
        expect(hcl.ui_config).toBeUndefined();
      } else if (options.ui) {
        expect(block(hcl, "ui_config")).toEqual({ enabled: true });
        expect(hcl.ui).toBeUndefined();
      } else {
        expect(hcl.ui).toBeUndefined();
        expect(hcl.ui_config).toBeUndefined();
      }

      // Mutual TLS with the node's files, verified both ways and by server name.
      const files = { ca_file: "/run/consul/ca.pem", cert_file: "/run/consul/cert.pem", key_file: "/run/consul/key.pem" };
      if (compareVersions(consul, "1.12") >= 0) {
        expect(block(hcl, "tls")).toEqual({
          defaults: [{ ...files, verify_incoming: true, verify_outgoing: true }],
          internal_rpc: [{ verify_server_hostname: true }],
        });
        expect(hcl.verify_incoming).toBeUndefined();
      } else {
        expect(hcl).toMatchObject({ ...files, verify_incoming: true, verify_outgoing: true, verify_server_hostname: true });
        expect(hcl.tls).toBeUndefined();
      }
      // The API on HTTPS 8501 only (service.yml forwards the port named https), and DNS on 8600 (Consul's default; forwarded too).
      expect(block(hcl, "ports")).toEqual(
        compareVersions(consul, "1.14") >= 0 ? { http: -1, https: 8501, grpc: -1, grpc_tls: 8503 } : { http: -1, https: 8501, grpc: 8502 },
      );
      expect(role.services.find((s) => s.name === "consul")!.ports).toEqual({ https: 8501, dns: 8600 });
      expect(block(hcl, "acl")).toEqual({ enabled: true, default_policy: "deny", enable_token_persistence: true });

      const consulServers = joinTargets(servers.consul ?? []);
      const management = compareVersions(consul, "1.11") >= 0 ? "initial_management" : "master";
      for (const f of node.get("consul")!) {
        const n = await parseHcl(r().files.get(f.key)!, f.key);
        expect(n.node_name).toBe(f.node.name);
        expect(n.bind_addr).toBe(bindAddress(f.node));
        expect(n.advertise_addr).toBe(bindAddress(f.node));
        expect(n.encrypt).toBe(FIXED.gossipKey);
        expect(n.retry_join).toEqual(consulServers);
        expect(n.primary_datacenter).toBe("dc1");
        expect(n.bootstrap_expect).toBe(options.server ? NODES : undefined);
        // Servers pre-seed the management token; every agent has its own token, and only that.
        expect(block(n, "acl")).toEqual({
          tokens: [
            options.server
              ? { [management]: FIXED.consul.managementToken, agent: consulAgentToken(FIXED, f.node.name), default: consulDnsToken(FIXED) }
              : { agent: consulAgentToken(FIXED, f.node.name), default: consulDnsToken(FIXED) },
          ],
        });
      }
    });
  }

  const nomad = c.versions.nomad;
  if (nomad) {
    it(`configures Nomad ${nomad}`, async () => {
      const { role, image, node, servers } = r();
      const options = role.options.nomad!;
      const roleFile = image.get("nomad")!.find((f) => f.dst.endsWith(".hcl"))!;
      const hcl = await parseHcl(r().files.get(roleFile.key)!, roleFile.key);
      expect(hcl.disable_update_check).toBe(true);
      expect(hcl.data_dir).toBe("/var/lib/nomad");
      expect(hcl.bind_addr).toBe("0.0.0.0");
      const files = { ca_file: "/run/nomad/ca.pem", cert_file: "/run/nomad/cert.pem", key_file: "/run/nomad/key.pem" };
      expect(block(hcl, "tls")).toEqual({ http: true, rpc: true, ...files, verify_server_hostname: true, verify_https_client: false });
      expect(block(hcl, "acl")).toEqual({ enabled: true });
      // The local Consul agent over mutual TLS, checked against Consul's CA, with the
      // client certificate Consul's CA issued this node's Nomad (not its Nomad certificate).
      expect(block(hcl, "consul")).toEqual({ address: "127.0.0.1:8501", ssl: true, ca_file: "/run/nomad/consul-ca.pem", cert_file: "/run/nomad/consul-cert.pem", key_file: "/run/nomad/consul-key.pem" });
      expect(role.services.find((s) => s.name === "nomad")!.ports).toEqual({ https: 4646 });
      expect(block(hcl, "server")).toEqual(options.server ? { enabled: true } : undefined);
      if (options.client) {
        expect(block(hcl, "client")).toMatchObject({ enabled: true, cni_path: "/opt/cni/bin" });
        expect(role.services.map((s) => s.name), "a Nomad client role needs the cni service for bridge networking").toContain("cni");
      } else {
        expect(block(hcl, "client")).toBeUndefined();
      }

      const run = r().files.get(image.get("nomad")!.find((f) => f.dst === "etc/service/nomad/run")!.key)!;
      expect(run).toMatch(/^exec nomad agent -config=\/etc\/nomad\.d -config=\/run\/nomad$/m);
      expect(run.includes("mount -t cgroup2"), "the boot script mounts cgroup2, not the run script").toBe(false);
      expect(run.includes("cgroup.subtree_control"), "only a client enables the cgroup controllers").toBe(options.client === true);
      expect(run.includes("net.bridge.bridge-nf-call-iptables"), "only a client sets the bridge sysctls").toBe(options.client === true);

      const nomadServers = joinTargets(servers.nomad ?? []);
      for (const f of node.get("nomad")!) {
        const n = await parseHcl(r().files.get(f.key)!, f.key);
        expect(n.name).toBe(f.node.name);
        expect(n.datacenter).toBe("dc1");
        const a = bindAddress(f.node);
        expect(block(n, "advertise")).toEqual({ http: a, rpc: a, serf: a });
        if (options.server) {
          expect(block(n, "server")).toEqual({ bootstrap_expect: NODES, encrypt: FIXED.nomadGossipKey, server_join: [{ retry_join: nomadServers }] });
          expect(servers.nomad).toHaveLength(NODES);
        } else {
          expect(block(n, "server")).toBeUndefined();
        }
        if (options.client && !options.server && nomadServers.length > 0) {
          expect(block(n, "client")).toEqual({ server_join: [{ retry_join: nomadServers }] });
        } else {
          expect(block(n, "client")).toBeUndefined();
        }
        expect(block(n, "consul")).toEqual({ token: FIXED.consul.nomadToken });
      }
    });
  }

  const vault = c.versions.vault;
  if (vault) {
    it(`configures Vault ${vault}`, async () => {
      const { role, image, node, servers } = r();
      const options = role.options.vault!;
      expect(options.server, "every Vault node is a server").toBe(true);
      const [roleFile] = image.get("vault")!;
      const hcl = await parseHcl(r().files.get(roleFile!.key)!, roleFile!.key);
      expect(hcl.disable_mlock).toBe(true);
      expect(hcl.ui).toBe(options.ui);
      expect(labelled(hcl, "listener", "tcp")).toEqual([
        {
          address: "0.0.0.0:8200",
          cluster_address: "0.0.0.0:8201",
          tls_cert_file: "/run/vault/cert.pem",
          tls_key_file: "/run/vault/key.pem",
          tls_client_ca_file: "/run/vault/ca.pem",
          tls_require_and_verify_client_cert: true,
        },
      ]);
      expect(hcl.seal, "auto-unseal is documented, not enabled").toBeUndefined();
      expect(r().files.get(roleFile!.key)).toMatch(/^# seal "transit" \{$/m);
      expect(role.services.find((s) => s.name === "vault")!.ports).toEqual({ https: 8200 });
      const vaultServers = (servers.vault ?? []).map((n) => n.address);
      expect(vaultServers).toHaveLength(NODES);
      const runScript = readFileSync(join(REPO, "services", "vault", "run"), "utf8");
      for (const f of node.get("vault")!) {
        const n = await parseHcl(r().files.get(f.key)!, f.key);
        const raft = labelled(n, "storage", "raft");
        expect(raft).toHaveLength(1);
        expect(raft[0]!.path).toBe("/var/lib/vault/raft");
        expect(raft[0]!.node_id).toBe(f.node.name);
        const trust = {
          leader_ca_cert_file: "/run/vault/ca.pem",
          leader_client_cert_file: "/run/vault/cert.pem",
          leader_client_key_file: "/run/vault/key.pem",
          leader_tls_servername: VAULT_TLS_SERVER_NAME,
        };
        if (c.dhcp) {
          // The run script supplies the addresses the node got (Vault reads them from the environment).
          expect(n.api_addr).toBeUndefined();
          expect(n.cluster_addr).toBeUndefined();
          expect(runScript).toMatch(/VAULT_API_ADDR="https:\/\/\$address:8200" VAULT_CLUSTER_ADDR="https:\/\/\$address:8201"/);
          expect(raft[0]!.retry_join).toEqual([{ auto_join: defaultJoin(CLUSTER), auto_join_scheme: "https", ...trust }]);
        } else {
          expect(n.api_addr).toBe(`https://${f.node.address}:8200`);
          expect(n.cluster_addr).toBe(`https://${f.node.address}:8201`);
          expect(raft[0]!.retry_join).toEqual(vaultServers.map((a) => ({ leader_api_addr: `https://${a}:8200`, ...trust })));
        }
      }
    });
  }
});

// Roles meant to join a cluster whose servers are elsewhere: three control-plane nodes
// with a Nomad client and a Vault server beside them. Each template sees the servers of
// its own service. (Not golden: the files above already pin the templates' text.)
describe("a mixed cluster", () => {
  const roleNames = ["control-plane", "control-plane", "control-plane", "nomad-client", "vault-server"];
  let plan: ClusterPlan;
  let roles: Map<string, Role>;
  let servers: Record<string, NodePlan[]>;
  let secrets: Secrets;
  beforeAll(async () => {
    roles = new Map();
    for (const name of new Set(roleNames)) roles.set(name, await loadRole(REPO, name, "official"));
    plan = planCluster(CLUSTER, roleNames);
    servers = serversByService(plan.nodes, (n) => roles.get(n.role)!);
    secrets = await secretsFor(plan, (n) => roles.get(n.role)!);
  });

  async function nodeFiles(index: number): Promise<Record<string, Body>> {
    const node = plan.nodes[index]!;
    const role = roles.get(node.role)!;
    const versions = await versionsOf(role);
    const tree = await nodeMetadata({
      plan,
      node,
      secrets,
      role,
      versions: Object.fromEntries(Object.entries(versions).map(([s, v]) => [s, { version: v }])),
      servers,
    });
    const out: Record<string, Body> = {};
    for (const service of role.services) {
      for (const t of service.templates.node) {
        const body = await parseHcl(fileAt(tree, t.dst)!.content, `${node.name}/${t.dst}`);
        checkKeys(body, keysFor(service.name, versions[service.name] ?? ""), `${node.name}/${t.dst}`);
        out[service.name] = body;
      }
    }
    return out;
  }

  const controlPlane = ["10.88.0.11", "10.88.0.12", "10.88.0.13"];

  it("lists each service's own servers", () => {
    expect(servers.consul!.map((n) => n.address)).toEqual(controlPlane);
    expect(servers.nomad!.map((n) => n.address)).toEqual(controlPlane);
    expect(servers.vault!.map((n) => n.address)).toEqual([...controlPlane, "10.88.0.15"]);
  });

  it("points a Nomad client at the Nomad servers, and its Consul agent at the Consul servers", async () => {
    const files = await nodeFiles(3);
    expect(Object.keys(files).sort()).toEqual(["consul", "nomad"]);
    expect(files.consul!.retry_join).toEqual(controlPlane);
    expect(files.consul!.bootstrap_expect).toBeUndefined();
    expect(block(files.nomad!, "server")).toBeUndefined();
    expect(block(files.nomad!, "client")).toEqual({ server_join: [{ retry_join: controlPlane }] });
    // A Consul client agent: its own agent token, never the management token.
    expect(block(files.consul!, "acl")).toEqual({ tokens: [{ agent: consulAgentToken(FIXED, plan.nodes[3]!.name), default: consulDnsToken(FIXED) }] });
  });

  it("joins a separate Vault server to every Vault server's raft", async () => {
    const files = await nodeFiles(4);
    expect(Object.keys(files).sort()).toEqual(["consul", "vault"]);
    expect(files.consul!.retry_join).toEqual(controlPlane);
    const raft = labelled(files.vault!, "storage", "raft")[0]!;
    expect(raft.node_id).toBe("resin-5");
    expect(raft.retry_join).toEqual(
      [...controlPlane, "10.88.0.15"].map((a) => ({
        leader_api_addr: `https://${a}:8200`,
        leader_ca_cert_file: "/run/vault/ca.pem",
        leader_client_cert_file: "/run/vault/cert.pem",
        leader_client_key_file: "/run/vault/key.pem",
        leader_tls_servername: VAULT_TLS_SERVER_NAME,
      })),
    );
  });

  it("keeps bootstrap_expect at the number of servers of each service", async () => {
    const files = await nodeFiles(0);
    expect(files.consul!.bootstrap_expect).toBe(3);
    expect(block(files.nomad!, "server")!.bootstrap_expect).toBe(3);
    expect(block(files.nomad!, "client")).toBeUndefined();
  });
});
