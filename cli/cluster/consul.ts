// Consul's HTTP API as the host reaches it: through each node's forwarded port on
// 127.0.0.1 (or, for a cluster deployed elsewhere, a server's address), over TLS with
// Consul's CA and the host's client certificate for Consul. Every call goes through the
// one API client (api.ts), so access is decided in one place.
//
// Which token goes where is decided here too, per node (agentAccess): the management
// token goes only to a listener whose certificate from Consul's CA names
// `server.<dc>.consul`, a name only Consul servers' certificates carry; a client agent
// gets its own agent token, and only when its certificate names that very node. A port
// that answers with any other certificate (a client agent's on a "server" port, a Nomad
// or Vault certificate) fails the TLS handshake before a header is sent.
import type { Role } from "../spec/load.js";
import { serversByService } from "../bootstrap/metadata.js";
import type { Secrets } from "../bootstrap/secrets.js";
import { consulAgentToken } from "../bootstrap/node-secrets.js";
import { ApiClient, ApiUnreachable, hostTls, type ApiTls } from "./api.js";
import type { NodeState } from "../state/state.js";
import { z } from "zod";
import { fromOutside, printableLine } from "../util/text.js";

export interface ConsulAccess extends ApiTls {
  /** PEM: the host's client certificate and key (the CA and serverName as in ApiTls). */
  cert: string;
  key: string;
  /** X-Consul-Token for every request. */
  token: string;
}

export interface ConsulEndpoint {
  /** Default 127.0.0.1: a local node's port forward. */
  host?: string;
  port: number;
  /** Absent for an agent that serves plain HTTP (no TLS, no ACLs). */
  access?: ConsulAccess;
  /** False for a client agent: it gets its own token only, and cannot answer for the servers (autopilot, ACLs). */
  server?: boolean;
}

/** What the host holds to reach a cluster's Consul agents; agentAccess decides per node what each gets. */
export interface ConsulKeys {
  secrets: Secrets;
  datacenter: string;
}

export function consulKeys(secrets: Secrets, datacenter: string): ConsulKeys {
  return { secrets, datacenter };
}

/** The name only a Consul server's certificate carries (Consul's own verify_server_hostname checks it too). */
export function consulServerName(datacenter: string): string {
  return `server.${datacenter}.consul`;
}

/**
 * How the host reaches a Consul server: the management token, to a listener whose
 * certificate from Consul's CA names `server.<dc>.consul`, and to nothing else.
 */
export function consulAccess(secrets: Secrets, datacenter: string): ConsulAccess {
  return { ...hostTls(secrets, "consul", consulServerName(datacenter)), token: secrets.consul.managementToken };
}

/**
 * How the host reaches one node's Consul agent: a server (as the bundle's certificates
 * say) as consulAccess; a client agent with its own agent token, to a listener whose
 * certificate from Consul's CA names that node. Pure.
 */
export function agentAccess(keys: ConsulKeys, node: string): { access: ConsulAccess; server: boolean } {
  if (keys.secrets.nodes[node]?.consul?.role === "server") return { access: consulAccess(keys.secrets, keys.datacenter), server: true };
  return { access: { ...hostTls(keys.secrets, "consul", node), token: consulAgentToken(keys.secrets, node) }, server: false };
}

/** The node's Consul API port (HTTPS when the image serves it) with what the host sends that node. */
export function consulEndpoint(node: NodeState, keys?: ConsulKeys): ConsulEndpoint | undefined {
  const https = node.ports["consul.https"];
  if (https) return keys ? { port: https, ...agentAccess(keys, node.name) } : { port: https };
  const http = node.ports["consul.http"];
  return http ? { port: http } : undefined;
}

/** Whether the endpoint may answer for the servers (autopilot, ACLs, the catalog with management rights). */
export function isConsulServer(ep: ConsulEndpoint): boolean {
  return ep.server !== false;
}

/** How many of the nodes run Consul as a server (raft voters): the peers quorum must count. */
export function consulServerCount(nodes: NodeState[], roles: Map<string, Role>): number {
  return serversByService(nodes, (n) => roles.get(n.role)!).consul?.length ?? 0;
}

/** The endpoint as an API client: HTTPS with the access's TLS and management token, or plain HTTP. */
export function consulClient(ep: ConsulEndpoint): ApiClient {
  return new ApiClient({
    address: `${ep.access ? "https" : "http"}://${ep.host ?? "127.0.0.1"}:${ep.port}`,
    tls: ep.access,
    token: { header: "x-consul-token", value: ep.access?.token ?? "" },
    name: "Consul",
  });
}

