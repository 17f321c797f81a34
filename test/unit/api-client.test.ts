import { describe, it, expect, beforeAll, afterEach } from "vitest";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { createCa, issueCertificate, cliCertSpec, type CertifiedKey, type LeafSpec } from "../../cli/bootstrap/pki.js";
import { Again, ApiClient, ApiUnreachable, noLeader, patience, retry, type ApiTls } from "../../cli/cluster/api.js";
import { ResinError } from "../../cli/util/errors.js";
import { freeLoopbackPort } from "../../cli/provider/qemu/ports.js";

// The one cluster API client (cli/cluster/api.ts) against real HTTPS servers on
// 127.0.0.1 that require a client certificate signed by the cluster CA, as agents with
// verify_incoming do. Every certificate comes from Resin's own PKI (cli/bootstrap/pki.ts).

let ca: CertifiedKey;
let served: CertifiedKey;
let cli: CertifiedKey;
let tls: ApiTls;
beforeAll(async () => {
  ca = await createCa("api");
  served = await issueCertificate(ca, { commonName: "agent.api.test", dnsNames: ["agent.api.test"], ipAddresses: ["127.0.0.1"], usages: ["serverAuth"] });
  cli = await issueCertificate(ca, cliCertSpec("api"));
  tls = { ca: ca.cert, cert: cli.cert, key: cli.key };
});

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
  authorized: boolean;
}

interface TestServer {
  address: string;
  port: number;
  seen: Seen[];
  close(): Promise<void>;
}

