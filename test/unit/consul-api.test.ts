import { describe, it, expect, beforeAll, afterEach } from "vitest";
import { fileURLToPath } from "node:url";
import { createCa, issueCertificate, cliCertSpec, consulCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { consulServerCount, consulView, ensureToken, kvGet, kvPut, rawStatus, type ConsulAccess, type ConsulEndpoint } from "../../cli/cluster/consul.js";
import type { NodeState } from "../../cli/state/state.js";
import { loadRole } from "../../cli/spec/load.js";
import type { Role } from "../../cli/spec/load.js";
import { serveHttps, type Handler, type RunningDouble } from "../doubles/https.js";

// Consul's host-side calls over the one API client, against a loopback HTTPS server
// that requires a CA-signed client certificate and answers a few endpoints the way
// Consul documents them. Not a Consul: enough to prove the product module's wiring
// (address, TLS, X-Consul-Token, status handling) over real HTTP.

const REPO = fileURLToPath(new URL("../../", import.meta.url));

let ca: CertifiedKey;
let served: CertifiedKey;
let access: ConsulAccess;
beforeAll(async () => {
  ca = await createCa("consul-api");
  served = await issueCertificate(ca, consulCertSpec({ name: "consul-1", address: "127.0.0.1" }, "dc1", "server"));
  const cli = await issueCertificate(ca, cliCertSpec("consul-api"));
  access = { ca: ca.cert, cert: cli.cert, key: cli.key, token: "management-token" };
});

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function consulDouble(handler: Handler): Promise<RunningDouble & { ep: ConsulEndpoint }> {
  const double = await serveHttps({ ca: ca.cert, cert: served.cert, key: served.key, requireClientCert: true }, handler);
  cleanup.push(() => double.close());
  return { ...double, ep: { port: Number(new URL(double.url).port), access } };
}

describe("Consul over the API client", () => {
  it("reads leader and peers with the management token over mTLS", async () => {
    const consul = await consulDouble((r) =>
      r.path === "/v1/status/leader"
        ? { status: 200, body: '"10.88.0.11:8300"', contentType: "application/json" }
        : { status: 200, body: ["10.88.0.11:8300", "10.88.0.12:8300"] },
    );
    expect(await consulView(consul.ep)).toEqual({ leader: "10.88.0.11:8300", peers: ["10.88.0.11:8300", "10.88.0.12:8300"] });
    expect(consul.requests.map((r) => r.path)).toEqual(["/v1/status/leader", "/v1/status/peers"]);
    expect(consul.requests.every((r) => r.authorizedClient && r.headers["x-consul-token"] === "management-token")).toBe(true);
  });

  it("reports an answer that is not JSON as the view's error, naming the request", async () => {
    const consul = await consulDouble(() => ({ status: 200, body: "10.88.0.11:8300" }));
    expect((await consulView(consul.ep)).error).toBe(`Consul at https://127.0.0.1:${consul.ep.port} answered GET /v1/status/leader with something other than JSON: 10.88.0.11:8300`);
  });

  it("says 'not answering yet' while nothing listens, and the answer while there is no leader", async () => {
    const gone = await consulDouble(() => ({ status: 200, body: "{}" }));
    await gone.close();
    expect(await consulView(gone.ep, 1000)).toEqual({ error: "not answering yet" });
    const leaderless = await consulDouble(() => ({ status: 500, body: "No cluster leader" }));
    expect(await consulView(leaderless.ep)).toEqual({ error: "500 No cluster leader" });
  });

  it("puts and gets KV values as raw bodies", async () => {
    const kv = new Map<string, string>();
    const consul = await consulDouble((r) => {
      const key = r.path.replace(/^\/v1\/kv\//, "").replace(/\?.*$/, "");
      if (r.method === "PUT") {
        kv.set(key, r.body);
        return { status: 200, body: "true" };
      }
      return kv.has(key) ? { status: 200, body: kv.get(key)! } : { status: 404, body: "" };
    });
    await kvPut(consul.ep, "resin/a b", "value 1");
    expect(await kvGet(consul.ep, "resin/a b")).toBe("value 1");
    expect(await kvGet(consul.ep, "resin/missing")).toBeUndefined();
    expect(consul.requests[0]).toMatchObject({ method: "PUT", path: "/v1/kv/resin/a%20b", body: "value 1" });
    expect(consul.requests[0]!.headers["content-type"]).toBeUndefined();
  });

  it("rawStatus sends no token unless given one", async () => {
    const consul = await consulDouble((r) => (r.headers["x-consul-token"] === "management-token" ? { status: 200, body: [] } : { status: 403, body: "Permission denied" }));
    expect(await rawStatus(consul.ep, "/v1/acl/policies")).toBe(403);
    expect(await rawStatus(consul.ep, "/v1/acl/policies", "management-token")).toBe(200);
  });

  it("ensureToken creates the policy and the token with our SecretID once", async () => {
    const tokens = new Set<string>();
    const policies: string[] = [];
    const consul = await consulDouble((r) => {
      if (r.path === "/v1/acl/token/self") return tokens.has(String(r.headers["x-consul-token"])) ? { status: 200, body: {} } : { status: 403, body: "ACL not found" };
      if (r.path === "/v1/acl/policies") return { status: 200, body: policies.map((Name) => ({ Name })) };
      if (r.path === "/v1/acl/policy") {
        policies.push((JSON.parse(r.body) as { Name: string }).Name);
        return { status: 200, body: {} };
      }
      tokens.add((JSON.parse(r.body) as { SecretID: string }).SecretID);
      return { status: 200, body: {} };
    });
    expect(await ensureToken(consul.ep, "resin-agent", 'node_prefix "" { policy = "write" }', "agent-secret")).toBe("created");
    expect(await ensureToken(consul.ep, "resin-agent", 'node_prefix "" { policy = "write" }', "agent-secret")).toBe("existed");
    expect(policies).toEqual(["resin-agent"]);
    const put = consul.requests.find((r) => r.path === "/v1/acl/token")!;
    expect(put.headers["x-consul-token"]).toBe("management-token");
    expect(JSON.parse(put.body)).toEqual({ SecretID: "agent-secret", Description: "resin: resin-agent", Policies: [{ Name: "resin-agent" }] });
  });
});

describe("consulServerCount", () => {
  it("counts the nodes whose role runs Consul as a server", async () => {
    const roles = new Map<string, Role>();
    for (const name of ["consul-server", "nomad-client", "vault-server"]) roles.set(name, await loadRole(REPO, name, "official"));
    const node = (name: string, role: string) => ({ name, role }) as NodeState;
    const nodes = [node("a", "consul-server"), node("b", "consul-server"), node("c", "nomad-client"), node("d", "vault-server"), node("e", "consul-server")];
    expect(consulServerCount(nodes, roles)).toBe(3);
    expect(consulServerCount(nodes.filter((n) => n.role !== "consul-server"), roles)).toBe(0);
  });
});
