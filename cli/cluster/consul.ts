// Consul's view of the cluster, read through each node's forwarded HTTP port.
import { request } from "undici";

export interface ConsulView {
  /** "ip:8300", or "" while an election is running. */
  leader?: string;
  peers?: string[];
  error?: string;
}

async function getJson(url: string, timeoutMs: number): Promise<unknown> {
  const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${text.trim()}`);
  return JSON.parse(text);
}

export async function consulView(httpPort: number, timeoutMs = 2000): Promise<ConsulView> {
  const base = `http://127.0.0.1:${httpPort}`;
  try {
    const leader = (await getJson(`${base}/v1/status/leader`, timeoutMs)) as string;
    const peers = (await getJson(`${base}/v1/status/peers`, timeoutMs)) as string[];
    return { leader, peers };
  } catch (e) {
    const err = e as Error & { code?: string };
    return { error: ["ECONNREFUSED", "ECONNRESET", "UND_ERR_SOCKET", "UND_ERR_HEADERS_TIMEOUT"].includes(err.code ?? "") ? "not answering yet" : err.message };
  }
}

/** Quorum: every node names the same non-empty leader and sees all `expected` raft peers. */
export function hasQuorum(views: ConsulView[], expected: number): boolean {
  const leaders = new Set(views.map((v) => v.leader));
  const leader = views[0]?.leader;
  return views.length > 0 && leaders.size === 1 && !!leader && views.every((v) => v.peers?.length === expected);
}

export async function kvPut(httpPort: number, key: string, value: string): Promise<void> {
  const res = await request(`http://127.0.0.1:${httpPort}/v1/kv/${encodeURI(key)}`, { method: "PUT", body: value });
  const text = await res.body.text();
  if (res.statusCode !== 200 || text.trim() !== "true") throw new Error(`PUT ${key}: ${res.statusCode} ${text}`);
}

export async function kvGet(httpPort: number, key: string): Promise<string | undefined> {
  const res = await request(`http://127.0.0.1:${httpPort}/v1/kv/${encodeURI(key)}?raw`);
  const text = await res.body.text();
  if (res.statusCode === 404) return undefined;
  if (res.statusCode !== 200) throw new Error(`GET ${key}: ${res.statusCode} ${text}`);
  return text;
}

export interface AutopilotHealth {
  healthy: boolean;
  failureTolerance: number;
  servers: { name: string; address: string; leader: boolean; voter: boolean; healthy: boolean }[];
}

/** Autopilot's view (answered by the leader): 200 when healthy, 429 when not; both carry the body. */
export async function autopilotHealth(httpPort: number, timeoutMs = 3000): Promise<AutopilotHealth | undefined> {
  try {
    const res = await request(`http://127.0.0.1:${httpPort}/v1/operator/autopilot/health`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200 && res.statusCode !== 429) return undefined;
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

/** Keys under a prefix. `stale` answers from the node's own copy, showing whether it has caught up. */
export async function kvKeys(httpPort: number, prefix: string, opts: { stale?: boolean } = {}): Promise<string[]> {
  const res = await request(`http://127.0.0.1:${httpPort}/v1/kv/${encodeURI(prefix)}?keys${opts.stale ? "&stale" : ""}`, { headersTimeout: 5000, bodyTimeout: 5000 });
  const text = await res.body.text();
  if (res.statusCode === 404) return [];
  if (res.statusCode !== 200) throw new Error(`GET keys ${prefix}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as string[];
}
