// TEST DOUBLE — not Vault. Loopback HTTPS servers, one per "node", sharing one
// imitation of a Vault cluster with integrated storage, answering the endpoints Resin's
// host code calls the way Vault documents and implements them (http/sys_health.go,
// sys_init.go, sys_seal.go):
//
//   GET /v1/sys/health   200 active · 429 unsealed standby · 501 not initialised · 503 sealed
//   PUT /v1/sys/init     {"secret_shares","secret_threshold"} → {"keys","keys_base64","root_token"}
//                        400 {"errors":["Vault is already initialized"]}
//   PUT /v1/sys/unseal   {"key"} → {"type":"shamir","initialized","sealed","t","n","progress",…}
//                        400 {"errors":["Vault is not initialized"]} before init (or before a
//                        raft follower has joined), 400 {"errors":["Unseal failed, invalid key"]}
//                        when the threshold is reached with a share that is not one of the keys
//
//   GET /v1/sys/storage/raft/autopilot/state   (X-Vault-Token: the root token; 403 without it,
//                        503 on a sealed node) → {"data":{"healthy","failure_tolerance","leader",
//                        "voters","servers":{<id>:{"id","name","address","node_status","healthy",
//                        "status":"leader"|"voter"|"non-voter",…}}}}, as Vault's autopilot
//                        (vault/raft.go, sdk autopilot) reports it: a server is healthy while
//                        it is unsealed and in the raft; failure_tolerance = healthy voters
//                        minus quorum (voters / 2 + 1), never below 0
//   GET /v1/sys/storage/raft/configuration     (same token) → {"data":{"config":{"index",
//                        "servers":[{"node_id","address","leader","voter","protocol_version"}]}}}
//
// The node that is initialised leads; the others are raft followers that "join" (answer
// 501 and refuse keys) until `joinAfter` health requests after the leader was unsealed,
// then are sealed until given the keys, then unsealed standbys (429). Shamir is
// imitated: any `threshold` distinct shares from the set init made unseal. `nonVoters`
// join the raft as non-voters (as a node does until autopilot promotes it), and
// `restart(i)` is a node's Vault process starting again: in the raft still, sealed.
//
// Nothing here ran a real Vault: Vault 1.21 cannot be obtained on this machine.
import { randomBytes, randomUUID } from "node:crypto";
import { issueCertificate, vaultCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { serveHttps, type RunningDouble } from "./https.js";

export interface VaultDoubleOptions {
  ca: CertifiedKey;
  nodes: number;
  /** Refuse clients without a certificate the CA signed (real Vault: tls_require_and_verify_client_cert). */
  requireClientCert?: boolean;
  /** Health requests to a follower, after the leader is unsealed, before its raft join completes. */
  joinAfter?: number;
  /** Answer GET /v1/sys/health with this status (a broken node). */
  healthFailsWith?: number;
  /** Nodes (by index) that join the raft as non-voters. */
  nonVoters?: number[];
}

export interface VaultDoubleNode extends RunningDouble {
  name: string;
}

export interface VaultDouble {
  nodes: VaultDoubleNode[];
  state(): { initialized: boolean; keys: string[]; rootToken?: string; sealed: boolean[]; leader?: number };
  /** Node i's Vault starts again: its raft data kept, sealed, unseal progress lost. */
  restart(i: number): void;
  close(): Promise<void>;
}

const VERSION = "1.21.0";

export async function startVaultDouble(opts: VaultDoubleOptions): Promise<VaultDouble> {
  const cluster = { initialized: false, keys: [] as string[], shares: 0, threshold: 0, rootToken: undefined as string | undefined, leader: undefined as number | undefined, id: randomUUID() };
  const nodes = Array.from({ length: opts.nodes }, () => ({ joined: false, sealed: true, parts: [] as string[], pollsAfterLeader: 0 }));
  const leaderUnsealed = () => cluster.leader !== undefined && !nodes[cluster.leader]!.sealed;

  const sealStatus = (i: number) => {
    const n = nodes[i]!;
    const initialized = cluster.initialized && n.joined;
    return {
      type: "shamir",
      initialized,
      sealed: n.sealed,
      t: cluster.threshold,
      n: cluster.shares,
      progress: n.parts.length,
      nonce: n.parts.length > 0 ? "5f8d4b6e-8c63-7a5e-31a0-6d9e7a3b2c10" : "",
      version: VERSION,
      build_date: "2025-10-20T00:00:00Z",
      migration: false,
      recovery_seal: false,
      storage_type: "raft",
      ...(n.sealed ? {} : { cluster_name: "resin", cluster_id: cluster.id }),
    };
  };

  const names = Array.from({ length: opts.nodes }, (_, i) => `vault-double-${i + 1}`);
  const handler = (i: number) => (req: { method: string; path: string; body: string; headers: Record<string, string | string[] | undefined> }) => {
    const n = nodes[i]!;
    if (req.method === "GET" && req.path.startsWith("/v1/sys/health")) {
      if (opts.healthFailsWith) return { status: opts.healthFailsWith, body: { errors: ["internal error"] } };
      if (cluster.initialized && !n.joined && leaderUnsealed()) {
        n.pollsAfterLeader++;
        if (n.pollsAfterLeader > (opts.joinAfter ?? 0)) n.joined = true;
      }
      const initialized = cluster.initialized && n.joined;
      const body = {
        initialized,
        sealed: n.sealed,
        standby: !initialized || n.sealed || cluster.leader !== i,
        performance_standby: false,
        replication_performance_mode: "disabled",
        replication_dr_mode: "disabled",
        server_time_utc: Math.floor(Date.now() / 1000),
        version: VERSION,
        ...(n.sealed ? {} : { cluster_name: "resin", cluster_id: cluster.id }),
      };
      const status = !initialized ? 501 : n.sealed ? 503 : cluster.leader === i ? 200 : 429;
      return { status, body };
    }
    if ((req.method === "PUT" || req.method === "POST") && req.path === "/v1/sys/init") {
      if (cluster.initialized) return { status: 400, body: { errors: ["Vault is already initialized"] } };
      const { secret_shares: shares, secret_threshold: threshold } = JSON.parse(req.body || "{}") as { secret_shares?: number; secret_threshold?: number };
      if (!Number.isInteger(shares) || !Number.isInteger(threshold) || shares! < 1 || threshold! < 1 || threshold! > shares! || (threshold === 1 && shares! > 1)) {
        return { status: 400, body: { errors: ["invalid seal configuration: threshold must be between 1 and shares (and greater than one if shares > 1)"] } };
      }
      const raw = Array.from({ length: shares! }, () => randomBytes(33));
      cluster.initialized = true;
      cluster.shares = shares!;
      cluster.threshold = threshold!;
      cluster.keys = raw.map((b) => b.toString("hex"));
      cluster.rootToken = `hvs.${randomBytes(18).toString("base64url")}`;
      cluster.leader = i;
      n.joined = true;
      return { status: 200, body: { keys: cluster.keys, keys_base64: raw.map((b) => b.toString("base64")), root_token: cluster.rootToken } };
    }
    if ((req.method === "PUT" || req.method === "POST") && req.path === "/v1/sys/unseal") {
      const { key } = JSON.parse(req.body || "{}") as { key?: string };
      if (!key) return { status: 400, body: { errors: ["'key' must be specified in request body as JSON, or 'reset' set to true"] } };
      if (!/^[0-9a-f]+$/i.test(key) && !/^[A-Za-z0-9+/]+=*$/.test(key)) return { status: 400, body: { errors: ["'key' must be a valid hex or base64 string"] } };
      if (!cluster.initialized || !n.joined) return { status: 400, body: { errors: ["Vault is not initialized"] } };
      if (!n.sealed) return { status: 200, body: sealStatus(i) };
      if (!n.parts.includes(key)) n.parts.push(key);
      if (n.parts.length >= cluster.threshold) {
        const good = n.parts.every((p) => cluster.keys.includes(p));
        n.parts = [];
        if (!good) return { status: 400, body: { errors: ["Unseal failed, invalid key"] } };
        n.sealed = false;
      }
      return { status: 200, body: sealStatus(i) };
    }
    if (req.method === "GET" && (req.path === "/v1/sys/storage/raft/autopilot/state" || req.path === "/v1/sys/storage/raft/configuration")) {
      if (n.sealed) return { status: 503, body: { errors: ["Vault is sealed"] } };
      if (!cluster.rootToken || req.headers["x-vault-token"] !== cluster.rootToken) return { status: 403, body: { errors: ["permission denied"] } };
      const raft = nodes.map((m, j) => ({ m, j, id: names[j]! })).filter(({ m }) => m.joined);
      const voter = (j: number) => !(opts.nonVoters ?? []).includes(j);
      if (req.path === "/v1/sys/storage/raft/configuration") {
        const servers = raft.map(({ j, id }) => ({ node_id: id, address: `${id}:8201`, leader: cluster.leader === j, voter: voter(j), protocol_version: "3" }));
        return { status: 200, body: { data: { config: { index: 0, servers } } } };
      }
      const healthy = (m: (typeof nodes)[number]) => m.joined && !m.sealed;
      const voters = raft.filter(({ j }) => voter(j));
      const quorum = Math.floor(voters.length / 2) + 1;
      const servers = Object.fromEntries(
        raft.map(({ m, j, id }) => [
          id,
          { id, name: id, address: `${id}:8201`, node_status: m.sealed ? "left" : "alive", healthy: healthy(m), status: cluster.leader === j ? "leader" : voter(j) ? "voter" : "non-voter", last_term: 3, last_index: 42, meta: null },
        ]),
      );
      const data = {
        healthy: raft.every(({ m }) => healthy(m)),
        failure_tolerance: Math.max(0, voters.filter(({ m }) => healthy(m)).length - quorum),
        leader: names[cluster.leader ?? 0],
        voters: voters.map(({ id }) => id),
        servers,
      };
      return { status: 200, body: { data } };
    }
    return { status: 404, body: { errors: [] } };
  };

  const running: VaultDoubleNode[] = [];
  for (let i = 0; i < opts.nodes; i++) {
    const name = names[i]!;
    const served = await issueCertificate(opts.ca, vaultCertSpec({ name, address: "127.0.0.1" }));
    running.push({ name, ...(await serveHttps({ ca: opts.ca.cert, ...served, requireClientCert: opts.requireClientCert }, handler(i))) });
  }
  return {
    nodes: running,
    state: () => ({ initialized: cluster.initialized, keys: [...cluster.keys], rootToken: cluster.rootToken, sealed: nodes.map((n) => n.sealed), leader: cluster.leader }),
    restart: (i) => {
      nodes[i]!.sealed = true;
      nodes[i]!.parts = [];
    },
    close: async () => {
      await Promise.all(running.map((r) => r.close()));
    },
  };
}
