// Bring-up after boot, once Consul has a leader: the tokens the agents were given in
// their config start to work only when they exist in Consul's ACL system, so the host
// creates them (with the SecretIDs it generated) and their policies. Idempotent.
import { CONSUL_AGENT_POLICY, CONSUL_NOMAD_POLICY, type Secrets } from "../bootstrap/secrets.js";
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
