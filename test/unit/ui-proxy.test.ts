// resin ui's proxy, the parts that decide: who gets in (the one-time secret, the
// session cookie), what reaches the agent, and which node to move to.
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { request as undiciRequest } from "undici";
import { cliCertSpec, consulCertSpec, createCa, issueCertificate, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { kvPut } from "../../cli/cluster/consul.js";
import { loopbackAddress, startDevConsul, type DevConsul } from "../tools/consul-dev.js";
import type { ApiTls } from "../../cli/cluster/api.js";
import { admit, cookieName, LANDING_PATH, LOGIN_PATH, loginUrl, newGate, parseCookies, pickUpstream, randomToken, startUiProxy, withoutSessionCookie, type Upstream } from "../../cli/cluster/ui-proxy.js";
import { ResinError } from "../../cli/util/errors.js";

const host = (port: number) => `127.0.0.1:${port}`;

describe("the one-time secret and the session cookie", () => {
  it("makes 32 random bytes, URL-safe, different each time", () => {
    const a = randomToken();
    expect(Buffer.from(a, "base64url")).toHaveLength(32);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomToken()).not.toBe(a);
  });

  it("prints a URL on 127.0.0.1 with the secret", () => {
    const gate = newGate(8123, "s3cret", "sess");
    expect(loginUrl(gate)).toBe(`http://127.0.0.1:8123${LOGIN_PATH}?secret=s3cret`);
  });

  it("lets the first request with the secret in once: an HttpOnly, SameSite=Strict cookie and a redirect without the secret", () => {
    const gate = newGate(8123);
    const url = new URL(loginUrl(gate));
    const first = admit(gate, { url: url.pathname + url.search, host: host(8123) });
    expect(first).toEqual({ kind: "login", location: LANDING_PATH, setCookie: `resin_ui_8123=${gate.session}; Path=/; HttpOnly; SameSite=Strict` });
    expect(gate.spent).toBe(true);
    // The secret is spent: a second browser with it gets nothing.
    expect(admit(gate, { url: url.pathname + url.search, host: host(8123) }).kind).toBe("deny");
    // The browser that has the cookie goes on, and may follow the link again harmlessly.
    const cookie = `other=1; ${cookieName(8123)}=${gate.session}`;
    expect(admit(gate, { url: "/v1/catalog/nodes?index=5&wait=10m", host: host(8123), cookie })).toEqual({ kind: "pass" });
    expect(admit(gate, { url: url.pathname + url.search, host: host(8123), cookie })).toEqual({ kind: "login", location: LANDING_PATH });
  });

  it("refuses a wrong secret without spending the right one", () => {
    const gate = newGate(8123);
    expect(admit(gate, { url: `${LOGIN_PATH}?secret=${randomToken()}`, host: host(8123) }).kind).toBe("deny");
    expect(admit(gate, { url: `${LOGIN_PATH}?secret=${gate.secret.slice(0, -1)}`, host: host(8123) }).kind).toBe("deny");
    expect(admit(gate, { url: LOGIN_PATH, host: host(8123) }).kind).toBe("deny");
    expect(gate.spent).toBe(false);
    expect(admit(gate, { url: `${LOGIN_PATH}?secret=${gate.secret}`, host: host(8123) }).kind).toBe("login");
  });

  it("refuses every request without the session cookie, or with a wrong one or another port's", () => {
    const gate = newGate(8123);
    admit(gate, { url: `${LOGIN_PATH}?secret=${gate.secret}`, host: host(8123) });
    for (const cookie of [undefined, "", `${cookieName(8123)}=${randomToken()}`, `${cookieName(9000)}=${gate.session}`, `${cookieName(8123)}=`]) {
      expect(admit(gate, { url: "/ui/", host: host(8123), cookie }).kind, String(cookie)).toBe("deny");
    }
    // The secret itself is not a session.
    expect(admit(gate, { url: "/ui/", host: host(8123), cookie: `${cookieName(8123)}=${gate.secret}` }).kind).toBe("deny");
  });

  it("refuses a request addressed to another host name (DNS rebinding), even with the cookie", () => {
    const gate = newGate(8123);
    const cookie = `${cookieName(8123)}=${gate.session}`;
    expect(admit(gate, { url: "/ui/", host: "evil.example:8123", cookie }).kind).toBe("deny");
    expect(admit(gate, { url: `${LOGIN_PATH}?secret=${gate.secret}`, host: "evil.example:8123" }).kind).toBe("deny");
    expect(gate.spent).toBe(false);
    expect(admit(gate, { url: "/ui/", host: "localhost:8123", cookie }).kind).toBe("pass");
  });

  it("reads cookies as browsers send them, and keeps its own from the agent", () => {
    expect([...parseCookies(" a=1; b = x=y ;c=; bad; a=2")]).toEqual([["a", "1"], ["b", "x=y"], ["c", ""]]);
    expect(withoutSessionCookie(`a=1; ${cookieName(8123)}=zz; b=2`, 8123)).toBe("a=1; b=2");
    expect(withoutSessionCookie(`${cookieName(8123)}=zz`, 8123)).toBeUndefined();
    expect(withoutSessionCookie(`${cookieName(9000)}=zz`, 8123)).toBe(`${cookieName(9000)}=zz`);
    expect(withoutSessionCookie(undefined, 8123)).toBeUndefined();
  });
});

