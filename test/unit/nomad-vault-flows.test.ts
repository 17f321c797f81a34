import { describe, it, expect, beforeAll, afterEach } from "vitest";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueCertificate, cliCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { createSecrets, readSecrets, recordVaultInit, type Secrets } from "../../cli/bootstrap/secrets.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { hostTls } from "../../cli/cluster/api.js";
import { bootstrapNomadAcl, nomadTokenSelf } from "../../cli/cluster/nomad.js";
import { ensureVaultReady, initVault, unsealVault, vaultHealth, type SealStatus } from "../../cli/cluster/vault.js";
import { ResinError } from "../../cli/util/errors.js";
import { startNomadDouble } from "../doubles/nomad.js";
import { startVaultDouble, type VaultDouble } from "../doubles/vault.js";

// The host's Nomad ACL bootstrap and Vault init/unseal flows, against the loopback HTTPS
// test doubles in test/doubles (which imitate the documented API answers; no real Nomad
// or Vault runs here). Everything speaks TLS with certificates from cli/bootstrap/pki.ts.

let ca: CertifiedKey;
let cli: CertifiedKey;
let tls: { ca: string; cert: string; key: string };
beforeAll(async () => {
  ca = await createCa("flows");
  cli = await issueCertificate(ca, cliCertSpec("flows"));
  tls = { ca: ca.cert, cert: cli.cert, key: cli.key };
});

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "expected a rejection").toBeInstanceOf(Error);
  return err as Error;
}

