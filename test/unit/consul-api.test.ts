import { describe, it, expect, beforeAll, afterAll, afterEach, inject } from "vitest";
import { fileURLToPath } from "node:url";
import { createCa, issueCertificate, cliCertSpec, consulCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { consulClient, consulServerCount, consulView, ensureToken, kvGet, kvKeys, kvPut, rawStatus, type ConsulAccess, type ConsulEndpoint } from "../../cli/cluster/consul.js";
import { clusterHandle, type NodeState } from "../../cli/state/state.js";
import { grantImageServices } from "../../cli/cluster/bootstrap.js";
import { consulAgentPolicy } from "../../cli/bootstrap/secrets.js";
import { imageDigest } from "../../cli/image/manifest.js";
import { sha256 } from "../../cli/util/hash.js";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadRole } from "../../cli/spec/load.js";
import type { Role } from "../../cli/spec/load.js";
import { serveHttps, type Handler, type RunningDouble } from "../doubles/https.js";
import { loopbackAddress, startDevConsul, type DevConsul } from "../tools/consul-dev.js";

// Consul's host-side calls over the one API client. What Consul answers is checked
// against a real Consul 1.8.7 (Debian bullseye's, from the unit suite's global setup):
// a dev-mode server on its own loopback address, HTTPS only with verified client
// certificates and ACLs denying by default, as on a node. The answers real Consul never
// gives on demand (a body that is not JSON, no listener, no leader) come from a
// loopback HTTPS double that requires a CA-signed client certificate: not a Consul,
// enough to prove how the client reports them.

const REPO = fileURLToPath(new URL("../../", import.meta.url));

