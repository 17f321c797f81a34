import { describe, it, expect, afterEach, beforeAll } from "vitest";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  createSecrets,
  CONSUL_UI_POLICY,
  generateSecrets,
  LegacySecretsError,
  readOrReissueSecrets,
  readSecrets,
  recordVaultInit,
  SecretsSchema,
  withUiToken,
  type Secrets,
  type ServiceRoles,
} from "../../cli/bootstrap/secrets.js";
import { cliCertSpec, consulCertSpec, createCa, issueCertificate, nomadCertSpec, vaultCertSpec } from "../../cli/bootstrap/pki.js";
import { X509Certificate } from "node:crypto";
import { planCluster, type ClusterPlan, type NodePlan } from "../../cli/bootstrap/plan.js";
import { ResinError } from "../../cli/util/errors.js";

// A cluster's secrets are made once: createSecrets never replaces a file, readSecrets
// never makes new ones, whatever state the file is in, and recordVaultInit adds Vault's
// keys once, atomically, never replacing them.

const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-secrets-"));
  scratch.push(dir);
  return dir;
}

async function rejection(p: Promise<unknown>): Promise<ResinError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ResinError);
  return err as ResinError;
}

const PLAN: ClusterPlan = planCluster("demo", ["control-plane", "control-plane", "control-plane", "nomad-client", "vault-server"]);
const ROLES = (n: NodePlan): ServiceRoles =>
  n.role === "control-plane" ? { consul: "server", nomad: "server", vault: true } : n.role === "nomad-client" ? { consul: "client", nomad: "client" } : { consul: "client", vault: true };

let good: Secrets;
beforeAll(async () => {
  good = await generateSecrets(PLAN, ROLES);
});

/** Write `text` as the secrets file, read it, and check nothing was created or changed. */
async function readBroken(text: string): Promise<ResinError> {
  const dir = tempDir();
  const path = join(dir, "secrets.json");
  writeFileSync(path, text, { mode: 0o600 });
  const err = await rejection(readSecrets(path));
  expect(readFileSync(path, "utf8")).toBe(text);
  expect(readdirSync(dir)).toEqual(["secrets.json"]);
  expect(err.message).toContain(path);
  expect(err.hint).toMatch(/will not replace|cannot be upgraded/);
  return err;
}

const key = () => randomBytes(32).toString("base64");
const mutate = (f: (s: Record<string, any>) => void): string => {
  const copy = JSON.parse(JSON.stringify(good)) as Record<string, any>;
  f(copy);
  return JSON.stringify(copy);
};

