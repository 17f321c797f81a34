// Vault's first start, as the host does it through each node's forwarded HTTPS port:
// initialise once (recording the unseal keys and root token in the cluster's secrets
// before anything else), then unseal every node.
//
// The API (Vault's http/sys_health.go, sys_init.go, sys_seal.go):
//   GET /v1/sys/health  200 active, 429 unsealed standby, 472 DR secondary,
//                       473 performance standby, 501 not initialised, 503 sealed
//   PUT /v1/sys/init    {"secret_shares", "secret_threshold"} → {"keys", "keys_base64", "root_token"};
//                       400 {"errors": ["Vault is already initialized"]}
//   PUT /v1/sys/unseal  {"key"} → {"sealed", "t", "n", "progress", …};
//                       400 {"errors": […]} for a bad key, or a node that has nothing to unseal yet
// A raft node that joins through retry_join reports not-initialised until the leader
// has answered its join; then it is unsealed with the same keys as the leader.
import type { Secrets, VaultInit } from "../bootstrap/secrets.js";
import { z } from "zod";
import { ResinError } from "../util/errors.js";
import { fromOutside, parseOutsideJson, printableLine } from "../util/text.js";
import type { Log } from "../util/log.js";
import { seconds } from "../util/time.js";
import { ApiClient, hostTls, patience, retry, type ApiTls } from "./api.js";

export const VAULT_STATES = ["active", "standby", "dr-secondary", "performance-standby", "uninitialised", "sealed"] as const;
export type VaultState = (typeof VAULT_STATES)[number];

const STATES: Record<number, VaultState> = {
  200: "active",
  429: "standby",
  472: "dr-secondary",
  473: "performance-standby",
  501: "uninitialised",
  503: "sealed",
};

export interface VaultHealth {
  state: VaultState;
  status: number;
  initialized?: boolean;
  sealed?: boolean;
  version?: string;
}

export interface SealStatus {
  sealed: boolean;
  /** Threshold, shares, and how many key shares were given so far. */
  t: number;
  n: number;
  progress: number;
}

export interface VaultClientOptions extends ApiTls {
  timeoutMs?: number;
  /** What to call the node in messages (default "Vault"). */
  name?: string;
}

export interface VaultNode {
  name: string;
  /** https://127.0.0.1:<forwarded port> */
  url: string;
}

export const unsealed = (s: VaultState) => s === "active" || s === "standby" || s === "performance-standby" || s === "dr-secondary";

/** Vault's API at `url` (https://host:port). */
export function vaultClient(url: string, opts: VaultClientOptions, token?: string): ApiClient {
  const { timeoutMs, name, ...tls } = opts;
  return new ApiClient({ address: url, tls, timeoutMs, name: name ?? "Vault", ...(token ? { token: { header: "x-vault-token", value: token } } : {}) });
}

function vaultErrors(text: string): string {
  try {
    const errors = (JSON.parse(text) as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) return errors.map(String).join("; ");
  } catch {
    // not JSON
  }
  return text.trim() || "(no message)";
}

/** GET /v1/sys/health, its status code mapped to a state. Another code is an error. */
export async function vaultHealth(url: string, opts: VaultClientOptions): Promise<VaultHealth> {
  const { status, text } = await vaultClient(url, opts).get("/v1/sys/health");
  const state = STATES[status];
  if (!state) throw new ResinError(`Vault at ${url} answered ${status} to GET /v1/sys/health: ${vaultErrors(text)}`);
  let body: { initialized?: boolean; sealed?: boolean; version?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // the status code says enough
  }
  return { state, status, initialized: body.initialized, sealed: body.sealed, version: body.version };
}

/** GET /v1/sys/storage/raft/configuration's answer, as far as resin reads it. */
const RaftConfigurationSchema = z.object({
  data: z.object({ config: z.object({ servers: z.array(z.object({ node_id: z.string(), voter: z.boolean(), leader: z.boolean() })) }) }),
});