async function getJson(ep: ConsulEndpoint, path: string, timeoutMs: number): Promise<unknown> {
  const res = await consulClient(ep).get(path, { timeoutMs });
  if (res.status !== 200) throw new Error(`${res.status} ${res.text.trim()}`);
  return res.json();
}

export interface ConsulView {
  /** "ip:8300", or "" while an election is running. */
  leader?: string;
  peers?: string[];
  error?: string;
}

export async function consulView(ep: ConsulEndpoint, timeoutMs = 5000): Promise<ConsulView> {
  try {
    // What Consul says reaches the terminal (resin status): parsed, its strings made printable.
    const leader = fromOutside(z.string(), await getJson(ep, "/v1/status/leader", timeoutMs), "Consul's leader");
    const peers = fromOutside(z.array(z.string()), await getJson(ep, "/v1/status/peers", timeoutMs), "Consul's raft peers");
    return { leader, peers };
  } catch (e) {
    if (e instanceof ApiUnreachable) return { error: e.transient ? "not answering yet" : printableLine(e.detail) };
    return { error: printableLine((e as Error).message) };
  }
}

/** Quorum: every node names the same non-empty leader and sees all `expected` raft peers. */
export function hasQuorum(views: ConsulView[], expected: number): boolean {
  const leaders = new Set(views.map((v) => v.leader));
  const leader = views[0]?.leader;
  return views.length > 0 && leaders.size === 1 && !!leader && views.every((v) => v.peers?.length === expected);
}

export async function kvPut(ep: ConsulEndpoint, key: string, value: string): Promise<void> {
  const { status, text } = await consulClient(ep).put(`/v1/kv/${encodeURI(key)}`, { body: value, timeoutMs: 15_000 });
  if (status !== 200 || text.trim() !== "true") throw new Error(`PUT ${key}: ${status} ${text}`);
}