describe("generateSecrets", () => {
  it("makes 32-byte base64 gossip keys and distinct UUID tokens, different each time", async () => {
    const other = await generateSecrets(PLAN, ROLES);
    for (const s of [good, other]) {
      expect(Buffer.from(s.gossipKey, "base64")).toHaveLength(32);
      expect(s.gossipKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(s.nomadGossipKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      const tokens = [s.consul.managementToken, s.consul.agentToken, s.consul.nomadToken, s.nomad.bootstrapSecret];
      for (const t of tokens) expect(t).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(new Set(tokens).size).toBe(4);
      expect(s.vault).toBeUndefined();
    }
    expect(other.gossipKey).not.toBe(good.gossipKey);
    for (const product of ["consul", "nomad", "vault"] as const) expect(other.cas[product].key).not.toBe(good.cas[product].key);
    expect(other.consul.managementToken).not.toBe(good.consul.managementToken);
  });

  it("gives each node the certificates of the services it runs, as what it runs them", () => {
    expect(Object.keys(good.nodes)).toEqual(PLAN.nodes.map((n) => n.name));
    expect(good.nodes["demo-1"]).toMatchObject({ consul: { role: "server" }, nomad: { role: "server" } });
    expect(good.nodes["demo-1"]!.vault).toBeDefined();
    expect(good.nodes["demo-4"]).toMatchObject({ consul: { role: "client" }, nomad: { role: "client" } });
    expect(good.nodes["demo-4"]!.vault).toBeUndefined();
    expect(good.nodes["demo-5"]).toMatchObject({ consul: { role: "client" } });
    expect(good.nodes["demo-5"]!.nomad).toBeUndefined();
    expect(good.nodes["demo-5"]!.vault).toBeDefined();
    expect(SecretsSchema.safeParse(good).success).toBe(true);
  });
});

describe("createSecrets", () => {
  it("writes the file with mode 0600 in a 0700 directory it creates", async () => {
    const path = join(tempDir(), "clusters", "demo", "secrets.json");
    const secrets = await createSecrets(path, PLAN, ROLES);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(path)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual(secrets);
    expect(await readSecrets(path)).toEqual(secrets);
    expect(Object.keys(secrets.nodes)).toHaveLength(5);
  });

  it("refuses to overwrite an existing file and leaves its bytes and mode unchanged", async () => {
    const path = join(tempDir(), "secrets.json");
    const original = Buffer.from(`{"gossipKey":"${key()}"}\n`);
    writeFileSync(path, original, { mode: 0o640 });
    const err = await rejection(createSecrets(path, PLAN, ROLES));
    expect(err.message).toContain(path);
    expect(err.message).toContain("already exist");
    expect(readFileSync(path).equals(original)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o640);
  });

  it("refuses a second call and keeps the first secrets", async () => {
    const path = join(tempDir(), "secrets.json");
    const first = await createSecrets(path, PLAN, ROLES);
    await rejection(createSecrets(path, PLAN, ROLES));
    expect(await readSecrets(path)).toEqual(first);
  });

  it("refuses to replace even an empty or broken file", async () => {
    const path = join(tempDir(), "secrets.json");
    writeFileSync(path, "");
    await rejection(createSecrets(path, PLAN, ROLES));
    expect(readFileSync(path, "utf8")).toBe("");
  });
});

describe("readSecrets", () => {
  it("reads a good file", async () => {
    const path = join(tempDir(), "secrets.json");
    writeFileSync(path, JSON.stringify(good));
    expect(await readSecrets(path)).toEqual(good);
  });

  it("is a ResinError for a missing file, and does not create one", async () => {
    const dir = tempDir();
    const path = join(dir, "clusters", "demo", "secrets.json");
    const err = await rejection(readSecrets(path));
    expect(err.message).toContain(path);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(dirname(path))).toBe(false);
  });

  it("is a ResinError for a directory in the file's place", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "secrets.json"));
    await rejection(readSecrets(join(dir, "secrets.json")));
  });

  it.each([
    ["truncated JSON", () => JSON.stringify(good).slice(0, 200)],
    ["an empty file", () => ""],
    ["text", () => "not json at all\n"],
  ])("is a ResinError for %s", async (_what, text) => {
    const err = await readBroken(text());
    expect(err.message).toContain("cannot be read");
  });

  it.each([
    ["a short gossip key", () => mutate((s) => (s.gossipKey = Buffer.alloc(16).toString("base64"))), "gossipKey"],
    ["a long gossip key", () => mutate((s) => (s.nomadGossipKey = Buffer.alloc(64).toString("base64"))), "nomadGossipKey"],
    ["a key that is a number", () => mutate((s) => (s.gossipKey = 42)), "gossipKey"],
    ["no CAs", () => mutate((s) => delete s.cas), "cas"],
    ["no Vault CA", () => mutate((s) => delete s.cas.vault), "cas.vault"],
    ["a CA key that is not PEM", () => mutate((s) => (s.cas.consul.key = "MIGHAgEAMBMGByqGSM49")), "cas.consul.key"],
    ["a certificate cut short", () => mutate((s) => (s.nodes["demo-1"].consul.cert = s.nodes["demo-1"].consul.cert.slice(0, 100))), "nodes.demo-1.consul.cert"],
    ["a certificate in place of a key", () => mutate((s) => (s.cli.nomad.key = s.cli.nomad.cert)), "cli.nomad.key"],
    ["an unknown role", () => mutate((s) => (s.nodes["demo-4"].nomad.role = "both")), "nodes.demo-4.nomad.role"],
    ["a token that is not a UUID", () => mutate((s) => (s.consul.agentToken = "root")), "consul.agentToken"],
    ["the same token twice", () => mutate((s) => (s.consul.agentToken = s.consul.managementToken)), "different"],
    ["no Nomad bootstrap secret", () => mutate((s) => (s.nomad = {})), "nomad.bootstrapSecret"],
    ["Vault keys fewer than shares", () => mutate((s) => (s.vault = { shares: 3, threshold: 2, unsealKeys: ["aa"], rootToken: "hvs.x", initializedAt: new Date().toISOString() })), "vault"],
    ["an extra field", () => mutate((s) => (s.token = "x")), "token"],
    ["an extra field in a node", () => mutate((s) => (s.nodes["demo-1"].ssh = { cert: "", key: "" })), "ssh"],
    ["an array", () => JSON.stringify([key()]), "whole file"],
    ["null", () => "null", "whole file"],
    ["{}", () => "{}", "gossipKey"],
  ])("is a ResinError for %s", async (_what, text, field) => {
    const err = await readBroken(text());
    expect(err.message).toContain("damaged");
    expect(err.message).toContain(field);
  });

  it.each([
    ["junk after the key", (k: string) => `${k}!!!`],
    ["junk before the key", (k: string) => `!!${k}`],
    ["a key split by a newline", (k: string) => `${k.slice(0, 20)}\n${k.slice(20)}`],
  ])("is a ResinError for %s (Consul would refuse the key)", async (_what, mangle) => {
    const err = await readBroken(mutate((s) => (s.gossipKey = mangle(key()))));
    expect(err.message).toContain("gossipKey");
  });

  it("says plainly that a bundle from before TLS and ACLs cannot be used", async () => {
    const err = await readBroken(JSON.stringify({ gossipKey: key(), nomadGossipKey: key() }));
    expect(err.message).toMatch(/older Resin: they have no CA, certificates or ACL tokens/);
    expect(err.hint).toMatch(/resin destroy/);
  });
});