describe("bootstrapNomadAcl", () => {
  it("waits while there is no cluster leader, then bootstraps with our secret", async () => {
    const nomad = await startNomadDouble({ ca, noLeaderFor: 3, requireClientCert: true });
    cleanup.push(() => nomad.close());
    const secret = randomUUID();
    const log: string[] = [];
    const result = await bootstrapNomadAcl(nomad.url, secret, { ...tls, timeoutMs: 10_000, intervalMs: 20, log: (m) => log.push(m) });
    expect(result.created).toBe(true);
    expect(nomad.token()?.SecretID).toBe(secret);
    expect(result.accessorId).toBe(nomad.token()?.AccessorID);
    const posts = nomad.requests.filter((r) => r.path === "/v1/acl/bootstrap");
    expect(posts).toHaveLength(4);
    expect(posts.every((r) => JSON.parse(r.body).BootstrapSecret === secret && r.method === "POST")).toBe(true);
    expect(posts.every((r) => r.authorizedClient)).toBe(true);
    expect(log.filter((l) => l.includes("no cluster leader"))).toHaveLength(1);
    expect((await nomadTokenSelf(nomad.url, secret, tls))?.Type).toBe("management");
  });

  it("treats 'already done' as success when our secret is the management token", async () => {
    const secret = randomUUID();
    const nomad = await startNomadDouble({ ca, bootstrappedWith: secret });
    cleanup.push(() => nomad.close());
    const result = await bootstrapNomadAcl(nomad.url, secret, { ...tls, timeoutMs: 5000, intervalMs: 20 });
    expect(result.created).toBe(false);
    expect(nomad.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /v1/acl/bootstrap", "GET /v1/acl/token/self"]);
    expect(nomad.requests[1]!.headers["x-nomad-token"]).toBe(secret);
  });

  it("is idempotent: a second bootstrap of the same cluster succeeds without a new token", async () => {
    const nomad = await startNomadDouble({ ca });
    cleanup.push(() => nomad.close());
    const secret = randomUUID();
    const first = await bootstrapNomadAcl(nomad.url, secret, { ...tls, timeoutMs: 5000 });
    const second = await bootstrapNomadAcl(nomad.url, secret, { ...tls, timeoutMs: 5000 });
    expect(first.created).toBe(true);
    expect(second).toEqual({ created: false, accessorId: first.accessorId });
  });

  it("fails clearly when the cluster was bootstrapped with another secret", async () => {
    const nomad = await startNomadDouble({ ca, bootstrappedWith: randomUUID() });
    cleanup.push(() => nomad.close());
    const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ...tls, timeoutMs: 5000 }));
    expect(err).toBeInstanceOf(ResinError);
    expect(err.message).toMatch(/bootstrapped with a token that is not this cluster's/);
  });

  it("gives up after the timeout while there is still no leader", async () => {
    const nomad = await startNomadDouble({ ca, noLeaderFor: 1_000_000 });
    cleanup.push(() => nomad.close());
    const started = Date.now();
    const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ...tls, timeoutMs: 600, intervalMs: 50 }));
    expect(err).toBeInstanceOf(ResinError);
    expect(err.message).toMatch(/did not succeed within .*no cluster leader/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(nomad.token()).toBeUndefined();
  });

  it("fails at once on another server error, with Nomad's message", async () => {
    const nomad = await startNomadDouble({ ca, failWith: { status: 500, body: "rpc error: raft apply failed: timed out" } });
    cleanup.push(() => nomad.close());
    const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ...tls, timeoutMs: 10_000 }));
    expect(err.message).toContain("500 rpc error: raft apply failed: timed out");
    expect(nomad.requests).toHaveLength(1);
  });

  it("passes Nomad's refusal of a secret that is not a UUID through", async () => {
    const nomad = await startNomadDouble({ ca });
    cleanup.push(() => nomad.close());
    const err = await rejection(bootstrapNomadAcl(nomad.url, "not-a-uuid", { ...tls, timeoutMs: 5000 }));
    expect(err.message).toContain("400 invalid acl token");
  });

  it("waits for an agent that is not listening yet, within the timeout", async () => {
    const nomad = await startNomadDouble({ ca });
    const url = nomad.url;
    await nomad.close(); // nothing listens on the port now
    const err = await rejection(bootstrapNomadAcl(url, randomUUID(), { ...tls, timeoutMs: 400, intervalMs: 50 }));
    expect(err.message).toMatch(/not answering yet .*ECONNREFUSED/);
  });

  describe("with a double that requires a CA-signed client certificate", () => {
    it("refuses a client without a certificate", async () => {
      const nomad = await startNomadDouble({ ca, requireClientCert: true });
      cleanup.push(() => nomad.close());
      const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ca: ca.cert, timeoutMs: 300, intervalMs: 50 }));
      expect(err.message).toMatch(/TLS|certificate|ECONNRESET|socket/i);
      expect(nomad.token()).toBeUndefined();
      expect(nomad.requests).toHaveLength(0);
    });

    it("refuses a client whose certificate another CA signed", async () => {
      const nomad = await startNomadDouble({ ca, requireClientCert: true });
      cleanup.push(() => nomad.close());
      const otherCa = await createCa("other");
      const stranger = await issueCertificate(otherCa, cliCertSpec("other"));
      const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ca: ca.cert, cert: stranger.cert, key: stranger.key, timeoutMs: 300, intervalMs: 50 }));
      expect(err.message).toMatch(/TLS|certificate|ECONNRESET|socket|unknown ca/i);
      expect(nomad.requests).toHaveLength(0);
    });

    it("is refused by the client when the server's certificate is not from the cluster CA", async () => {
      const otherCa = await createCa("other");
      const nomad = await startNomadDouble({ ca: otherCa });
      cleanup.push(() => nomad.close());
      const err = await rejection(bootstrapNomadAcl(nomad.url, randomUUID(), { ...tls, timeoutMs: 5000 }));
      expect(err).toBeInstanceOf(ResinError);
      expect(err.message).toMatch(/TLS failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
      expect(nomad.requests).toHaveLength(0);
    });
  });
});

