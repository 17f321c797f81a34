import { nodeState } from "../../cli/cluster/create.js";
import { describe, it, expect, beforeAll, afterAll, afterEach } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSecrets, type Secrets, type ServiceRoles } from "../../cli/bootstrap/secrets.js";
import { planCluster, type NodePlan } from "../../cli/bootstrap/plan.js";
import { consulAgentToken } from "../../cli/bootstrap/node-secrets.js";
import { consulAccess, consulKeys, consulView } from "../../cli/cluster/consul.js";
import { bootstrapConsulAcl, localTargets } from "../../cli/cluster/bootstrap.js";
import { waitForQuorum } from "../../cli/cluster/health.js";
import { clusterStatus } from "../../cli/commands/status.js";
import { envCommand } from "../../cli/commands/env.js";
import { bootstrapCommand } from "../../cli/commands/bootstrap.js";
import { clusterHandle, type ClusterHandle, type ClusterState, type NodeState } from "../../cli/state/state.js";
import type { Machines } from "../../cli/provider/machine.js";
import { serveHttps, type RecordedRequest, type RunningDouble } from "../doubles/https.js";

// Finding 1 of issue #21: the host sent Consul's management token to the first node
// with Consul's HTTPS port, which could be a client agent (a Nomad client, where
// workloads run), and TLS could not tell: every agent certificate carried 127.0.0.1
// with serverAuth and the host set no server name. Here each node's port is a REAL TLS
// listener on loopback presenting a certificate made by Resin's real PKI code, and the
// host's real call sites (the quorum wait, `resin status`, ACL bootstrap, `resin env`,
// `resin bootstrap --consul`) talk to it. The listener records what it was sent and
// answers Consul's status, autopilot and ACL endpoints as a server would: it is a TEST
// DOUBLE of Consul's HTTP API, because a real Consul does not show which tokens it got.

const DC = "dc1";
const MANAGEMENT = "x-consul-token";
const ROLES: Record<string, ServiceRoles> = { "consul-server": { consul: "server" }, "nomad-client": { consul: "client", nomad: "client" } };

let home: string;
let secrets: Secrets;
let nodes: NodePlan[];
const listeners: RunningDouble[] = [];

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), "resin-consul-identity-"));
  process.env.RESIN_STATE_HOME = home;
  const plan = planCluster("demo", ["consul-server", "nomad-client"]);
  nodes = plan.nodes;
  secrets = await createSecrets(demo().secrets, plan, (n) => ROLES[n.role]!);
});
afterEach(async () => {
  for (const l of listeners.splice(0)) await l.close();
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
  delete process.env.RESIN_STATE_HOME;
});

/** A Consul-like listener presenting `pair`, requiring a client certificate from Consul's CA as Consul does. */
async function listener(pair: { cert: string; key: string }): Promise<RunningDouble> {
  const leader = `${nodes[0]!.address}:8300`;
  const l = await serveHttps({ ca: secrets.cas.consul.cert, ...pair, requireClientCert: true }, (req) => {
    if (req.path === "/v1/status/leader") return { status: 200, body: JSON.stringify(leader), contentType: "application/json" };
    if (req.path === "/v1/status/peers") return { status: 200, body: [leader] };
    if (req.path === "/v1/operator/autopilot/health") {
      return { status: 200, body: { Healthy: true, FailureTolerance: 0, Servers: [{ Name: nodes[0]!.name, Address: leader, Leader: true, Voter: true, Healthy: true, LastIndex: 10 }] } };
    }
    if (req.path === "/v1/health/state/any") return { status: 200, body: [] };
    if (req.path === "/v1/acl/policies") return { status: 200, body: [] };
    if (req.path === "/v1/acl/token/self") return { status: 403, body: "ACL not found" };
    if (req.method === "PUT" && (req.path === "/v1/acl/policy" || req.path === "/v1/acl/token")) return { status: 200, body: {} };
    return { status: 404, body: "" };
  });
  listeners.push(l);
  return l;
}

const portOf = (l: RunningDouble) => Number(new URL(l.url).port);
const tokens = (l: RunningDouble) => l.requests.map((r: RecordedRequest) => r.headers[MANAGEMENT]);

/** The cluster's handle, under this file's RESIN_STATE_HOME (set in beforeAll). */
const demo = () => clusterHandle("demo");

/** The cluster's state with each node's Consul port forwarded to a listener. */
async function clusterWith(ports: number[]): Promise<ClusterState> {
  const state: ClusterState = {
    version: 1,
    name: "demo",
    channel: "official",
    datacenter: DC,
    subnet: "10.88.0.0/24",
    network: { mode: "static" },
    nodes: nodes.map((n, i): NodeState => ({ ...nodeState(n, `sha256:${"ab".repeat(32)}`, { memory_mib: 512, cpus: 1 }), ports: { "consul.https": ports[i]! } })),
  };
  await demo().write(state);
  return state;
}

/** Every node runs (the machines are not what is tested here). */
const running = (which: (node: string) => boolean = () => true) =>
  ({
    status: async (_cluster: ClusterHandle, node: NodeState) => ({ state: which(node.name) ? "running" : "stopped" }),
    consoleBytes: async () => 1,
    consoleTail: async () => "",
    logFiles: () => ({ console: "console.log", stderr: "stderr.log" }),
    forgetAccel: async () => {},
  }) as unknown as Machines;

const quiet = () => {};