// A bundle of an older Resin, made as it made them: one CA for every product, one host
// certificate, each node's certificates from that CA; Vault initialised.
async function legacyBundle(): Promise<Record<string, unknown>> {
  const ca = await createCa("demo");
  const nodes: Record<string, Record<string, unknown>> = {};
  for (const node of PLAN.nodes) {
    const roles = ROLES(node);
    const certs: Record<string, unknown> = {};
    if (roles.consul) certs.consul = { role: roles.consul, ...(await issueCertificate(ca, consulCertSpec(node, "dc1", roles.consul))) };
    if (roles.nomad) certs.nomad = { role: roles.nomad, ...(await issueCertificate(ca, nomadCertSpec(node, roles.nomad))) };
    if (roles.vault) certs.vault = await issueCertificate(ca, vaultCertSpec(node));
    nodes[node.name] = certs;
  }
  const { cas: _cas, cli: _cli, nodes: _nodes, ...rest } = good;
  return {
    ...rest,
    ca,
    cli: await issueCertificate(ca, cliCertSpec("demo")),
    nodes,
    vault: { shares: 1, threshold: 1, unsealKeys: ["aa"], rootToken: "hvs.legacy", initializedAt: new Date().toISOString() },
  };
}

describe("a bundle of an older Resin (one CA for Consul, Nomad and Vault)", () => {
  it("is refused by every reader with the fix, and nothing on disk changes", async () => {
    const dir = tempDir();
    const path = join(dir, "clusters", "demo", "secrets.json");
    mkdirSync(dirname(path), { recursive: true });
    const text = `${JSON.stringify(await legacyBundle(), null, 2)}\n`;
    writeFileSync(path, text, { mode: 0o600 });
    const err = await rejection(readSecrets(path));
    expect(err).toBeInstanceOf(LegacySecretsError);
    expect(err.message).toBe(`cluster secrets ${path} are from an older Resin: one CA for Consul, Nomad and Vault, so one product's certificates open the others`);
    expect(err.hint).toContain("resin down --name demo && resin up --name demo");
    expect(err.hint).toContain("tokens, gossip keys and Vault's keys are kept");
    // resin up while a node runs: the same refusal.
    const running = await rejection(readOrReissueSecrets(path, { reissue: false, cluster: "demo", plan: PLAN, serviceRoles: ROLES }));
    expect(running).toBeInstanceOf(LegacySecretsError);
    expect(readFileSync(path, "utf8")).toBe(text);
    expect(readdirSync(dirname(path))).toEqual(["secrets.json"]);
  });

  it("is re-issued by resin up with no node running: a CA per product, every certificate new, every token and key kept, the old file kept", async () => {
    const dir = tempDir();
    const path = join(dir, "secrets.json");
    const legacy = await legacyBundle();
    const text = JSON.stringify(legacy); // not how Resin writes it: the copy must keep the bytes
    writeFileSync(path, text, { mode: 0o600 });
    const said: string[] = [];
    const current = await readOrReissueSecrets(path, { reissue: true, cluster: "demo", plan: PLAN, serviceRoles: ROLES, log: (l) => said.push(l) });
    expect(SecretsSchema.safeParse(current).success).toBe(true);
    expect(await readSecrets(path)).toEqual(current);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // Kept: gossip keys, tokens, Nomad's secret, Vault's keys.
    for (const k of ["gossipKey", "nomadGossipKey", "consul", "nomad", "vault"] as const) expect(current[k]).toEqual(legacy[k]);
    // New: a CA per product, none the old one; every node's certificates from them.
    const oldCa = (legacy.ca as { cert: string }).cert;
    const cas = (["consul", "nomad", "vault"] as const).map((p) => current.cas[p].cert);
    expect(new Set([...cas, oldCa]).size).toBe(4);
    expect(Object.keys(current.nodes)).toEqual(PLAN.nodes.map((n) => n.name));
    for (const [name, certs] of Object.entries(current.nodes)) {
      for (const [service, pair] of Object.entries(certs)) {
        const product = service === "nomadConsul" ? "consul" : (service as "consul" | "nomad" | "vault");
        expect(new X509Certificate(pair.cert).checkIssued(new X509Certificate(current.cas[product].cert)), `${name} ${service}`).toBe(true);
        expect(new X509Certificate(pair.cert).checkIssued(new X509Certificate(oldCa)), `${name} ${service}`).toBe(false);
      }
    }
    // The older bundle is kept beside it, 0600, byte for byte.
    expect(readFileSync(`${path}.one-ca`, "utf8")).toBe(text);
    expect(statSync(`${path}.one-ca`).mode & 0o777).toBe(0o600);
    expect(said.join("\n")).toContain("a CA per product (Consul, Nomad, Vault) and every certificate issued again");
    // Once current, it is read as it is: nothing is issued again.
    expect(await readOrReissueSecrets(path, { reissue: true, cluster: "demo", plan: PLAN, serviceRoles: ROLES })).toEqual(current);
  });
});