/** PUT /v1/sys/init: Shamir key shares and the root token. */
/** The raft voters and non-voters as the active node knows them (GET /v1/sys/storage/raft/configuration, a token's read). */
export async function vaultRaftPeers(url: string, token: string, opts: VaultClientOptions): Promise<{ node: string; voter: boolean; leader: boolean }[]> {
  const { status, text } = await vaultClient(url, opts, token).get("/v1/sys/storage/raft/configuration");
  if (status !== 200) throw new ResinError(`Vault at ${url} answered ${status} to GET /v1/sys/storage/raft/configuration: ${vaultErrors(text)}`);
  const what = `Vault's raft configuration at ${url}`;
  const servers = fromOutside(RaftConfigurationSchema, parseOutsideJson(text, what), what).data.config.servers;
  return servers.map((s) => ({ node: s.node_id, voter: s.voter, leader: s.leader })).sort((a, b) => a.node.localeCompare(b.node));
}

/**
 * Vault's raft autopilot (GET /v1/sys/storage/raft/autopilot/state, a token's read):
 * whether every server is healthy, how many may fail, and the voters it counts.
 */
export async function vaultAutopilot(url: string, token: string, opts: VaultClientOptions): Promise<{ healthy: boolean; failureTolerance: number; voters: string[] }> {
  const { status, text } = await vaultClient(url, opts, token).get("/v1/sys/storage/raft/autopilot/state");
  if (status !== 200) throw new ResinError(`Vault at ${url} answered ${status} to GET /v1/sys/storage/raft/autopilot/state: ${vaultErrors(text)}`);
  const data = (JSON.parse(text) as { data: { healthy: boolean; failure_tolerance: number; voters?: string[] } }).data;
  return { healthy: data.healthy, failureTolerance: data.failure_tolerance, voters: [...(data.voters ?? [])].sort() };
}

/** What `resin status` shows of one Vault node: its state from sys/health, or why it does not answer. */
export async function vaultView(url: string, opts: VaultClientOptions): Promise<{ state: VaultState | null; version: string | null; error: string | null }> {
  try {
    const h = await vaultHealth(url, opts);
    // Printed by resin status: Vault's own words made printable.
    return { state: h.state, version: typeof h.version === "string" ? printableLine(h.version) : null, error: null };
  } catch (e) {
    return { state: null, version: null, error: printableLine((e as Error).message.split("\n")[0]!) };
  }
}

export async function initVault(url: string, params: { shares: number; threshold: number }, opts: VaultClientOptions): Promise<{ keys: string[]; keysBase64: string[]; rootToken: string }> {
  const res = await vaultClient(url, { ...opts, timeoutMs: opts.timeoutMs ?? 30_000 }).put("/v1/sys/init", { body: { secret_shares: params.shares, secret_threshold: params.threshold } });
  if (res.status !== 200) throw new ResinError(`Vault at ${url} refused to initialise: ${res.status} ${vaultErrors(res.text)}`);
  const body = res.json<{ keys?: string[]; keys_base64?: string[]; root_token?: string }>();
  if (!Array.isArray(body.keys) || body.keys.length !== params.shares || typeof body.root_token !== "string") {
    throw new ResinError(`Vault at ${url} answered its init without the expected keys and root token`);
  }
  return { keys: body.keys, keysBase64: body.keys_base64 ?? [], rootToken: body.root_token };
}

/**
 * PUT /v1/sys/unseal with one key share after another until Vault says sealed=false.
 * `onProgress` sees each answer (progress toward the threshold). A key Vault refuses is
 * an error; so is running out of keys while still sealed.
 */
export async function unsealVault(url: string, keys: string[], opts: VaultClientOptions & { onProgress?: (s: SealStatus) => void }): Promise<SealStatus> {
  const { onProgress, ...client } = opts;
  const vault = vaultClient(url, { ...client, timeoutMs: client.timeoutMs ?? 30_000 });
  let last: SealStatus | undefined;
  for (const key of keys) {
    const res = await vault.put("/v1/sys/unseal", { body: { key } });
    if (res.status !== 200) throw new ResinError(`Vault at ${url} refused an unseal key: ${res.status} ${vaultErrors(res.text)}`);
    last = res.json<SealStatus>();
    onProgress?.(last);
    if (!last.sealed) return last;
  }
  throw new ResinError(
    `Vault at ${url} is still sealed after ${keys.length} key share(s) (progress ${last?.progress ?? 0}/${last?.t ?? "?"})`,
    "the cluster's secrets hold fewer unseal keys than Vault's threshold",
  );
}

export interface EnsureVaultOptions {
  timeoutMs: number;
  /** The name to check Vault's certificates against when the URLs' hosts are not in them. */
  serverName?: string;
  log?: Log;
  /** Shamir split for a new Vault. All shares are kept in the same file on the host, so the default is 1 of 1. */
  shares?: number;
  threshold?: number;
  intervalMs?: number;
}

