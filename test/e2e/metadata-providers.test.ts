// Each in-image metadata provider, proven by a guest that boots from it: a one-node
// Consul 1.8.7 cluster planned by `resin plan`, booted with no config drive and a
// link-local metadata network (169.254.0.0/16) whose addresses QEMU forwards to
// loopback test doubles of AWS IMDSv2, an EC2-compatible service and a metal web
// server. The node only reaches a Consul leader if it got its whole config (TLS keys,
// gossip key, tokens, network) from that provider.
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consulClient, consulView, rawStatus } from "../../cli/cluster/consul.js";
import { consulAgentToken, consulDnsToken } from "../../cli/bootstrap/node-secrets.js";
import type { Secrets } from "../../cli/bootstrap/secrets.js";
import { clusterHandle, type ClusterState } from "../../cli/state/state.js";
import { chooseAccel, type Accel } from "../../cli/provider/qemu/accel.js";
import { startNode, stopCluster, vmState, type BootOptions } from "../../cli/provider/qemu/provider.js";
import { createPersistDisk, vmPid } from "../../cli/provider/qemu/vm.js";
import { ec2CompatibleDouble, imdsV2Double, webDouble, type MetadataDouble } from "../doubles/metadata.js";
import { consulAt, keepLogsOnFailure, killLeftovers, resinAsync } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-metadata-"));
keepLogsOnFailure(stateHome, "metadata-providers");
process.env.RESIN_STATE_HOME = stateHome; // the provider functions below read it too
const env = { RESIN_STATE_HOME: stateHome };
const name = "meta";
const cluster = clusterHandle(name);
const IMDS = "169.254.169.254";
const METAL = "169.254.42.1";

let state: ClusterState;
let accel: Accel;
let userData: Buffer;
const doubles: MetadataDouble[] = [];

async function double(d: Promise<MetadataDouble>): Promise<MetadataDouble> {
  const running = await d;
  doubles.push(running);
  return running;
}

const consoleLog = () => readFileSync(join(cluster.node(`${name}-1`).dir, "console.log"), "utf8");