describe("choosing the upstream", () => {
  const nodes: Upstream[] = ["n-1", "n-2", "n-3"].map((node, i) => ({ node, url: `https://127.0.0.1:${9001 + i}` }));
  const names = (u?: Upstream) => u?.node;

  it("keeps the current node while it is running and answering", () => {
    expect(names(pickUpstream(nodes, "n-2", new Set()))).toBe("n-2");
  });

  it("moves to the next node after the one that failed, wrapping around", () => {
    expect(names(pickUpstream(nodes, "n-1", new Set(["n-1"])))).toBe("n-2");
    expect(names(pickUpstream(nodes, "n-3", new Set(["n-3"])))).toBe("n-1");
    expect(names(pickUpstream(nodes, "n-2", new Set(["n-2", "n-3"])))).toBe("n-1");
  });

  it("moves when the current node is no longer a candidate (stopped, or replaced by an upgrade)", () => {
    expect(names(pickUpstream(nodes.slice(1), "n-1", new Set(["n-1"])))).toBe("n-2");
    expect(names(pickUpstream(nodes, "old-1", new Set(["old-1"])))).toBe("n-1");
  });

  it("finds none when every candidate failed, or there are none", () => {
    expect(pickUpstream(nodes, "n-1", new Set(["n-1", "n-2", "n-3"]))).toBeUndefined();
    expect(pickUpstream([], "n-1", new Set(["n-1"]))).toBeUndefined();
  });
});

