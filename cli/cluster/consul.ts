// Consul's HTTP API as the host reaches it: through each node's forwarded port on
// 127.0.0.1 (or, for a cluster deployed elsewhere, a server's address), over TLS with
// the cluster CA and the host's client certificate, with the management token. Every
// call goes through `call`, so access is decided in one place.
import { Agent, request, type Dispatcher } from "undici";
import type { Secrets } from "../bootstrap/secrets.js";
import type { NodeState } from "./state.js";

export interface ConsulAccess {
  /** PEM: the cluster CA, the host's client certificate and key. */
  ca: string;
  cert: string;
  key: string;
  /** X-Consul-Token for every request. */
  token: string;
  /** The name to check the agent's certificate against, when the address is not in it (server.<dc>.consul). */
  serverName?: string;
}

export interface ConsulEndpoint {
  /** Default 127.0.0.1: a local node's port forward. */
  host?: string;
  port: number;
  /** Absent for an agent that serves plain HTTP (no TLS, no ACLs). */
  access?: ConsulAccess;
}

export function consulAccess(secrets: Secrets): ConsulAccess {
  return { ca: secrets.ca.cert, cert: secrets.cli.cert, key: secrets.cli.key, token: secrets.consul.managementToken };
}

/** The node's Consul API port (HTTPS when the image serves it) with the host's access. */
export function consulEndpoint(node: NodeState, access?: ConsulAccess): ConsulEndpoint | undefined {
  const https = node.ports["consul.https"];
  if (https) return { port: https, access };
  const http = node.ports["consul.http"];
  return http ? { port: http } : undefined;
}

const dispatchers = new WeakMap<ConsulAccess, Dispatcher>();
function dispatcherFor(access: ConsulAccess): Dispatcher {
  let agent = dispatchers.get(access);
  if (!agent) {
    agent = new Agent({ connect: { ca: access.ca, cert: access.cert, key: access.key, servername: access.serverName } });
    dispatchers.set(access, agent);
  }
  return agent;
}