/**
 * Make every Vault node initialised and unsealed. The first node (in plan order) is
 * initialised when the bundle holds no Vault keys yet; `record` must store the result
 * durably (recordVaultInit) before anything else happens, and returns the updated
 * bundle. The host's TLS material (Vault's CA, the host's Vault certificate) comes from the bundle.
 * Returns the bundle with the keys.
 */
export async function ensureVaultReady(
  nodes: VaultNode[],
  bundle: Secrets,
  record: (init: Omit<VaultInit, "initializedAt">) => Promise<Secrets>,
  opts: EnsureVaultOptions,
): Promise<Secrets> {
  if (nodes.length === 0) return bundle;
  // The host speaks to Vault as it does to every agent: Vault's CA, the host's certificate for Vault.
  const client: VaultClientOptions = { ...hostTls(bundle, "vault", opts.serverName), timeoutMs: 10_000 };
  const log = opts.log ?? (() => {});
  const wait = patience({
    timeoutMs: opts.timeoutMs,
    intervalMs: opts.intervalMs,
    expired: (why) => new ResinError(`Vault did not become ready within ${seconds(opts.timeoutMs)}: ${why}`, "see the Vault servers' logs with `resin logs NODE --service vault`"),
  });
  /** Health, waiting while the node does not answer yet. */
  const health = (node: VaultNode): Promise<VaultHealth> =>
    retry(wait, () => vaultHealth(node.url, { ...client, name: `Vault on ${node.name}` }), (e) => `${node.name} is not answering (${e.detail})`);

  let secrets = bundle;
  const [first] = nodes as [VaultNode, ...VaultNode[]];
  if (!secrets.vault) {
    const states = await Promise.all(nodes.map(async (n) => ({ node: n, health: await health(n) })));
    const initialised = states.filter((s) => s.health.state !== "uninitialised");
    if (initialised.length > 0) {
      throw new ResinError(
        `Vault is already initialised (${initialised.map((s) => `${s.node.name}: ${s.health.state}`).join(", ")}) but the cluster's secrets hold no unseal keys`,
        "its keys were made elsewhere and cannot be recovered here; destroy and recreate the cluster",
      );
    }
    const shares = opts.shares ?? 1;
    const threshold = opts.threshold ?? 1;
    log(`  Vault: initialising on ${first.name} (${threshold} of ${shares} key shares)`);
    const init = await initVault(first.url, { shares, threshold }, { ...client, timeoutMs: 60_000 });
    secrets = await record({ shares, threshold, unsealKeys: init.keys, rootToken: init.rootToken });
  }
  const keys = secrets.vault!.unsealKeys.slice(0, secrets.vault!.threshold);

  for (const node of nodes) {
    for (;;) {
      const h = await health(node);
      if (unsealed(h.state)) break;
      if (h.state === "sealed" || (h.state === "uninitialised" && node !== first)) {
        // A joining raft node says "not initialised" until the leader has answered its
        // join; Vault then takes the keys. Until then it refuses them: try again.
        try {
          const status = await unsealVault(node.url, keys, {
            ...client,
            onProgress: (s) => log(`  Vault: ${node.name} ${s.sealed ? `sealed, ${s.progress}/${s.t} key shares given` : "unsealed"}`),
          });
          if (!status.sealed) continue;
        } catch (e) {
          if (!(e instanceof ResinError) || !/not initialized|not yet|no leader|raft/i.test(e.message) || h.state !== "uninitialised") throw e;
        }
        await wait.wait(`${node.name} has not joined the cluster yet`);
        continue;
      }
      // The first node uninitialised although the bundle holds keys: its storage was lost.
      throw new ResinError(
        `Vault on ${node.name} is not initialised, but the cluster's secrets hold keys from its initialisation`,
        "the node's persist disk was replaced or wiped; restore it, or recreate the cluster",
      );
    }
  }

  // Ready means a leader serves requests.
  for (;;) {
    const states = await Promise.all(nodes.map((n) => health(n)));
    if (states.some((s) => s.state === "active")) break;
    await wait.wait(`no Vault node is active (${nodes.map((n, i) => `${n.name}: ${states[i]!.state}`).join(", ")})`);
  }
  log(`  Vault: ${nodes.length} node(s) unsealed`);
  return secrets;
}
