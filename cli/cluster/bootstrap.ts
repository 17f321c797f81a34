// Bring-up after boot, once Consul has a leader. Consul: the tokens the agents were
// given in their config start to work only when they exist in Consul's ACL system, so
// the host creates them (with the SecretIDs it generated) and their policies. Nomad: ACL
// bootstrap with the pre-generated secret. Vault: init once, unseal every node. All
// idempotent, so `resin up` of an existing cluster runs them again safely.
import { consulAgentPolicy, CONSUL_DNS_POLICY, CONSUL_NOMAD_POLICY, CONSUL_UI_POLICY, readSecrets, recordVaultInit, type Secrets } from "../bootstrap/secrets.js";
import type { Machines } from "../provider/machine.js";
import { localMachines } from "../provider/local.js";
import { consulAgentToken, consulDnsToken } from "../bootstrap/node-secrets.js";
import { bootstrapNomadAcl } from "./nomad.js";
import { ensureVaultReady, type VaultNode } from "./vault.js";
import { readManifest, registrations } from "../image/manifest.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { sleep } from "../util/time.js";
import { hostTls } from "./api.js";
import { consulEndpoint, consulKeys, ensurePolicy, ensureToken, isConsulServer, type ConsulEndpoint, type ConsulKeys } from "./consul.js";
import { NOMAD_REGION, VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";
import { type ClusterHandle, type ClusterState } from "../state/state.js";

// Right after an election Consul 1.8 still runs its ACL system in legacy mode, and a
// new leader may not be ready yet: both pass within seconds.
const TRANSIENT = /legacy mode|No cluster leader|ACL system must be bootstrapped|rpc error/i;

/**
 * Where the host reaches a cluster's APIs: a local cluster's port forwards on
 * 127.0.0.1, or the addresses of a cluster deployed elsewhere (Terraform), with the
 * names its certificates carry.
 */
export interface ApiTargets {
  consul?: ConsulEndpoint;
  nomad?: { url: string; serverName?: string };
  vault: { nodes: VaultNode[]; serverName?: string };
}

/**
 * A local cluster's APIs, through each node's forwarded ports: Consul and Nomad through
 * a server (the management token and Nomad's bootstrap secret go to nothing else, and
 * each is checked by the name only its servers' certificates carry); Vault on every
 * node that runs it, checked against Vault's CA and the name every Vault node carries.
 */
export function localTargets(state: ClusterState, keys: ConsulKeys): ApiTargets {
  const nomadServer = state.nodes.find((n) => n.ports["nomad.https"] && keys.secrets.nodes[n.name]?.nomad?.role === "server");
  return {
    consul: state.nodes.map((n) => consulEndpoint(n, keys)).find((ep) => ep && ep.access && isConsulServer(ep)),
    nomad: nomadServer ? { url: `https://127.0.0.1:${nomadServer.ports["nomad.https"]}`, serverName: nomadServerName() } : undefined,
    vault: {
      nodes: state.nodes.filter((n) => n.ports["vault.https"]).map((n) => ({ name: n.name, url: `https://127.0.0.1:${n.ports["vault.https"]}` })),
      serverName: VAULT_TLS_SERVER_NAME,
    },
  };
}

/** The name only a Nomad server's certificate carries (server.global.nomad). */
export function nomadServerName(): string {
  return `server.${NOMAD_REGION}.nomad`;
}

/**
 * Everything after quorum, in order: Consul's tokens, Nomad's ACL bootstrap, Vault's init
 * and unseal. Resin's commands pass the cluster's handle; bench/ makes its clusters'
 * state itself and passes none.
 */
export async function finishCluster(state: ClusterState, secrets: Secrets, targets: ApiTargets, log: Log, cluster: ClusterHandle): Promise<void> {
  if (targets.consul) await bootstrapConsulAcl(targets.consul, secrets, await nodesRegistering(cluster, state), log);
  if (targets.nomad) await bootstrapNomad(targets.nomad, secrets, log);
  if (targets.vault.nodes.length > 0) await bringUpVault(cluster, targets.vault, secrets, log);
}

/** Each node with the Consul services its image registers (the image's manifest says, and which of its services declares each). */
export async function nodesRegistering(cluster: ClusterHandle, state: ClusterState): Promise<{ name: string; registrations: { name: string; service: string }[] }[]> {
  return Promise.all(state.nodes.map(async (n) => ({ name: n.name, registrations: await imageRegistrations(cluster, n.image) })));
}

async function imageRegistrations(cluster: ClusterHandle, image: string): Promise<{ name: string; service: string }[]> {
  return registrations((await readManifest(cluster.imageDir(image))) ?? { services: [] });
}

/**
 * Before a node boots another image (an upgrade, a rollback): its agent token's policy
 * names exactly the Consul services that image registers, so they register at its first
 * start rather than at the next `resin up`. Through a Consul server; nothing to do where
 * Consul has no ACLs. Returns whether the policy changed.
 */
export async function grantImageServices(server: ConsulEndpoint, cluster: ClusterHandle, node: string, image: string, timeoutMs = 120_000): Promise<"updated" | "unchanged"> {
  if (!server.access) return "unchanged";
  const rules = consulAgentPolicy(node, (await imageRegistrations(cluster, image)).map((r) => r.name));
  const failed = { what: `could not give ${node}'s Consul agent policy the services of image ${image.slice(7, 19)}`, hint: "nothing was replaced yet; `resin upgrade --resume` retries" };
  return untilSettled(failed, timeoutMs, () => ensurePolicy(server, `resin-agent-${node}`, rules));
}

/**
 * Every agent's own token (write on its node and on the services its image registers),
 * the DNS token every agent answers DNS with, Nomad's token and the web UI's read-only
 * token, created with their policies; a policy
 * whose rules changed (a node moved to an image that registers other services) is updated.
 */
export async function bootstrapConsulAcl(ep: ConsulEndpoint, secrets: Secrets, nodes: { name: string; registrations: { name: string }[] }[], log: Log, timeoutMs = 120_000): Promise<void> {
  if (!ep.access) return; // an agent without TLS and ACLs has nothing to bootstrap
  const failed = { what: "could not create the Consul ACL tokens", hint: "the cluster runs; `resin up` (or `resin bootstrap`) again retries this step" };
  await untilSettled(failed, timeoutMs, async () => {
    const made: string[] = [];
    for (const node of nodes) {
      if ((await ensureToken(ep, `resin-agent-${node.name}`, consulAgentPolicy(node.name, node.registrations.map((r) => r.name)), consulAgentToken(secrets, node.name))) === "created") made.push(node.name);
    }
    const dns = await ensureToken(ep, "resin-dns", CONSUL_DNS_POLICY, consulDnsToken(secrets));
    const nomad = await ensureToken(ep, "resin-nomad", CONSUL_NOMAD_POLICY, secrets.consul.nomadToken);
    const ui = secrets.consul.uiToken ? await ensureToken(ep, "resin-ui-read", CONSUL_UI_POLICY, secrets.consul.uiToken) : undefined;
    const uiSaid = ui ? `; read-only UI token ${ui === "created" ? "created" : "already there"}` : "";
    log(`  Consul ACL: ${made.length ? `agent tokens created for ${made.join(", ")}` : "agent tokens already there"}; DNS token ${dns === "created" ? "created" : "already there"}; nomad token ${nomad === "created" ? "created" : "already there"}${uiSaid}`);
  });
}

/**
 * Run an ACL step, again each second while Consul says it is not ready for it (no leader
 * yet, or a server that has just started and is still in legacy ACL mode), until
 * `timeoutMs`; then, or on any other error, a ResinError with `failed`'s words.
 */
async function untilSettled<T>(failed: { what: string; hint: string }, timeoutMs: number, step: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await step();
    } catch (e) {
      const message = (e as Error).message;
      if (!TRANSIENT.test(message) || Date.now() > deadline) throw new ResinError(`${failed.what}: ${message}`, failed.hint);
      await sleep(1000);
    }
  }
}