async function call(
  ep: ConsulEndpoint,
  path: string,
  opts: { method?: "GET" | "PUT"; body?: string; timeoutMs?: number; token?: string } = {},
): Promise<{ status: number; text: string }> {
  const timeout = opts.timeoutMs ?? 5000;
  const url = `${ep.access ? "https" : "http"}://${ep.host ?? "127.0.0.1"}:${ep.port}${path}`;
  const token = opts.token ?? ep.access?.token;
  const res = await request(url, {
    method: opts.method ?? "GET",
    body: opts.body,
    headers: token ? { "x-consul-token": token } : {},
    dispatcher: ep.access ? dispatcherFor(ep.access) : undefined,
    headersTimeout: timeout,
    bodyTimeout: timeout,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

async function getJson(ep: ConsulEndpoint, path: string, timeoutMs: number): Promise<unknown> {
  const { status, text } = await call(ep, path, { timeoutMs });
  if (status !== 200) throw new Error(`${status} ${text.trim()}`);
  return JSON.parse(text);
}

export interface ConsulView {
  /** "ip:8300", or "" while an election is running. */
  leader?: string;
  peers?: string[];
  error?: string;
}

const NOT_YET = ["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET", "UND_ERR_HEADERS_TIMEOUT", "ECONNABORTED"];

export async function consulView(ep: ConsulEndpoint, timeoutMs = 5000): Promise<ConsulView> {
  try {
    const leader = (await getJson(ep, "/v1/status/leader", timeoutMs)) as string;
    const peers = (await getJson(ep, "/v1/status/peers", timeoutMs)) as string[];
    return { leader, peers };
  } catch (e) {
    const err = e as Error & { code?: string };
    // A TLS handshake cut short while the guest boots also means "not yet".
    const early = NOT_YET.includes(err.code ?? "") || /socket disconnected before secure TLS connection/.test(err.message);
    return { error: early ? "not answering yet" : err.message };
  }
}

/** Quorum: every node names the same non-empty leader and sees all `expected` raft peers. */
export function hasQuorum(views: ConsulView[], expected: number): boolean {
  const leaders = new Set(views.map((v) => v.leader));
  const leader = views[0]?.leader;
  return views.length > 0 && leaders.size === 1 && !!leader && views.every((v) => v.peers?.length === expected);
}

export async function kvPut(ep: ConsulEndpoint, key: string, value: string): Promise<void> {
  const { status, text } = await call(ep, `/v1/kv/${encodeURI(key)}`, { method: "PUT", body: value, timeoutMs: 15_000 });
  if (status !== 200 || text.trim() !== "true") throw new Error(`PUT ${key}: ${status} ${text}`);
}

export async function kvGet(ep: ConsulEndpoint, key: string): Promise<string | undefined> {
  const { status, text } = await call(ep, `/v1/kv/${encodeURI(key)}?raw`, { timeoutMs: 15_000 });
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET ${key}: ${status} ${text}`);
  return text;
}

/** Keys under a prefix. `stale` answers from the node's own copy, showing whether it has caught up. */
export async function kvKeys(ep: ConsulEndpoint, prefix: string, opts: { stale?: boolean } = {}): Promise<string[]> {
  const { status, text } = await call(ep, `/v1/kv/${encodeURI(prefix)}?keys${opts.stale ? "&stale" : ""}`);
  if (status === 404) return [];
  if (status !== 200) throw new Error(`GET keys ${prefix}: ${status} ${text}`);
  return JSON.parse(text) as string[];
}

export interface AutopilotHealth {
  healthy: boolean;
  failureTolerance: number;
  servers: { name: string; address: string; leader: boolean; voter: boolean; healthy: boolean }[];
}

/** Autopilot's view (answered by the leader): 200 when healthy, 429 when not; both carry the body. */
export async function autopilotHealth(ep: ConsulEndpoint, timeoutMs = 3000): Promise<AutopilotHealth | undefined> {
  try {
    const { status, text } = await call(ep, "/v1/operator/autopilot/health", { timeoutMs });
    if (status !== 200 && status !== 429) return undefined;
    const body = JSON.parse(text) as {
      Healthy: boolean;
      FailureTolerance: number;
      Servers: { Name: string; Address: string; Leader: boolean; Voter: boolean; Healthy: boolean }[];
    };
    return {
      healthy: body.Healthy,
      failureTolerance: body.FailureTolerance,
      servers: body.Servers.map((s) => ({ name: s.Name, address: s.Address, leader: s.Leader, voter: s.Voter, healthy: s.Healthy })),
    };
  } catch {
    return undefined;
  }
}

/** Ask the agent to leave the cluster gracefully (a server leaves raft). */
export async function agentLeave(ep: ConsulEndpoint): Promise<void> {
  const { status, text } = await call(ep, "/v1/agent/leave", { method: "PUT", timeoutMs: 30_000 });
  if (status !== 200) throw new Error(`leave: ${status} ${text}`);
}

/** The status code a plain request gets: lets tests prove that ACLs and TLS are enforced. */
export async function rawStatus(ep: ConsulEndpoint, path: string, token?: string): Promise<number> {
  return (await call(ep, path, { token: token ?? "" })).status;
}

/**
 * Create (once) an ACL policy and a token with a SecretID we chose in advance, so that
 * a token already rendered into the agents' config starts to work. Idempotent.
 */
export async function ensureToken(ep: ConsulEndpoint, name: string, rules: string, secretId: string): Promise<"created" | "existed"> {
  const self = await call(ep, "/v1/acl/token/self", { token: secretId });
  if (self.status === 200) return "existed";
  const policies = await call(ep, "/v1/acl/policies");
  if (policies.status !== 200) throw new Error(`list ACL policies: ${policies.status} ${policies.text}`);
  if (!(JSON.parse(policies.text) as { Name: string }[]).some((p) => p.Name === name)) {
    const created = await call(ep, "/v1/acl/policy", { method: "PUT", body: JSON.stringify({ Name: name, Rules: rules }) });
    if (created.status !== 200) throw new Error(`create ACL policy ${name}: ${created.status} ${created.text}`);
  }
  const token = await call(ep, "/v1/acl/token", {
    method: "PUT",
    body: JSON.stringify({ SecretID: secretId, Description: `resin: ${name}`, Policies: [{ Name: name }] }),
  });
  if (token.status !== 200) throw new Error(`create ACL token ${name}: ${token.status} ${token.text}`);
  return "created";
}

/** The agent's running configuration (GET /v1/agent/self → DebugConfig), to observe baked settings. */
export async function agentConfig(ep: ConsulEndpoint): Promise<Record<string, unknown>> {
  const self = (await getJson(ep, "/v1/agent/self", 5000)) as { DebugConfig?: Record<string, unknown> };
  return self.DebugConfig ?? {};
}

/** Names of the members the agent sees in the LAN gossip pool. */
export async function lanMembers(ep: ConsulEndpoint): Promise<string[]> {
  return ((await getJson(ep, "/v1/agent/members", 5000)) as { Name: string }[]).map((m) => m.Name);
}