/** Boot the node, wait for it to lead its one-node Consul cluster, then (unless `then` keeps it) stop it. */
async function bootToLeader(boot: BootOptions, then?: () => Promise<void>): Promise<{ seconds: number; console: string }> {
  const node = state.nodes[0]!;
  const started = Date.now();
  await startNode(cluster, state, node, accel, () => {}, boot);
  await cluster.write(state);
  try {
    const ep = consulAt(stateHome, name, node.name);
    const deadline = Date.now() + 240_000;
    for (;;) {
      const view = await consulView(ep, 3000);
      if (view.leader === `${node.address}:8300`) break;
      if (!(await vmPid(cluster.node(node.name).dir))) throw new Error(`the node stopped:\n${consoleLog().slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`no Consul leader after 240 s (${view.error ?? view.leader}):\n${consoleLog().slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const seconds = (Date.now() - started) / 1000;
    // A new leader puts the management token from its config into the ACL system just after
    // it leads: until then that token is not found (403). Wait for it, as resin up's ACL
    // bootstrap does, so a test's first call does not race it on a loaded host.
    while ((await rawStatus(ep, "/v1/acl/token/self", ep.access!.token).catch(() => 0)) !== 200) {
      if (Date.now() > deadline) throw new Error(`the management token did not start to work within 240 s:\n${consoleLog().slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    await then?.();
    return { seconds, console: consoleLog() };
  } finally {
    await stopCluster(cluster, state);
  }
}

describe("in-image metadata providers, each booting a real node in QEMU", () => {
  beforeAll(async () => {
    const planned = await resinAsync(["plan", "--name", name, "--nodes", "1", "--role", "consul-server", "--channel", "debian", "--json"], env);
    if (planned.status !== 0) throw new Error(`resin plan failed (exit ${planned.status}):\n${planned.stderr}`);
    const manifest = JSON.parse(planned.stdout) as { nodes: { metadata: { path: string } }[] };
    userData = readFileSync(manifest.nodes[0]!.metadata.path);
    state = (await cluster.read())!;
    await createPersistDisk(cluster.node(state.nodes[0]!.name).persistDisk, 1);
    accel = await chooseAccel();
  });

  afterAll(async () => {
    if (state) await stopCluster(cluster, state, { graceMs: 0 });
    for (const d of doubles) await d.close();
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
  });

  it("aws: takes an IMDSv2 token, then the (gzipped) user data with it; then the service is closed to every user but root", async () => {
    const imds = await double(imdsV2Double(gzipSync(userData)));
    let probe: { Status: string; Output: string } | undefined;
    let asked = -1;
    const { seconds, console: guest } = await bootToLeader({ metadataService: { forwards: [{ guestAddress: IMDS, guestPort: 80, hostPort: imds.port }] } }, async () => {
      // A process of the node's own network namespace that is not root: the node's Consul
      // agent, which runs as user consul (uid 100). An HTTP check registered through its
      // API makes the agent itself GET the user data, over and over; what it got is the
      // check's output. (Consul is the one non-root program every image runs; no test-only
      // service is needed.)
      const consul = consulClient(consulAt(stateHome, name, `${name}-1`));
      asked = imds.requests.length;
      const check = { Name: "imds-probe", HTTP: `http://${IMDS}/latest/user-data`, Interval: "1s", Timeout: "3s" };
      expect((await consul.put("/v1/agent/check/register", { body: check })).status).toBe(200);
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        probe = (await consul.get("/v1/agent/checks")).json<Record<string, { Status: string; Output: string }>>()["imds-probe"];
        if (probe?.Output) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      // The agent keeps registered checks on its persist disk: later boots start without it.
      expect((await consul.put("/v1/agent/check/deregister/imds-probe")).status).toBe(200);
    });
    console.log(`aws (IMDSv2) provider: power-on → Consul leader in ${seconds.toFixed(1)} s`);
    expect(guest).toContain("resin: metadata from aws");
    // The non-root process was refused at once by the node itself: nothing reached the service.
    console.log(`aws: the consul user's GET of the user data after boot: ${probe?.Output.trim()}`);
    expect(imds.requests.slice(asked), "requests after boot").toEqual([]);
    expect(probe, "the probe check's result").toMatchObject({ Status: "critical" });
    expect(probe!.Output).toMatch(/connection refused/);
    // Root's fetch at boot worked (below); then, before any service started, the service was closed.
    expect(guest).toContain("resin: metadata service 169.254.169.254 closed to all but root");
    const [put, get] = imds.requests;
    expect(put).toMatchObject({ method: "PUT", path: "/latest/api/token" });
    expect(Number(put!.headers["x-aws-ec2-metadata-token-ttl-seconds"])).toBeGreaterThan(0);
    expect(get).toMatchObject({ method: "GET", path: "/latest/user-data" });
    expect(get!.headers["x-aws-ec2-metadata-token"]).toMatch(/^[0-9a-f-]{36}$/);
    // A request without the token would have had 401; none was needed.
    expect(imds.requests.filter((r) => r.method === "GET" && !r.headers["x-aws-ec2-metadata-token"])).toEqual([]);
  });

  it("generic: reads EC2-compatible user data without a token when no IMDSv2 answers", async () => {
    const ec2 = await double(ec2CompatibleDouble(userData));
    const { seconds, console: guest } = await bootToLeader({ metadataService: { forwards: [{ guestAddress: IMDS, guestPort: 80, hostPort: ec2.port }] } });
    console.log(`generic provider: power-on → Consul leader in ${seconds.toFixed(1)} s`);
    expect(guest).toContain("resin: metadata from generic");
    expect(guest).toContain("resin: metadata service 169.254.169.254 closed to all but root");
    // The aws provider asked first and was refused, then the generic one read the data.
    expect(ec2.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["PUT /latest/api/token", "GET /latest/user-data"]);
  });

  it("cmdline: resin.metadata=URL (pinned by resin.metadata.sha256) wins over a cloud service that also answers", async () => {
    const web = await double(webDouble("/nodes/meta-1.json", userData));
    // A metadata service with a document that would fail to boot: it must not be asked.
    const decoy = await double(imdsV2Double(Buffer.from("not json")));
    const sha = createHash("sha256").update(userData).digest("hex");
    const { seconds, console: guest } = await bootToLeader({
      append: `resin.metadata=http://${METAL}/nodes/meta-1.json resin.metadata.sha256=${sha}`,
      metadataService: {
        forwards: [
          { guestAddress: METAL, guestPort: 80, hostPort: web.port },
          { guestAddress: IMDS, guestPort: 80, hostPort: decoy.port },
        ],
      },
    });
    console.log(`cmdline provider: power-on → Consul leader in ${seconds.toFixed(1)} s`);
    expect(guest).toContain("resin: metadata from cmdline");
    expect(web.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /nodes/meta-1.json"]);
    expect(decoy.requests).toEqual([]);
  });

  it("cdrom: a FAT config drive labelled CIDATA (as cloud-localds -f vfat writes one); FAT is loaded only for it", async () => {
    // The node's config drive file, made FAT by mkfs.vfat and mtools for this boot only.
    const drive = cluster.node(state.nodes[0]!.name).configDrive;
    const iso = `${drive}.iso-kept`;
    copyFileSync(drive, iso);
    try {
      const data = join(stateHome, "user-data");
      writeFileSync(data, userData);
      rmSync(drive);
      execFileSync("mkfs.vfat", ["-C", "-n", "CIDATA", drive, "4096"], { stdio: "pipe" });
      execFileSync("mcopy", ["-i", drive, data, "::user-data"], { stdio: "pipe" });
      const { seconds, console: guest } = await bootToLeader({});
      console.log(`cdrom provider, FAT drive: power-on → Consul leader in ${seconds.toFixed(1)} s`);
      expect(guest).toContain("resin: metadata from cdrom");
    } finally {
      copyFileSync(iso, drive);
      rmSync(iso);
    }
  });

  it("none: a node nothing answers for says which providers it tried, powers off and shows as crashed", async () => {
    const node = state.nodes[0]!;
    await startNode(cluster, state, node, accel, () => {}, { metadataService: { forwards: [] } });
    await cluster.write(state);
    const deadline = Date.now() + 180_000;
    while (await vmPid(cluster.node(node.name).dir)) {
      if (Date.now() > deadline) throw new Error(`the node did not power off:\n${consoleLog().slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const log = consoleLog();
    expect(log).toMatch(/resin: FATAL: no metadata for this node: no metadata provider answered \(cmdline: no resin\.metadata= on the kernel command line; cdrom: no volume labelled cidata; aws: no IMDSv2 token from 169\.254\.169\.254; generic: nothing at http:\/\/169\.254\.169\.254\/latest\/user-data\)/);
    const vm = await vmState(cluster, node);
    expect(vm.state).toBe("crashed");
    expect(vm.reason).toContain("no metadata provider answered");
  });

  it("resin bootstrap finishes a cluster that resin up did not boot: the agent, DNS and nomad tokens start to exist", async () => {
    const secrets = JSON.parse(readFileSync(join(stateHome, "clusters", name, "secrets.json"), "utf8")) as Secrets;
    const agentToken = consulAgentToken(secrets, `${name}-1`);
    await bootToLeader({}, async () => {
      const ep = consulAt(stateHome, name, `${name}-1`);
      // The node's agent token is in its config, but Consul does not know it yet.
      expect(await rawStatus(ep, "/v1/acl/token/self", agentToken)).toBe(403);
      expect(await rawStatus(ep, "/v1/acl/token/self", consulDnsToken(secrets))).toBe(403);
      // Through an address, checking the certificate by the name every server carries.
      const r = await resinAsync(["bootstrap", "--name", name, "--consul", `127.0.0.1:${ep.port}`], env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`Consul ACL: agent tokens created for ${name}-1; DNS token created; nomad token created`);
      expect(await rawStatus(ep, "/v1/acl/token/self", agentToken)).toBe(200);
      expect(await rawStatus(ep, "/v1/acl/token/self", consulDnsToken(secrets))).toBe(200);
      expect(await rawStatus(ep, "/v1/acl/token/self", secrets.consul.nomadToken)).toBe(200);
      // Idempotent, as `resin up` of an existing cluster is.
      const again = await resinAsync(["bootstrap", "--name", name, "--consul", `127.0.0.1:${ep.port}`], env);
      expect(again.status, again.stderr).toBe(0);
      expect(again.stderr).toContain("Consul ACL: agent tokens already there; DNS token already there; nomad token already there");
    });
  });
});
