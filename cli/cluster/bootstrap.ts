// Bring-up after boot, once Consul has a leader. Consul: the tokens the agents were
// given in their config start to work only when they exist in Consul's ACL system, so
// the host creates them (with the SecretIDs it generated) and their policies. Nomad: ACL
// bootstrap with the pre-generated secret. Vault: init once, unseal every node. All
// idempotent, so `resin up` of an existing cluster runs them again safely.
import { CONSUL_AGENT_POLICY, CONSUL_NOMAD_POLICY, recordVaultInit, type Secrets } from "../bootstrap/secrets.js";
import { cliTls } from "../bootstrap/node-secrets.js";
import { bootstrapNomadAcl } from "./nomad.js";
import { ensureVaultReady } from "./vault.js";
import { clusterPaths } from "./state.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { consulEndpoint, ensureToken, type ConsulAccess } from "./consul.js";
import type { ClusterState } from "./state.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Right after an election Consul 1.8 still runs its ACL system in legacy mode, and a
// new leader may not be ready yet: both pass within seconds.
const TRANSIENT = /legacy mode|No cluster leader|ACL system must be bootstrapped|rpc error/i;

export async function bootstrapConsulAcl(state: ClusterState, secrets: Secrets, access: ConsulAccess, log: Log, timeoutMs = 120_000): Promise<void> {
  const ep = state.nodes.map((n) => consulEndpoint(n, access)).find(Boolean);
  if (!ep?.access) return; // an agent without TLS and ACLs has nothing to bootstrap
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const agent = await ensureToken(ep, "resin-agent", CONSUL_AGENT_POLICY, secrets.consul.agentToken);
      const nomad = await ensureToken(ep, "resin-nomad", CONSUL_NOMAD_POLICY, secrets.consul.nomadToken);
      if (agent === "created" || nomad === "created") log("  Consul ACL: agent and nomad tokens created");
      return;
    } catch (e) {
      const message = (e as Error).message;
      if (!TRANSIENT.test(message) || Date.now() > deadline) {
        throw new ResinError(`could not create the Consul ACL tokens: ${message}`, "the cluster runs; `resin up` again retries this step");
      }
      await sleep(1000);
    }
  }
}

/** Nomad's ACL bootstrap through any node that serves Nomad's API (a no-op without Nomad). */
export async function bootstrapNomad(state: ClusterState, secrets: Secrets, log: Log, timeoutMs = 300_000): Promise<void> {
  const port = state.nodes.map((n) => n.ports["nomad.https"]).find(Boolean);
  if (!port) return;
  const result = await bootstrapNomadAcl(`https://127.0.0.1:${port}`, secrets.nomad.bootstrapSecret, { ...cliTls(secrets), timeoutMs, log });
  log(`  Nomad ACL: ${result.created ? "bootstrapped" : "already bootstrapped"} (management token accessor ${result.accessorId})`);
}

/** Vault: initialise once (keys and root token kept in the bundle, 0600), unseal every node. */
export async function bringUpVault(state: ClusterState, secrets: Secrets, log: Log, timeoutMs = 300_000): Promise<void> {
  const nodes = state.nodes.filter((n) => n.ports["vault.https"]).map((n) => ({ name: n.name, url: `https://127.0.0.1:${n.ports["vault.https"]}` }));
  if (nodes.length === 0) return;
  await ensureVaultReady(nodes, secrets, (init) => recordVaultInit(clusterPaths(state.name).secrets, init), { timeoutMs, log });
  log(`  Vault: initialised and unsealed on ${nodes.length} node(s)`);
}