describe("Vault: health, init, unseal", () => {
  let vault: VaultDouble;
  const url = () => vault.nodes[0]!.url;

  it("maps the health codes to states through init and unseal, with threshold progress", async () => {
    vault = await startVaultDouble({ ca, nodes: 1, requireClientCert: true });
    cleanup.push(() => vault.close());
    expect(await vaultHealth(url(), tls)).toMatchObject({ state: "uninitialised", status: 501, initialized: false });

    const init = await initVault(url(), { shares: 5, threshold: 3 }, tls);
    expect(init.keys).toHaveLength(5);
    expect(init.rootToken).toMatch(/^hvs\./);
    expect(await vaultHealth(url(), tls)).toMatchObject({ state: "sealed", status: 503, initialized: true, sealed: true });

    const progress: SealStatus[] = [];
    const status = await unsealVault(url(), init.keys.slice(1, 4), { ...tls, onProgress: (s) => progress.push(s) });
    expect(progress.map((p) => [p.sealed, p.progress, p.t, p.n])).toEqual([
      [true, 1, 3, 5],
      [true, 2, 3, 5],
      [false, 0, 3, 5],
    ]);
    expect(status.sealed).toBe(false);
    expect(await vaultHealth(url(), tls)).toMatchObject({ state: "active", status: 200, sealed: false });
  });

  it("refuses a second init", async () => {
    vault = await startVaultDouble({ ca, nodes: 1 });
    cleanup.push(() => vault.close());
    await initVault(url(), { shares: 1, threshold: 1 }, tls);
    const err = await rejection(initVault(url(), { shares: 1, threshold: 1 }, tls));
    expect(err.message).toContain("Vault is already initialized");
  });

  it("stops at a wrong key share with Vault's message", async () => {
    vault = await startVaultDouble({ ca, nodes: 1 });
    cleanup.push(() => vault.close());
    const init = await initVault(url(), { shares: 3, threshold: 2 }, tls);
    const wrong = "ab".repeat(33);
    const err = await rejection(unsealVault(url(), [init.keys[0]!, wrong, init.keys[1]!], tls));
    expect(err.message).toContain("Unseal failed, invalid key");
    expect((await vaultHealth(url(), tls)).state).toBe("sealed");
  });

  it("says how far it got when it runs out of keys", async () => {
    vault = await startVaultDouble({ ca, nodes: 1 });
    cleanup.push(() => vault.close());
    const init = await initVault(url(), { shares: 5, threshold: 3 }, tls);
    const err = await rejection(unsealVault(url(), init.keys.slice(0, 2), tls));
    expect(err.message).toMatch(/still sealed after 2 key share\(s\) \(progress 2\/3\)/);
  });

  it("treats an unknown health answer as an error", async () => {
    vault = await startVaultDouble({ ca, nodes: 1, healthFailsWith: 500 });
    cleanup.push(() => vault.close());
    const err = await rejection(vaultHealth(url(), tls));
    expect(err.message).toMatch(/answered 500 .*internal error/);
  });

  it("refuses a client without a CA-signed certificate when the double requires one", async () => {
    vault = await startVaultDouble({ ca, nodes: 1, requireClientCert: true });
    cleanup.push(() => vault.close());
    await rejection(vaultHealth(url(), { ca: ca.cert }));
    expect(vault.nodes[0]!.requests).toHaveLength(0);
    expect((await vaultHealth(url(), tls)).state).toBe("uninitialised");
  });
});