export async function kvGet(ep: ConsulEndpoint, key: string): Promise<string | undefined> {
  const { status, text } = await consulClient(ep).get(`/v1/kv/${encodeURI(key)}?raw`, { timeoutMs: 15_000 });
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET ${key}: ${status} ${text}`);
  return text;
}

/** Keys under a prefix. `stale` answers from the node's own copy, showing whether it has caught up. */
export async function kvKeys(ep: ConsulEndpoint, prefix: string, opts: { stale?: boolean } = {}): Promise<string[]> {
  const { status, text } = await consulClient(ep).get(`/v1/kv/${encodeURI(prefix)}?keys${opts.stale ? "&stale" : ""}`);
  if (status === 404) return [];
  if (status !== 200) throw new Error(`GET keys ${prefix}: ${status} ${text}`);
  return JSON.parse(text) as string[];
}

export interface AutopilotHealth {
  healthy: boolean;
  failureTolerance: number;
  /** lastIndex: the last raft log index the server has (the leader's own, for the leader). */
  servers: { name: string; address: string; leader: boolean; voter: boolean; healthy: boolean; lastIndex: number }[];
}

/** Autopilot's view (answered by the leader): 200 when healthy, 429 when not; both carry the body. */
export async function autopilotHealth(ep: ConsulEndpoint, timeoutMs = 3000): Promise<AutopilotHealth | undefined> {
  try {
    const { status, text } = await consulClient(ep).get("/v1/operator/autopilot/health", { timeoutMs });
    if (status !== 200 && status !== 429) return undefined;
    const body = JSON.parse(text) as {
      Healthy: boolean;
      FailureTolerance: number;
      Servers: { Name: string; Address: string; Leader: boolean; Voter: boolean; Healthy: boolean; LastIndex: number }[];
    };
    return {
      healthy: body.Healthy,
      failureTolerance: body.FailureTolerance,
      servers: body.Servers.map((s) => ({ name: s.Name, address: s.Address, leader: s.Leader, voter: s.Voter, healthy: s.Healthy, lastIndex: s.LastIndex })),
    };
  } catch {
    return undefined;
  }
}

/** Autopilot's settings (operator/autopilot/configuration), as Consul keeps them in raft. */
export async function autopilotConfig(ep: ConsulEndpoint): Promise<Record<string, unknown>> {
  const { status, text } = await consulClient(ep).get("/v1/operator/autopilot/configuration", { timeoutMs: 10_000 });
  if (status !== 200) throw new Error(`autopilot configuration: ${status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Turn autopilot's dead-server cleanup on or off, leaving its other settings as they are. */
export async function setDeadServerCleanup(ep: ConsulEndpoint, on: boolean): Promise<void> {
  const config = await autopilotConfig(ep);
  const { status, text } = await consulClient(ep).put("/v1/operator/autopilot/configuration", { body: JSON.stringify({ ...config, CleanupDeadServers: on }), timeoutMs: 10_000 });
  if (status !== 200 || text.trim() !== "true") throw new Error(`autopilot configuration: ${status} ${text}`);
}

/** Ask the agent to leave the cluster gracefully (a server leaves raft). */
export async function agentLeave(ep: ConsulEndpoint): Promise<void> {
  const { status, text } = await consulClient(ep).put("/v1/agent/leave", { timeoutMs: 30_000 });
  if (status !== 200) throw new Error(`leave: ${status} ${text}`);
}

/** The status code a plain request gets: lets tests prove that ACLs and TLS are enforced. */
export async function rawStatus(ep: ConsulEndpoint, path: string, token?: string): Promise<number> {
  return (await consulClient(ep).get(path, { token: token ?? "" })).status;
}

/**
 * Create (once) an ACL policy and a token with a SecretID we chose in advance, so that
 * a token already rendered into the agents' config starts to work. Idempotent.
 */
export async function ensureToken(ep: ConsulEndpoint, name: string, rules: string, secretId: string): Promise<"created" | "existed"> {
  const consul = consulClient(ep);
  await ensurePolicy(ep, name, rules);
  const self = await consul.get("/v1/acl/token/self", { token: secretId });
  if (self.status === 200) return "existed";
  const token = await consul.put("/v1/acl/token", { body: { SecretID: secretId, Description: `resin: ${name}`, Policies: [{ Name: name }] } });
  if (token.status !== 200) throw new Error(`create ACL token ${name}: ${token.status} ${token.text}`);
  return "created";
}

/** Create the policy, or bring an existing one's rules to `rules`. Idempotent; says whether it changed anything. */
export async function ensurePolicy(ep: ConsulEndpoint, name: string, rules: string): Promise<"updated" | "unchanged"> {
  const consul = consulClient(ep);
  const policies = await consul.get("/v1/acl/policies");
  if (policies.status !== 200) throw new Error(`list ACL policies: ${policies.status} ${policies.text}`);
  const found = policies.json<{ ID: string; Name: string }[]>().find((p) => p.Name === name);
  if (!found) {
    const created = await consul.put("/v1/acl/policy", { body: { Name: name, Rules: rules } });
    if (created.status !== 200) throw new Error(`create ACL policy ${name}: ${created.status} ${created.text}`);
    return "updated";
  }
  const current = await consul.get(`/v1/acl/policy/${encodeURIComponent(found.ID)}`);
  if (current.status !== 200) throw new Error(`read ACL policy ${name}: ${current.status} ${current.text}`);
  if (current.json<{ Rules: string }>().Rules === rules) return "unchanged";
  const updated = await consul.put(`/v1/acl/policy/${encodeURIComponent(found.ID)}`, { body: { Name: name, Rules: rules } });
  if (updated.status !== 200) throw new Error(`update ACL policy ${name}: ${updated.status} ${updated.text}`);
  return "updated";
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

/** One health check as Consul's catalog holds it (GET /v1/health/state/any). */
export interface ConsulCheck {
  node: string;
  checkId: string;
  name: string;
  /** passing, warning or critical. */
  status: string;
  /** The check's last output (a TCP dial's result, an HTTP status line). */
  output: string;
  /** "" for a node-level check (serfHealth). */
  serviceName: string;
}

/** Every check of every node and service in the catalog, as the endpoint's token may read them. */
const ChecksSchema = z.array(
  z.object({ Node: z.string(), CheckID: z.string(), Name: z.string(), Status: z.string(), Output: z.string().default(""), ServiceName: z.string().default("") }).passthrough(),
);

export async function consulChecks(ep: ConsulEndpoint, timeoutMs = 5000): Promise<ConsulCheck[]> {
  // What Consul says reaches the terminal and JUnit files: parsed, its strings made printable.
  const body = fromOutside(ChecksSchema, await getJson(ep, "/v1/health/state/any", timeoutMs), "Consul's health checks");
  return body.map((c) => ({ node: c.Node, checkId: c.CheckID, name: c.Name, status: c.Status, output: c.Output, serviceName: c.ServiceName }));
}

/** The nodes on which the catalog has `service` registered. */
export async function consulServiceNodes(ep: ConsulEndpoint, service: string, timeoutMs = 5000): Promise<string[]> {
  const body = fromOutside(z.array(z.object({ Node: z.string() }).passthrough()), await getJson(ep, `/v1/catalog/service/${encodeURIComponent(service)}`, timeoutMs), `Consul's catalog of ${service}`);
  return [...new Set(body.map((e) => e.Node))].sort();
}