/** Nomad's ACL bootstrap through a node that serves Nomad's API. */
export async function bootstrapNomad(target: { url: string; serverName?: string }, secrets: Secrets, log: Log, timeoutMs = 300_000): Promise<void> {
  const result = await bootstrapNomadAcl(target.url, secrets.nomad.bootstrapSecret, { ...hostTls(secrets, "nomad", target.serverName ?? nomadServerName()), timeoutMs, log });
  log(`  Nomad ACL: ${result.created ? "bootstrapped" : "already bootstrapped"} (management token accessor ${result.accessorId})`);
}

/**
 * After a node or its Vault started again (`resin start`, `restart`, an upgrade's new
 * node): Vault comes back sealed, so unseal every running Vault node with the keys the
 * host keeps. Nothing to do for a cluster whose Vault was never initialised.
 */
export async function unsealAgain(cluster: ClusterHandle, state: ClusterState, log: Log, timeoutMs = 300_000, machines: Machines = localMachines()): Promise<void> {
  const secrets = await readSecrets(cluster.secrets);
  if (!secrets.vault) return;
  const running = new Set<string>();
  for (const node of state.nodes) if ((await machines.status(cluster, node)).state === "running") running.add(node.name);
  const vault = localTargets(state, consulKeys(secrets, state.datacenter)).vault;
  const nodes = vault.nodes.filter((n) => running.has(n.name));
  if (nodes.length === 0) return;
  await ensureVaultReady(nodes, secrets, () => Promise.reject(new Error("Vault is initialised already")), { timeoutMs, log, serverName: vault.serverName });
  log(`  Vault: unsealed on ${nodes.map((n) => n.name).join(", ")}`);
}

/** Vault: initialise once (keys and root token kept in the bundle, 0600), unseal every node. */
export async function bringUpVault(cluster: ClusterHandle, target: ApiTargets["vault"], secrets: Secrets, log: Log, timeoutMs = 300_000): Promise<void> {
  await ensureVaultReady(target.nodes, secrets, (init) => recordVaultInit(cluster.secrets, init), { timeoutMs, log, serverName: target.serverName });
  log(`  Vault: initialised and unsealed on ${target.nodes.length} node(s)`);
}