describe("recordVaultInit", () => {
  const init = () => ({ shares: 5, threshold: 3, unsealKeys: Array.from({ length: 5 }, () => randomBytes(33).toString("hex")), rootToken: `hvs.${randomBytes(18).toString("base64url")}` });

  it("adds Vault's keys and root token, rewriting the file atomically with mode 0600", async () => {
    const dir = tempDir();
    const path = join(dir, "secrets.json");
    const created = await createSecrets(path, PLAN, ROLES);
    const result = init();
    const updated = await recordVaultInit(path, result);
    expect(updated).toEqual({ ...created, vault: { ...result, initializedAt: updated.vault!.initializedAt } });
    expect(Date.parse(updated.vault!.initializedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(await readSecrets(path)).toEqual(updated);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["secrets.json"]);
  });

  it("never replaces keys it recorded", async () => {
    const path = join(tempDir(), "secrets.json");
    await createSecrets(path, PLAN, ROLES);
    await recordVaultInit(path, init());
    const before = readFileSync(path);
    const err = await rejection(recordVaultInit(path, init()));
    expect(err.message).toContain("already hold Vault's unseal keys");
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("does not touch a damaged file", async () => {
    const dir = tempDir();
    const path = join(dir, "secrets.json");
    writeFileSync(path, "{", { mode: 0o600 });
    await rejection(recordVaultInit(path, init()));
    expect(readFileSync(path, "utf8")).toBe("{");
    expect(readdirSync(dir)).toEqual(["secrets.json"]);
  });

  it("refuses init results that do not fit together, leaving the file as it was", async () => {
    const path = join(tempDir(), "secrets.json");
    await createSecrets(path, PLAN, ROLES);
    const before = readFileSync(path);
    await expect(recordVaultInit(path, { ...init(), threshold: 6 })).rejects.toThrow(/Vault init results/);
    await expect(recordVaultInit(path, { ...init(), unsealKeys: ["zz zz"] })).rejects.toThrow(/Vault init results/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("keeps the secret a node id is derived from", async () => {
    const path = join(tempDir(), "secrets.json");
    const created = await createSecrets(path, PLAN, ROLES);
    const updated = await recordVaultInit(path, init());
    expect(updated.gossipKey).toBe(created.gossipKey);
    expect(updated.consul).toEqual(created.consul);
    expect(randomUUID()).not.toBe(updated.nomad.bootstrapSecret);
  });
});

describe("the web UI's read-only token", () => {
  it("is made with a new bundle, different from every other token", async () => {
    const s = await generateSecrets(PLAN, ROLES);
    expect(s.consul.uiToken).toMatch(/^[0-9a-f-]{36}$/);
    expect([s.consul.managementToken, s.consul.agentToken, s.consul.nomadToken, s.nomad.bootstrapSecret]).not.toContain(s.consul.uiToken);
    expect(() => SecretsSchema.parse({ ...s, consul: { ...s.consul, uiToken: s.consul.managementToken } })).toThrow(/every token must be different/);
  });

  it("is added once to a bundle made before it, which otherwise stays as it was", async () => {
    const dir = tempDir();
    const path = join(dir, "secrets.json");
    const created = await createSecrets(path, PLAN, ROLES);
    const { uiToken: _, ...older } = created.consul;
    writeFileSync(path, `${JSON.stringify({ ...created, consul: older }, null, 2)}\n`, { mode: 0o600 });
    // An older bundle still reads.
    expect((await readSecrets(path)).consul.uiToken).toBeUndefined();
    const updated = await withUiToken(path);
    expect(updated.consul.uiToken).toMatch(/^[0-9a-f-]{36}$/);
    expect(updated.consul.uiToken).not.toBe(created.consul.uiToken);
    expect({ ...updated, consul: { ...updated.consul, uiToken: undefined } }).toEqual({ ...created, consul: { ...older, uiToken: undefined } });
    expect(await readSecrets(path)).toEqual(updated);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["secrets.json"]);
    // The next call keeps it: same bytes on disk.
    const bytes = readFileSync(path);
    expect(await withUiToken(path)).toEqual(updated);
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });

  it("does not touch a damaged file", async () => {
    const path = join(tempDir(), "secrets.json");
    writeFileSync(path, "{", { mode: 0o600 });
    await rejection(withUiToken(path));
    expect(readFileSync(path, "utf8")).toBe("{");
  });

  it("reads nodes, services and keys, and nothing else", () => {
    const rules = [...CONSUL_UI_POLICY.matchAll(/^(\w+) "([^"]*)" \{\n  policy = "(\w+)"\n\}$/gm)].map((m) => `${m[1]} ${JSON.stringify(m[2])} ${m[3]}`);
    expect(rules).toEqual(['node_prefix "" read', 'service_prefix "" read', 'key_prefix "" read']);
    expect(CONSUL_UI_POLICY.replace(/^(\w+) "[^"]*" \{\n  policy = "read"\n\}\n/gm, "")).toBe("");
  });
});