let ca: CertifiedKey;
let served: CertifiedKey;
let access: ConsulAccess;
let real: DevConsul;
let ep: ConsulEndpoint;
beforeAll(async () => {
  ca = await createCa("consul-api");
  const address = loopbackAddress();
  served = await issueCertificate(ca, consulCertSpec({ name: "consul-1", address }, "dc1", "server"));
  const cli = await issueCertificate(ca, cliCertSpec("consul-api"));
  access = { ca: ca.cert, cert: cli.cert, key: cli.key, token: "management-token" };
  real = await startDevConsul(inject("consul187"), { address, caCert: ca.cert, served, managementToken: "management-token" });
  ep = { host: address, port: real.httpsPort, access };
  // A dev-mode server elects itself within seconds; the guard is for a hang, not a speed.
  const deadline = Date.now() + 45_000;
  while (!(await consulView(ep, 2000)).leader) {
    if (Date.now() > deadline) throw new Error(`Consul 1.8.7 dev agent on ${address} has no leader after 45 s:\n${real.log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}, 60_000);
afterAll(async () => {
  await real?.stop();
});

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The double, for answers real Consul does not give on demand. */
async function consulDouble(handler: Handler): Promise<RunningDouble & { ep: ConsulEndpoint }> {
  const double = await serveHttps({ ca: ca.cert, cert: served.cert, key: served.key, requireClientCert: true }, handler);
  cleanup.push(() => double.close());
  return { ...double, ep: { port: Number(new URL(double.url).port), access } };
}

describe("real Consul 1.8.7 over the API client", () => {
  it("reads leader and peers over mTLS: the dev server names itself", async () => {
    const self = `${real.address}:${real.serverPort}`;
    expect(await consulView(ep)).toEqual({ leader: self, peers: [self] });
  });

  it("is refused without the host's client certificate (verify_incoming)", async () => {
    const { cert: _c, key: _k, ...noCert } = access;
    const view = await consulView({ ...ep, access: noCert as ConsulAccess }, 3000);
    expect(view.leader, JSON.stringify(view)).toBeUndefined();
    expect(view.error).toBeTruthy();
  });

  it("puts and gets KV values as raw bodies, under the key as given", async () => {
    await kvPut(ep, "resin/a b", "value 1");
    await kvPut(ep, "resin/json", '{"not": "re-encoded"}');
    expect(await kvGet(ep, "resin/a b")).toBe("value 1");
    expect(await kvGet(ep, "resin/json")).toBe('{"not": "re-encoded"}');
    expect(await kvGet(ep, "resin/missing")).toBeUndefined();
    expect(await kvKeys(ep, "resin/")).toEqual(["resin/a b", "resin/json"]);
    // Without the management token, ACLs deny (default_policy = "deny").
    await expect(kvPut({ ...ep, access: { ...access, token: "" } }, "resin/x", "y")).rejects.toThrow(/PUT resin\/x: 403/);
  });

  it("rawStatus sends no token unless given one", async () => {
    expect(await rawStatus(ep, "/v1/acl/policies")).toBe(403);
    expect(await rawStatus(ep, "/v1/acl/policies", "management-token")).toBe(200);
    expect(await rawStatus(ep, "/v1/acl/policies", "not-a-token")).toBe(403);
  });

  it("ensureToken creates the policy and the token with our SecretID once, and that token works", async () => {
    const secret = "6b3f1d2e-0c7a-4f55-9a41-2f0e5d3c9b17";
    const rules = 'key_prefix "agent/" { policy = "write" }';
    expect(await rawStatus(ep, "/v1/acl/token/self", secret)).toBe(403);
    expect(await ensureToken(ep, "resin-agent", rules, secret)).toBe("created");
    expect(await ensureToken(ep, "resin-agent", rules, secret)).toBe("existed");
    expect(await rawStatus(ep, "/v1/acl/token/self", secret)).toBe(200);
    // Exactly one policy of that name, and the token may do what it grants and no more.
    const asAgent = { ...ep, access: { ...access, token: secret } };
    await kvPut(asAgent, "agent/x", "1");
    await expect(kvPut(asAgent, "resin/x", "1")).rejects.toThrow(/403/);
  });

  it("grantImageServices gives a node's agent policy exactly what the image it is about to boot registers, before it boots", async () => {
    // The node's token as `resin up` made it for an image that registers nothing.
    const token = "0d5c9a7e-3f1b-4c2d-8e6a-5b4c3d2e1f0a";
    expect(await ensureToken(ep, "resin-agent-cache-1", consulAgentPolicy("cache-1"), token)).toBe("created");
    // The image an upgrade boots next registers redis (its manifest says so).
    const home = mkdtempSync(join(tmpdir(), "resin-grant-"));
    const previous = process.env.RESIN_STATE_HOME;
    process.env.RESIN_STATE_HOME = home;
    cleanup.push(async () => {
      if (previous === undefined) delete process.env.RESIN_STATE_HOME;
      else process.env.RESIN_STATE_HOME = previous;
      rmSync(home, { recursive: true, force: true });
    });
    const file = (name: string) => ({ file: name, sha256: sha256(name), size: 1 });
    const image = imageDigest([file("vmlinuz"), file("initrd.img"), file("rootfs.squashfs")]);
    const manifest = {
      role: "cache", channel: "debian", inputDigest: "x", digest: image,
      kernel: { ...file("vmlinuz"), version: "6.1", modules: [] }, initrd: file("initrd.img"), rootfs: file("rootfs.squashfs"),
      disk: { raw: file("disk.raw"), qcow2: file("disk.qcow2"), iso: file("disk.iso") },
      services: [{ name: "consul", version: "1.8.7", ports: { https: 8501 } }, { name: "redis", ports: { redis: 6379 }, registers: ["redis"] }],
      packages: [], releases: [], files: [], initramfsFiles: [],
    };
    const grant = clusterHandle("grant");
    mkdirSync(grant.imageDir(image), { recursive: true });
    writeFileSync(join(grant.imageDir(image), "manifest.json"), JSON.stringify(manifest));
    const register = (t: string) => consulClient(ep).put("/v1/agent/service/register", { body: { Name: "redis", ID: "redis-grant", Port: 6379 }, token: t });

    expect((await register(token)).status).toBe(403);
    expect(await grantImageServices(ep, grant, "cache-1", image)).toBe("updated");
    const after = await register(token);
    expect(after.status, after.text).toBe(200);
    expect(await grantImageServices(ep, grant, "cache-1", image)).toBe("unchanged");
    expect((await consulClient(ep).put("/v1/agent/service/deregister/redis-grant", { token })).status).toBe(200);
  });
});

describe("Consul over the API client, against a double (answers real Consul does not give on demand)", () => {
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