type Answer = { status: number; body: string; contentType?: string } | "never";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** An HTTPS server on 127.0.0.1 (`port`, or a free one) that refuses clients without a CA-signed certificate. */
async function serve(answer: (req: Seen) => Answer, opts: { port?: number; cert?: CertifiedKey; caCert?: string } = {}): Promise<TestServer> {
  const seen: Seen[] = [];
  const cert = opts.cert ?? served;
  const server: Server = createServer(
    { ca: opts.caCert ?? ca.cert, cert: cert.cert, key: cert.key, requestCert: true, rejectUnauthorized: true },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const s: Seen = {
          method: req.method ?? "",
          path: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          authorized: (req.socket as TLSSocket).authorized === true,
        };
        seen.push(s);
        const a = answer(s);
        if (a === "never") return; // hold the request open: the client's timeout must end it
        res.writeHead(a.status, { "content-type": a.contentType ?? "application/json" });
        res.end(a.body);
      });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const running: TestServer = {
    address: `https://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  cleanup.push(() => running.close());
  return running;
}


async function rejection(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "expected a rejection").toBeInstanceOf(Error);
  return err as Error;
}

const ok = (body: unknown): Answer => ({ status: 200, body: JSON.stringify(body) });

describe("ApiClient over mTLS", () => {
  it("sends the request with the token header and the client certificate, and parses the JSON answer", async () => {
    const server = await serve((r) => ok({ echo: r.path }));
    const client = new ApiClient({ address: server.address, tls, token: { header: "x-nomad-token", value: "s3cret" } });
    const res = await client.get("/v1/agent/self");
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ echo: "/v1/agent/self" });
    expect(server.seen).toHaveLength(1);
    expect(server.seen[0]).toMatchObject({ method: "GET", authorized: true });
    expect(server.seen[0]!.headers["x-nomad-token"]).toBe("s3cret");
  });

  it("is refused by a server that requires a client certificate when it presents none", async () => {
    const server = await serve(() => ok({}));
    const err = await rejection(new ApiClient({ address: server.address, tls: { ca: ca.cert }, name: "Nomad" }).get("/v1/agent/self"));
    expect(err).toBeInstanceOf(ApiUnreachable);
    expect(err.message).toContain(`cannot reach Nomad at ${server.address}`);
    expect(err.message).toMatch(/TLS|certificate|closed the connection|ECONNRESET|socket/i);
    expect(server.seen).toHaveLength(0);
    // The same server answers the same request made with the certificate.
    expect((await new ApiClient({ address: server.address, tls }).get("/v1/agent/self")).status).toBe(200);
    expect(server.seen).toHaveLength(1);
  });

  it("is refused when its certificate comes from another CA", async () => {
    const server = await serve(() => ok({}));
    const otherCa = await createCa("other");
    const stranger = await issueCertificate(otherCa, cliCertSpec("other"));
    await rejection(new ApiClient({ address: server.address, tls: { ca: ca.cert, cert: stranger.cert, key: stranger.key } }).get("/"));
    expect(server.seen).toHaveLength(0);
  });

  it("refuses a server whose certificate is not from the cluster CA, as a TLS failure that waiting does not fix", async () => {
    const otherCa = await createCa("other");
    const impostor = await issueCertificate(otherCa, { commonName: "impostor", dnsNames: [], ipAddresses: ["127.0.0.1"], usages: ["serverAuth"] });
    const server = await serve(() => ok({}), { cert: impostor });
    const err = await rejection(new ApiClient({ address: server.address, tls }).get("/"));
    expect(err).toBeInstanceOf(ApiUnreachable);
    expect((err as ApiUnreachable).transient).toBe(false);
    expect(err.message).toMatch(/TLS failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
    expect(server.seen).toHaveLength(0);
  });

  it("checks the server's certificate against serverName when the address is not in it", async () => {
    const named = await issueCertificate(ca, { commonName: "server.dc1.consul", dnsNames: ["server.dc1.consul"], ipAddresses: [], usages: ["serverAuth"] });
    const server = await serve(() => ok(true), { cert: named });
    const err = await rejection(new ApiClient({ address: server.address, tls }).get("/"));
    expect(err.message).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID/);
    const res = await new ApiClient({ address: server.address, tls: { ...tls, serverName: "server.dc1.consul" } }).get("/");
    expect(res.json()).toBe(true);
  });

  it("sends a string body as it is and anything else as JSON; a token of '' sends no header", async () => {
    const server = await serve(() => ok(true));
    const client = new ApiClient({ address: server.address, tls, token: { header: "x-consul-token", value: "mgmt" } });
    await client.put("/v1/kv/a", { body: "raw value" });
    await client.post("/v1/acl/policy", { body: { Name: "n" }, token: "" });
    await client.delete("/v1/kv/a", { token: "other" });
    expect(server.seen.map((s) => [s.method, s.body, s.headers["content-type"], s.headers["x-consul-token"]])).toEqual([
      ["PUT", "raw value", undefined, "mgmt"],
      ["POST", '{"Name":"n"}', "application/json", undefined],
      ["DELETE", "", undefined, "other"],
    ]);
  });

  it("names the agent and the request when an answer is not JSON", async () => {
    const server = await serve(() => ({ status: 200, body: "<html>proxy</html>", contentType: "text/html" }));
    const res = await new ApiClient({ address: server.address, tls, name: "Vault" }).get("/v1/sys/health");
    expect(res.text).toBe("<html>proxy</html>");
    const err = (() => {
      try {
        res.json();
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ResinError);
    expect(err!.message).toBe(`Vault at ${server.address} answered GET /v1/sys/health with something other than JSON: <html>proxy</html>`);
  });

  it("refuses an address that is not http(s)://host:port", () => {
    expect(() => new ApiClient({ address: "127.0.0.1:8501" })).toThrow(ResinError);
    expect(() => new ApiClient({ address: "https://127.0.0.1:8501/v1" })).toThrow(/not http\(s\):\/\/host:port/);
  });
});

describe("timeouts", () => {
  it("ends a request the agent does not answer, naming the address, as transient", async () => {
    const server = await serve(() => "never");
    const client = new ApiClient({ address: server.address, tls, name: "Consul", timeoutMs: 300 });
    const started = Date.now();
    const err = await rejection(client.get("/v1/status/leader"));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(ApiUnreachable);
    expect(err.message).toBe(`cannot reach Consul at ${server.address}: no answer within 0.3s (UND_ERR_HEADERS_TIMEOUT)`);
    expect((err as ApiUnreachable).transient).toBe(true);
    expect(server.seen).toHaveLength(1);
  });

  it("lets one request's timeout override the client's", async () => {
    const server = await serve(() => "never");
    const client = new ApiClient({ address: server.address, tls, timeoutMs: 60_000 });
    const err = await rejection(client.get("/", { timeoutMs: 200 }));
    expect(err.message).toContain(`${server.address}: no answer within 0.2s`);
  });
});

describe("retry", () => {
  it("waits while nothing listens (connection refused), then succeeds once the agent is up", async () => {
    const port = await freeLoopbackPort();
    const client = new ApiClient({ address: `https://127.0.0.1:${port}`, tls });
    const waits: string[] = [];
    let attempts = 0;
    let server: TestServer | undefined;
    const wait = patience({ timeoutMs: 10_000, intervalMs: 50, onWait: (why) => waits.push(why), expired: (why) => new ResinError(`gave up: ${why}`) });
    const res = await retry(wait, async () => {
      attempts++;
      // The agent comes up after two refused attempts.
      if (attempts === 3) server = await serve(() => ok({ up: true }), { port });
      return client.get("/v1/status/leader");
    });
    expect(res.json()).toEqual({ up: true });
    expect(attempts).toBe(3);
    expect(server!.seen).toHaveLength(1);
    expect(waits).toHaveLength(1); // said once, though it waited several times
    expect(waits[0]).toMatch(/^not answering yet \(.*ECONNREFUSED.*\)$/);
  });

  it("gives up at the deadline with the last reason for waiting", async () => {
    const port = await freeLoopbackPort();
    const client = new ApiClient({ address: `https://127.0.0.1:${port}`, tls, name: "Nomad" });
    const started = Date.now();
    const err = await rejection(
      retry(
        patience({ timeoutMs: 300, intervalMs: 50, expired: (why) => new ResinError(`Nomad did not answer within 0.3s: ${why}`) }),
        () => client.get("/"),
        (e) => `nomad-1 is not answering (${e.detail})`,
      ),
    );
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err.message).toMatch(/^Nomad did not answer within 0\.3s: nomad-1 is not answering \(.*ECONNREFUSED/);
  });

  it("tries again while the answer is 'No cluster leader', and stops at the first real answer", async () => {
    let n = 0;
    const server = await serve(() => (++n <= 2 ? { status: 500, body: "No cluster leader", contentType: "text/plain" } : ok({ leader: "10.0.0.1:8300" })));
    const client = new ApiClient({ address: server.address, tls });
    const waits: string[] = [];
    const res = await retry(patience({ timeoutMs: 10_000, intervalMs: 20, onWait: (w) => waits.push(w), expired: (w) => new Error(w) }), async () => {
      const r = await client.get("/v1/status/leader");
      return noLeader(r) ? new Again("no cluster leader yet") : r;
    });
    expect(res.json()).toEqual({ leader: "10.0.0.1:8300" });
    expect(server.seen).toHaveLength(3);
    expect(waits).toEqual(["no cluster leader yet"]);
  });

  it("does not retry a failure that waiting cannot fix", async () => {
    const otherCa = await createCa("other");
    const impostor = await issueCertificate(otherCa, { commonName: "impostor", dnsNames: [], ipAddresses: ["127.0.0.1"], usages: ["serverAuth"] } satisfies LeafSpec);
    const server = await serve(() => ok({}), { cert: impostor });
    const client = new ApiClient({ address: server.address, tls });
    let attempts = 0;
    const err = await rejection(
      retry(patience({ timeoutMs: 10_000, intervalMs: 20, expired: (w) => new Error(w) }), () => {
        attempts++;
        return client.get("/");
      }),
    );
    expect(err).toBeInstanceOf(ApiUnreachable);
    expect(attempts).toBe(1);
  });

  it("passes a 500 other than 'No cluster leader' through as an answer", async () => {
    const server = await serve(() => ({ status: 500, body: "rpc error: raft apply failed", contentType: "text/plain" }));
    const res = await new ApiClient({ address: server.address, tls }).get("/");
    expect(noLeader(res)).toBe(false);
    expect(res.status).toBe(500);
  });
});
