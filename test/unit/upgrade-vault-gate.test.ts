// `resin upgrade`'s Vault gate (vaultGate in cli/cluster/upgrade.ts) and the raft reads
// it and `resin status` rely on (vaultAutopilot, vaultRaftPeers), against the Vault
// test double (test/doubles/vault.ts: not Vault, which cannot be obtained here; it models
// autopilot's state and the raft configuration as Vault reports them). As documented on
// vaultGate: every node unsealed, autopilot healthy with every Vault server a voter,
// and, before a node is replaced, one server allowed to fail.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecrets, recordVaultInit, type Secrets } from "../../cli/bootstrap/secrets.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { hostTls } from "../../cli/cluster/api.js";
import { vaultGate, type UpgradeOptions } from "../../cli/cluster/upgrade.js";
import { ensureVaultReady, vaultAutopilot, vaultRaftPeers } from "../../cli/cluster/vault.js";
import type { Machines } from "../../cli/provider/machine.js";
import { clusterHandle, type ClusterState, type NodeState } from "../../cli/state/state.js";
import { startVaultDouble, type VaultDouble } from "../doubles/vault.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** Every VM runs (the machines are not what this gate is about). */
const running = { status: async () => ({ state: "running" }) } as unknown as Machines;

/** A Vault cluster of `nodes` on the double, initialised and unsealed the way `resin up` does it. */
async function vaultCluster(nodes: number, opts: { nonVoters?: number[] } = {}): Promise<{ vault: VaultDouble; state: ClusterState; secrets: Secrets; upgrade: UpgradeOptions }> {
  const dir = mkdtempSync(join(tmpdir(), "resin-vault-gate-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "secrets.json");
  const plan = planCluster("gate", Array.from({ length: nodes }, () => "vault-server"));
  const fresh = await createSecrets(path, plan, () => ({ consul: "client", vault: true }));
  const vault = await startVaultDouble({ ca: fresh.cas.vault, nodes, requireClientCert: true, ...opts });
  cleanup.push(() => vault.close());
  const endpoints = vault.nodes.map((n) => ({ name: n.name, url: n.url }));
  const secrets = await ensureVaultReady(endpoints, fresh, (init) => recordVaultInit(path, init), { timeoutMs: 10_000, intervalMs: 20, shares: 3, threshold: 2 });
  const state = {
    name: "gate",
    nodes: vault.nodes.map((n, i) => ({ name: `gate-${i + 1}`, role: "vault-server", ports: { "vault.https": Number(new URL(n.url).port) } }) as unknown as NodeState),
  } as unknown as ClusterState;
  const upgrade: UpgradeOptions = { cluster: clusterHandle("gate"), writeConfig: async () => {}, gateTimeoutMs: 1000, consulServers: 1, secrets, log: () => {}, machines: running };
  return { vault, state, secrets, upgrade };
}

describe("the Vault double's raft, as the host reads it", () => {
  it("autopilot and the raft configuration name every voter, and a non-voter as one", async () => {
    const { vault, secrets } = await vaultCluster(3, { nonVoters: [2] });
    const tls = { ...hostTls(secrets, "vault"), timeoutMs: 5000 };
    const token = secrets.vault!.rootToken;
    expect(await vaultAutopilot(vault.nodes[0]!.url, token, tls)).toEqual({ healthy: true, failureTolerance: 0, voters: ["vault-double-1", "vault-double-2"] });
    expect(await vaultRaftPeers(vault.nodes[1]!.url, token, tls)).toEqual([
      { node: "vault-double-1", voter: true, leader: true },
      { node: "vault-double-2", voter: true, leader: false },
      { node: "vault-double-3", voter: false, leader: false },
    ]);
    // Both are a token's reads: without the root token, Vault's message.
    await expect(vaultAutopilot(vault.nodes[0]!.url, "hvs.not-the-root-token", tls)).rejects.toThrow(/answered 403 .*permission denied/);
  });
});

describe("vaultGate", () => {
  it("passes a healthy three-node cluster, before and after a node", async () => {
    const { state, upgrade, vault, secrets } = await vaultCluster(3);
    expect(await vaultAutopilot(vault.nodes[0]!.url, secrets.vault!.rootToken, { ...hostTls(secrets, "vault"), timeoutMs: 5000 })).toMatchObject({ healthy: true, failureTolerance: 1 });
    expect(await vaultGate(state, upgrade)).toEqual({ ok: true, why: "" });
    expect(await vaultGate(state, upgrade, false)).toEqual({ ok: true, why: "" });
  });

  it("stops before a node while the failure tolerance is 0, and lets a returning node pass", async () => {
    // Two voters, both healthy: quorum is 2, so no server may fail.
    const { state, upgrade } = await vaultCluster(2);
    expect(await vaultGate(state, upgrade)).toEqual({ ok: false, why: "Vault's failure tolerance is 0: replacing a node now would risk its quorum" });
    expect(await vaultGate(state, upgrade, false)).toEqual({ ok: true, why: "" });
  });

  it("stops at a sealed node, naming it, and passes again once it is unsealed", async () => {
    const { vault, state, upgrade, secrets } = await vaultCluster(3);
    vault.restart(2);
    expect(await vaultGate(state, upgrade)).toEqual({ ok: false, why: "Vault on gate-3 is sealed" });
    expect(await vaultGate(state, upgrade, false)).toEqual({ ok: false, why: "Vault on gate-3 is sealed" });
    await ensureVaultReady(vault.nodes.map((n) => ({ name: n.name, url: n.url })), secrets, () => Promise.reject(new Error("initialised already")), { timeoutMs: 5000, intervalMs: 20 });
    expect(await vaultGate(state, upgrade)).toEqual({ ok: true, why: "" });
  });

  it("stops while a Vault server is not a voter, before and after a node", async () => {
    const { state, upgrade } = await vaultCluster(3, { nonVoters: [2] });
    expect(await vaultGate(state, upgrade)).toEqual({ ok: false, why: "Vault's raft autopilot counts 2 of 3 voters" });
    expect(await vaultGate(state, upgrade, false)).toEqual({ ok: false, why: "Vault's raft autopilot counts 2 of 3 voters" });
  });

  it("has nothing to gate on where the bundle holds no Vault token", async () => {
    const { state, upgrade } = await vaultCluster(1);
    expect(await vaultGate(state, { ...upgrade, secrets: { ...upgrade.secrets!, vault: undefined } })).toBeUndefined();
  });
});