describe("the management token goes only to a listener that proves it is a Consul server", () => {
  it("a client agent's port gets its own agent token only: quorum wait, resin status, ACL bootstrap", async () => {
    const server = await listener(secrets.nodes["demo-1"]!.consul!);
    const client = await listener(secrets.nodes["demo-2"]!.consul!);
    const state = await clusterWith([portOf(server), portOf(client)]);
    const keys = consulKeys(secrets, DC);

    await waitForQuorum(state, { timeoutMs: 10_000, log: quiet, keys, consulServers: 1, machines: running(), cluster: demo() });
    const status = await clusterStatus(demo(), running());
    expect(status.nodes.map((n) => n.consul?.leader)).toEqual([`${nodes[0]!.address}:8300`, `${nodes[0]!.address}:8300`]);
    expect(status.healthy).toBe(true);
    const targets = localTargets(state, keys);
    expect(targets.consul?.port).toBe(portOf(server));
    await bootstrapConsulAcl(targets.consul!, secrets, [{ name: "demo-1", registrations: [] }, { name: "demo-2", registrations: [] }], quiet);

    // The client agent was asked (so the check below is not vacuous) and never got the management token.
    expect(client.requests.length).toBeGreaterThan(0);
    expect(tokens(client)).not.toContain(secrets.consul.managementToken);
    expect(new Set(tokens(client))).toEqual(new Set([consulAgentToken(secrets, "demo-2")]));
    // The server got it, for what only it may answer (autopilot, the ACL system).
    expect(tokens(server)).toContain(secrets.consul.managementToken);
    expect(server.requests.filter((r) => r.path.startsWith("/v1/acl/")).length).toBeGreaterThan(0);
    expect(client.requests.filter((r) => r.path.startsWith("/v1/acl/") || r.path.startsWith("/v1/operator/"))).toEqual([]);
  });

  it.each([
    ["a client agent's certificate (client.dc1.consul, serverAuth, 127.0.0.1)", () => secrets.nodes["demo-2"]!.consul!],
    ["Nomad's client certificate for Consul", () => secrets.nodes["demo-2"]!.nomadConsul!],
  ])("where a server is expected, a listener with %s is sent nothing at all", async (_what, pair) => {
    const impostor = await listener(pair());
    const client = await listener(secrets.nodes["demo-2"]!.consul!);
    const state = await clusterWith([portOf(impostor), portOf(client)]);
    const keys = consulKeys(secrets, DC);

    await expect(waitForQuorum(state, { timeoutMs: 1500, log: quiet, keys, consulServers: 1, machines: running(), cluster: demo() })).rejects.toThrow(/no Consul quorum/);
    const status = await clusterStatus(demo(), running());
    expect(status.nodes[0]!.consul?.error).toMatch(/TLS failed|certificate/i);
    await expect(bootstrapConsulAcl({ port: portOf(impostor), access: consulAccess(secrets, DC), server: true }, secrets, [], quiet, 1000)).rejects.toThrow(/could not create the Consul ACL tokens/);
    await expect(bootstrapCommand({ cluster: demo(), consul: `127.0.0.1:${portOf(impostor)}`, vault: [], log: quiet })).rejects.toThrow(/could not create the Consul ACL tokens/);
    // The TLS handshake failed on the name before a single header was sent.
    expect(impostor.requests).toEqual([]);
  });

  it("a listener with another product's certificate (a Nomad server's, which is serverAuth too) is sent nothing", async () => {
    const plan = planCluster("demo", ["control-plane"]);
    const other = await createSecrets(join(home, "other-secrets.json"), plan, () => ({ consul: "server", nomad: "server", vault: true }));
    // The same cluster's CAs would not sign another product's certificate; a Nomad server
    // certificate from this bundle's own Nomad CA is the closest thing an attacker holds.
    const nomadServer = await (await import("../../cli/bootstrap/secrets.js")).issueNodeCertificates(secrets.cas, plan, plan.nodes[0]!, { nomad: "server" });
    for (const pair of [nomadServer.nomad!, other.nodes["demo-1"]!.consul!]) {
      const impostor = await listener(pair);
      const ep = { port: portOf(impostor), access: consulAccess(secrets, DC), server: true };
      expect((await consulView(ep)).error).toMatch(/TLS failed/);
      expect(impostor.requests).toEqual([]);
    }
  });
});

describe("resin env", () => {
  it("points the consul CLI at a server only, with the server name and Consul's own CA", async () => {
    const server = await listener(secrets.nodes["demo-1"]!.consul!);
    const client = await listener(secrets.nodes["demo-2"]!.consul!);
    await clusterWith([portOf(server), portOf(client)]);
    const lines = (text: string) => Object.fromEntries(text.trim().split("\n").map((l) => l.replace(/^export /, "").split("=").map((v) => v.replace(/^'|'$/g, ""))));
    const env = lines(await envCommand(demo(), {}, running()));
    expect(env.CONSUL_HTTP_ADDR).toBe(`https://127.0.0.1:${portOf(server)}`);
    expect(env.CONSUL_TLS_SERVER_NAME).toBe("server.dc1.consul");
    expect(env.CONSUL_HTTP_TOKEN).toBe(secrets.consul.managementToken);
    expect(readFileSync(env.CONSUL_CACERT!, "utf8")).toBe(secrets.cas.consul.cert);
    expect(readFileSync(env.CONSUL_CLIENT_CERT!, "utf8")).toBe(secrets.cli.consul.cert);
    // With only the client agent running, no Consul line (and no management token) at all.
    await expect(envCommand(demo(), {}, running((n) => n === "demo-2"))).rejects.toThrow(/has no running server/);
  });
});