// The proxy itself between a client and agent doubles: real HTTPS servers on 127.0.0.1
// that demand a client certificate from the cluster CA, as Consul's API does.
describe("the proxy against agent doubles", () => {
  let ca: CertifiedKey;
  let served: CertifiedKey;
  let tls: ApiTls;
  const cleanup: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    ca = await createCa("ui");
    served = await issueCertificate(ca, { commonName: "server.dc1.consul", dnsNames: ["server.dc1.consul"], ipAddresses: ["127.0.0.1"], usages: ["serverAuth"] });
    const cli = await issueCertificate(ca, cliCertSpec("ui"));
    tls = { ca: ca.cert, cert: cli.cert, key: cli.key };
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  interface Double {
    up: Upstream;
    seen: IncomingHttpHeaders[];
    stop(): Promise<void>;
  }
  async function agentDouble(node: string, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Double> {
    const seen: IncomingHttpHeaders[] = [];
    const server = createHttpsServer({ ca: ca.cert, cert: served.cert, key: served.key, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      if (req.url !== "/v1/status/leader") seen.push(req.headers);
      if (req.url === "/v1/status/leader") res.end('"10.88.0.11:8300"');
      else answer(req, res);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const stop = () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    cleanup.push(stop);
    return { up: { node, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}` }, seen, stop };
  }

  async function login(url: string): Promise<{ base: string; cookie: string }> {
    const res = await undiciRequest(url);
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe("/ui/");
    const cookie = String(res.headers["set-cookie"]).split(";")[0]!;
    return { base: new URL(url).origin, cookie };
  }

  // What the proxy sends, header by header: only a double can show it (Consul's answers
  // for the same requests are checked against real Consul below).
  it("sends the browser's token as it is, adds none, and keeps its own cookie back", async () => {
    const agent = await agentDouble("n-1", (req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ path: req.url }));
    });
    const logs: string[] = [];
    const proxy = await startUiProxy({ service: "consul", port: 0, tls, first: agent.up, candidates: async () => [agent.up], log: (l) => logs.push(l) });
    cleanup.push(() => proxy.close());
    const { base, cookie } = await login(proxy.url);
    const withToken = await undiciRequest(`${base}/v1/kv/a?recurse`, { headers: { cookie: `${cookie}; theme=dark`, "x-consul-token": "the-users-token" } });
    expect(await withToken.body.json()).toEqual({ path: "/v1/kv/a?recurse" });
    const bare = await undiciRequest(`${base}/v1/catalog/nodes`, { headers: { cookie } });
    await bare.body.dump();
    expect(agent.seen[0]!["x-consul-token"]).toBe("the-users-token");
    expect(agent.seen[0]!.cookie).toBe("theme=dark");
    expect(agent.seen[1]!["x-consul-token"]).toBeUndefined();
    expect(agent.seen[1]!.cookie).toBeUndefined();
    // Without the cookie nothing reaches the agent.
    const denied = await undiciRequest(`${base}/v1/catalog/nodes`);
    expect(denied.statusCode).toBe(403);
    await denied.body.dump();
    expect(agent.seen).toHaveLength(2);
    expect(logs).toEqual([]);
  });

  it("streams a long poll: the headers and the first bytes arrive before the agent has finished", async () => {
    let finish!: () => void;
    const agent = await agentDouble("n-1", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write("[1,");
      finish = () => res.end("2]");
    });
    const proxy = await startUiProxy({ service: "consul", port: 0, tls, first: agent.up, candidates: async () => [agent.up], log: () => {} });
    cleanup.push(() => proxy.close());
    const { base, cookie } = await login(proxy.url);
    const res = await undiciRequest(`${base}/v1/health/service/consul?index=7&wait=10m`, { headers: { cookie } });
    expect(res.statusCode).toBe(200);
    const reader = res.body[Symbol.asyncIterator]();
    expect(String((await reader.next()).value)).toBe("[1,");
    finish();
    expect(String((await reader.next()).value)).toBe("2]");
  });

  it("refuses a port that is in use with a one-line error naming it", async () => {
    const agent = await agentDouble("n-1", (_req, res) => res.end());
    const first = await startUiProxy({ service: "consul", port: 0, tls, first: agent.up, candidates: async () => [agent.up], log: () => {} });
    cleanup.push(() => first.close());
    const err = await startUiProxy({ service: "consul", port: first.port, tls, first: agent.up, candidates: async () => [agent.up], log: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResinError);
    expect((err as ResinError).message).toBe(`127.0.0.1:${first.port} is in use`);
  });
});

// The proxy between a client and real Consul 1.8.7 dev agents (HTTPS only, verified
// client certificates, default-deny ACLs): what a browser meets through it.
describe("the proxy against real Consul 1.8.7", () => {
  const management = "ui-proxy-management";
  let tls: ApiTls & { cert: string; key: string };
  const agents: { dev: DevConsul; up: Upstream }[] = [];
  beforeAll(async () => {
    const ca = await createCa("ui-real");
    const cli = await issueCertificate(ca, cliCertSpec("ui-real"));
    tls = { ca: ca.cert, cert: cli.cert, key: cli.key };
    for (const node of ["n-1", "n-2"]) {
      const address = loopbackAddress();
      const served = await issueCertificate(ca, consulCertSpec({ name: node, address }, "dc1", "server"));
      const dev = await startDevConsul(inject("consul187"), { address, caCert: ca.cert, served, managementToken: management });
      agents.push({ dev, up: { node, url: `https://${address}:${dev.httpsPort}` } });
      const ep = { host: address, port: dev.httpsPort, access: { ...tls, token: management } };
      // A dev server elects itself within seconds; the guard is for a hang.
      const deadline = Date.now() + 45_000;
      for (;;) {
        const wrote = await kvPut(ep, "ui/where", `from ${node}`).then(() => true, () => false);
        if (wrote) break;
        if (Date.now() > deadline) throw new Error(`Consul 1.8.7 dev agent ${node} took no write in 45 s:\n${dev.log()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }, 120_000);
  afterAll(async () => {
    for (const a of agents) await a.dev.stop();
  });

  it("passes the browser's token through and adds none: Consul answers 200 with it and 403 without; nothing is cached", async () => {
    const proxy = await startUiProxy({ service: "consul", port: 0, tls, first: agents[0]!.up, candidates: async () => agents.map((a) => a.up), log: () => {} });
    try {
      const res = await undiciRequest(proxy.url);
      const cookie = String(res.headers["set-cookie"]).split(";")[0]!;
      await res.body.dump();
      const base = new URL(proxy.url).origin;
      const withToken = await undiciRequest(`${base}/v1/kv/ui/where?raw`, { headers: { cookie, "x-consul-token": management } });
      expect(withToken.statusCode).toBe(200);
      expect(await withToken.body.text()).toBe("from n-1");
      expect(withToken.headers["cache-control"]).toBe("no-store");
      expect(Number(withToken.headers["x-consul-index"])).toBeGreaterThan(0);
      const without = await undiciRequest(`${base}/v1/kv/ui/where?raw`, { headers: { cookie } });
      expect(without.statusCode).toBe(403);
      expect(await without.body.text()).toMatch(/Permission denied|ACL not found/);
    } finally {
      await proxy.close();
    }
  });

  it("moves to another running node when its node stops answering, says so, and retries the request there", async () => {
    const logs: string[] = [];
    let running = agents.map((a) => a.up);
    const proxy = await startUiProxy({ service: "consul", port: 0, tls, first: agents[0]!.up, candidates: async () => running, log: (l) => logs.push(l), probeIntervalMs: 60_000 });
    try {
      const res = await undiciRequest(proxy.url);
      const cookie = String(res.headers["set-cookie"]).split(";")[0]!;
      await res.body.dump();
      const get = async () => (await undiciRequest(`${new URL(proxy.url).origin}/v1/kv/ui/where?raw`, { headers: { cookie, "x-consul-token": management } })).body.text();
      expect(await get()).toBe("from n-1");
      await agents[0]!.dev.stop();
      running = [agents[1]!.up];
      expect(await get()).toBe("from n-2");
      expect(proxy.current().node).toBe("n-2");
      expect(logs, logs.join("\n")).toHaveLength(1);
      expect(logs[0]).toMatch(/^resin ui: consul on n-1 stopped answering \((ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)\); now through n-2 \(moved in \d+\.\d s\)$/);
    } finally {
      await proxy.close();
    }
  });
});
