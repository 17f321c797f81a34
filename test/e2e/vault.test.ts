// Real Vault 1.14.2, built from its Go module (source channel), on three QEMU nodes
// with integrated storage, beside one Debian Consul 1.8.7 server. The host initialises
// Vault and unseals every node; its API answers only the host's client certificate.
// Faults: the active node's VM is SIGKILLed under a writer loop, started again, Vault is
// restarted by runit, and the cluster is stopped and started. Every acknowledged write
// must survive, and every node must come back unsealed without being asked.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Secrets } from "../../cli/bootstrap/secrets.js";
import { StatusSchema, type ClusterStatus } from "../../cli/commands/status.js";
import { clusterJson, killLeftovers, processesUnder, resin, resinAsync } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-vault-"));
const env = { RESIN_STATE_HOME: stateHome };
const name = "vault";
const VAULTS = ["vault-2", "vault-3", "vault-4"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const secrets = (): Secrets => JSON.parse(readFileSync(join(stateHome, "clusters", name, "secrets.json"), "utf8")) as Secrets;
const portOf = (node: string) => clusterJson(stateHome, name).nodes.find((n) => n.name === node)!.ports["vault.https"]!;
let hostAgent: Agent;

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One Vault API call as the host makes it: the cluster CA, the host's client certificate, the root token. */
async function vault(node: string, method: "GET" | "PUT" | "POST", path: string, body?: unknown): Promise<Answer> {
  const res = await request(`https://127.0.0.1:${portOf(node)}${path}`, {
    method,
    dispatcher: hostAgent,
    headers: { "x-vault-token": secrets().vault!.rootToken, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** sys/health's answer by status code: 200 active, 429 standby, 503 sealed, 501 uninitialised. */
async function health(node: string): Promise<number | string> {
  try {
    return (await vault(node, "GET", "/v1/sys/health")).status;
  } catch (e) {
    return (e as Error).message;
  }
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await sleep(1000);
  }
}

async function activeNode(among = VAULTS): Promise<string> {
  return until("an active Vault node", 120_000, async () => {
    for (const n of among) if ((await health(n)) === 200) return n;
    return undefined;
  });
}

function status(): ClusterStatus {
  const r = resin(["status", "--name", name, "--json"], env);
  expect(r.status, r.stderr).toBe(0);
  return StatusSchema.parse(JSON.parse(r.stdout));
}

/** Writes Vault acknowledged (200/204), by key: every one must be readable after every fault. */
const acked = new Map<string, string>();

async function put(key: string, value: string, via: string[]): Promise<boolean> {
  for (const node of via) {
    try {
      const r = await vault(node, "POST", `/v1/secret/data/${key}`, { data: { value } });
      if (r.status === 200 || r.status === 204) {
        acked.set(key, value);
        return true;
      }
    } catch {
      // this node is down: try the next
    }
  }
  return false;
}

async function readAll(via: string): Promise<string[]> {
  const lost: string[] = [];
  for (const [key, value] of acked) {
    const r = await vault(via, "GET", `/v1/secret/data/${key}`);
    const data = (r.body.data as { data?: { value?: string } } | undefined)?.data;
    if (r.status !== 200 || data?.value !== value) lost.push(`${key} (${r.status})`);
  }
  return lost;
}

beforeAll(async () => {
  const up = await resinAsync(["up", "--name", name, "--roles", "consul-server=1,vault-server=3", "--channel", "source", "--timeout", "900"], env, 60 * 60_000);
  expect(up.status, `resin up failed:\n${up.stderr}`).toBe(0);
  const s = secrets();
  hostAgent = new Agent({ connect: { ca: s.ca.cert, cert: s.cli.cert, key: s.cli.key } });
}, 60 * 60_000);

afterAll(async () => {
  await resinAsync(["down", "--name", name], env).catch(() => undefined);
  killLeftovers(stateHome);
  expect(processesUnder(stateHome)).toEqual([]);
  await hostAgent?.close();
  rmSync(stateHome, { recursive: true, force: true });
});

describe("Vault 1.14.2 from its Go module, on three nodes", () => {
  it("is initialised by the host, unsealed on every node, with 3 raft voters", async () => {
    expect(secrets().vault, "the host recorded the unseal keys and root token").toBeDefined();
    const states = await Promise.all(VAULTS.map(health));
    expect(states.filter((s) => s === 200), `health per node: ${states.join(", ")}`).toHaveLength(1);
    expect(states.filter((s) => s === 429), `health per node: ${states.join(", ")}`).toHaveLength(2);
    const version = await vault(VAULTS[0]!, "GET", "/v1/sys/health");
    expect(version.body.version).toBe("1.14.2");
    const raft = await vault(await activeNode(), "GET", "/v1/sys/storage/raft/configuration");
    const servers = (raft.body.data as { config: { servers: { node_id: string; voter: boolean }[] } }).config.servers;
    expect(servers.map((x) => x.node_id).sort()).toEqual(VAULTS);
    expect(servers.every((x) => x.voter), JSON.stringify(servers)).toBe(true);
  });

  it("answers nobody without the host's client certificate, not even /v1/sys/health", async () => {
    const anonymous = new Agent({ connect: { ca: secrets().ca.cert } });
    try {
      await expect(request(`https://127.0.0.1:${portOf(VAULTS[0]!)}/v1/sys/init`, { dispatcher: anonymous, headersTimeout: 10_000 }).then((r) => r.statusCode)).rejects.toThrow(
        /certificate|handshake|socket|alert|ECONNRESET/i,
      );
    } finally {
      await anonymous.close();
    }
  });

  it("keeps a KV v2 secret, written and read over TLS", async () => {
    const active = await activeNode();
    const mount = await vault(active, "POST", "/v1/sys/mounts/secret", { type: "kv", options: { version: "2" } });
    expect([200, 204], JSON.stringify(mount.body)).toContain(mount.status);
    // A new KV v2 mount upgrades itself for a moment before it takes writes.
    await until("the KV v2 mount to take a write", 60_000, async () => ((await put("first", "hello", [active])) ? true : undefined));
    expect(await readAll(VAULTS.find((n) => n !== active)!)).toEqual([]);
  });

  it("SIGKILL of the active node's VM: a standby takes over and no acknowledged write is lost", async () => {
    const active = await activeNode();
    const others = VAULTS.filter((n) => n !== active);
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) {
        await put(`loop/${String(n).padStart(4, "0")}`, `v${n}`, [active, ...others]);
        n++;
        await sleep(200);
      }
    })();
    await until("ten acknowledged writes before the fault", 60_000, async () => (acked.size >= 10 ? true : undefined));
    const pid = Number(readFileSync(join(stateHome, "clusters", name, "nodes", active, "qemu.pid"), "utf8"));
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    const successor = await activeNode(others);
    const failover = (Date.now() - killedAt) / 1000;
    const before = acked.size;
    await until("a write acknowledged by the new active node", 60_000, async () => (acked.size > before + 3 ? true : undefined));
    writing = false;
    await writer;
    console.log(`vault failover: ${active} killed, ${successor} active after ${failover.toFixed(1)} s; ${acked.size} writes acknowledged`);
    expect(await readAll(successor)).toEqual([]);

    const start = await resinAsync(["start", active, "--name", name], env);
    expect(start.status, start.stderr).toBe(0);
    // `resin start` unseals the node itself: it rejoins as a standby.
    expect(await health(active)).toBe(429);
    expect(await readAll(active)).toEqual([]);
  });

  it("a runit restart of Vault (resin restart --service vault) comes back unsealed", async () => {
    const active = await activeNode();
    const node = VAULTS.find((x) => x !== active) ?? VAULTS[0]!;
    const r = await resinAsync(["restart", node, "--service", "vault", "--name", name], env);
    expect(r.status, r.stderr).toBe(0);
    expect([200, 429]).toContain(await health(node));
  });

  it("down, then up: every node unsealed again, the secrets kept", async () => {
    const down = await resinAsync(["down", "--name", name], env);
    expect(down.status, down.stderr).toBe(0);
    expect(processesUnder(stateHome)).toEqual([]);
    const up = await resinAsync(["up", "--name", name, "--timeout", "900"], env, 30 * 60_000);
    expect(up.status, up.stderr).toBe(0);
    const states = await Promise.all(VAULTS.map(health));
    expect(states.every((s) => s === 200 || s === 429), `health per node: ${states.join(", ")}`).toBe(true);
    expect(await readAll(await activeNode())).toEqual([]);
    const s = status();
    expect(s.nodes.filter((x) => x.state === "running")).toHaveLength(4);
  });
});