describe("ensureVaultReady", () => {
  const scratch: string[] = [];
  afterEach(() => {
    for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function clusterSecrets(): Promise<{ path: string; secrets: Secrets }> {
    const dir = mkdtempSync(join(tmpdir(), "resin-vault-"));
    scratch.push(dir);
    const path = join(dir, "secrets.json");
    const plan = planCluster("flows", ["vault-server", "vault-server", "vault-server"]);
    const secrets = await createSecrets(path, plan, () => ({ consul: "client", vault: true }));
    return { path, secrets };
  }

  it("initialises once, records the keys (0600) before unsealing, and unseals every node", async () => {
    const { path, secrets } = await clusterSecrets();
    const vault = await startVaultDouble({ ca: secrets.cas.vault, nodes: 3, joinAfter: 2, requireClientCert: true });
    cleanup.push(() => vault.close());
    const nodes = vault.nodes.map((n) => ({ name: n.name, url: n.url }));
    let recordedWhileSealed: boolean | undefined;
    const record = async (init: Parameters<typeof recordVaultInit>[1]) => {
      recordedWhileSealed = vault.state().sealed.every(Boolean);
      return recordVaultInit(path, init);
    };
    const log: string[] = [];
    const after = await ensureVaultReady(nodes, secrets, record, { timeoutMs: 10_000, intervalMs: 20, shares: 5, threshold: 3, log: (m) => log.push(m) });

    expect(recordedWhileSealed).toBe(true);
    expect(vault.state().sealed).toEqual([false, false, false]);
    expect(vault.state().leader).toBe(0);
    expect(after.vault).toMatchObject({ shares: 5, threshold: 3, unsealKeys: vault.state().keys, rootToken: vault.state().rootToken });
    expect(await readSecrets(path)).toEqual(after);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // Followers refused keys until their raft join completed, then took them.
    const unsealCalls = vault.nodes.map((n) => n.requests.filter((r) => r.path === "/v1/sys/unseal").length);
    expect(unsealCalls[0]).toBe(3);
    expect(log.some((l) => /sealed, 2\/3 key shares given/.test(l))).toBe(true);
    expect(vault.nodes.flatMap((n) => n.requests).every((r) => r.authorizedClient)).toBe(true);
    expect((await vaultHealth(nodes[1]!.url, hostTls(after, "vault"))).state).toBe("standby");

    // A second run (the cluster restarted) neither initialises nor records again.
    const again = await ensureVaultReady(nodes, after, () => Promise.reject(new Error("must not record twice")), { timeoutMs: 5000, intervalMs: 20 });
    expect(again).toEqual(after);
    expect(vault.nodes[0]!.requests.filter((r) => r.path === "/v1/sys/init")).toHaveLength(1);
  });

  it("unseals with the recorded keys after the nodes restart sealed", async () => {
    const { path, secrets } = await clusterSecrets();
    const vault = await startVaultDouble({ ca: secrets.cas.vault, nodes: 3, requireClientCert: true });
    cleanup.push(() => vault.close());
    const nodes = vault.nodes.map((n) => ({ name: n.name, url: n.url }));
    const after = await ensureVaultReady(nodes, secrets, (init) => recordVaultInit(path, init), { timeoutMs: 5000, intervalMs: 20, shares: 3, threshold: 2 });
    expect(vault.state().sealed).toEqual([false, false, false]);
    // Every node's Vault starts again: in the raft still, and sealed.
    for (let i = 0; i < 3; i++) vault.restart(i);
    expect(vault.state().sealed).toEqual([true, true, true]);
    expect((await vaultHealth(nodes[0]!.url, hostTls(after, "vault"))).state).toBe("sealed");
    const unsealsBefore = vault.nodes.map((n) => n.requests.filter((r) => r.path === "/v1/sys/unseal").length);
    const again = await ensureVaultReady(nodes, await readSecrets(path), () => Promise.reject(new Error("must not initialise or record again")), { timeoutMs: 5000, intervalMs: 20 });
    expect(again).toEqual(after);
    expect(vault.state().sealed).toEqual([false, false, false]);
    // Each node was given the recorded shares again (the threshold, 2), and nobody initialised.
    const unseals = vault.nodes.map((n, i) => n.requests.filter((r) => r.path === "/v1/sys/unseal").length - unsealsBefore[i]!);
    expect(unseals).toEqual([2, 2, 2]);
    expect(vault.nodes.flatMap((n) => n.requests).filter((r) => r.path === "/v1/sys/init")).toHaveLength(1);
  });

  it("refuses to go on when Vault is initialised but the bundle has no keys", async () => {
    const { secrets } = await clusterSecrets();
    const vault = await startVaultDouble({ ca: secrets.cas.vault, nodes: 2 });
    cleanup.push(() => vault.close());
    await initVault(vault.nodes[0]!.url, { shares: 1, threshold: 1 }, hostTls(secrets, "vault"));
    const err = await rejection(
      ensureVaultReady(vault.nodes.map((n) => ({ name: n.name, url: n.url })), secrets, () => Promise.reject(new Error("no")), { timeoutMs: 2000, intervalMs: 20 }),
    );
    expect(err).toBeInstanceOf(ResinError);
    expect(err.message).toMatch(/already initialised .* hold no unseal keys/);
  });

  it("fails with a clear error when the recorded keys do not open this Vault", async () => {
    const { path, secrets } = await clusterSecrets();
    const vault = await startVaultDouble({ ca: secrets.cas.vault, nodes: 1 });
    cleanup.push(() => vault.close());
    await initVault(vault.nodes[0]!.url, { shares: 1, threshold: 1 }, hostTls(secrets, "vault"));
    const wrong = await recordVaultInit(path, { shares: 1, threshold: 1, unsealKeys: ["cd".repeat(33)], rootToken: "hvs.wrong" });
    const err = await rejection(ensureVaultReady([{ name: vault.nodes[0]!.name, url: vault.nodes[0]!.url }], wrong, () => Promise.reject(new Error("no")), { timeoutMs: 2000, intervalMs: 20 }));
    expect(err.message).toContain("Unseal failed, invalid key");
  });
});
