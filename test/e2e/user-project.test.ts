// A user's own project, made outside the repository as a user would: machines/cache.yml
// lists two stock services by name and one of the project's own, Redis from Debian
// bookworm (its binary a symlink in Debian's package, no `libraries:`). The project is
// found from the working directory; `resin build` resolves Redis's libraries from
// Debian's Depends; `resin up` boots it; Redis answers PING through its forwarded port.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImageManifest } from "../../cli/image/manifest.js";
import type { Lock } from "../../cli/artifacts/lock.js";
import { keepLogsOnFailure, killLeftovers, repoRoot, resinAsync, resinStatus, type CliResult } from "./helpers.js";
import { consulAgentPolicy, readSecrets } from "../../cli/bootstrap/secrets.js";
import { consulAgentToken } from "../../cli/bootstrap/node-secrets.js";
import { consulAccess, consulChecks, consulClient, ensureToken } from "../../cli/cluster/consul.js";
import { dnsQueryTcp } from "../tools/dns.js";

const FIXTURE = join(repoRoot, "test", "fixtures", "user-project");
const project = mkdtempSync(join(tmpdir(), "resin-e2e-user-project-"));
const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-user-state-"));
keepLogsOnFailure(stateHome, "user-project");
const name = "cache";

/** The CLI run from inside the project, as a user runs it: no RESIN_PROJECT, the working directory says. */
function resinHere(args: string[], cwd = project): Promise<CliResult> {
  return resinAsync(args, { RESIN_STATE_HOME: stateHome, RESIN_PROJECT: undefined }, 20 * 60_000, cwd);
}

/** Send one inline command to Redis and return its first reply line. */
function redis(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port }, () => socket.write(`${command}\r\n`));
    let data = "";
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer from Redis on 127.0.0.1:${port}`)));
    socket.on("data", (chunk) => {
      data += chunk.toString("utf8");
      if (data.includes("\r\n")) {
        socket.end();
        resolve(data.split("\r\n")[0]!);
      }
    });
    socket.on("error", reject);
  });
}

let built: ImageManifest;
let buildResult: CliResult;

describe("a user's own role in their own project: stock services by name, Redis from Debian", () => {
  beforeAll(async () => {
    // Exactly what a user writes: a role, and one service with its run script.
    cpSync(FIXTURE, project, { recursive: true });
    buildResult = await resinHere(["build", "cache", "--channel", "debian"]);
    if (buildResult.status !== 0) throw new Error(`resin build failed (exit ${buildResult.status}):\n${buildResult.stderr}`);
    built = JSON.parse(readFileSync(join(project, "out", "images", "debian", "cache", "manifest.json"), "utf8")) as ImageManifest;
    const up = await resinHere(["up", "--name", name, "--role", "cache", "--nodes", "1", "--channel", "debian", "--timeout", "420"]);
    if (up.status !== 0) throw new Error(`resin up failed (exit ${up.status}):\n${up.stderr}`);
  });

  afterAll(async () => {
    await resinHere(["destroy", name, "--yes"]);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  });

  it("resin validate says where each service of the role comes from", async () => {
    const r = await resinHere(["validate"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok: cache \(channels: official, debian; project machines\/cache\.yml\)$/m);
    expect(r.stdout).toMatch(/^ {2}redis +project +services\/redis\/service\.yml$/m);
    expect(r.stdout).toMatch(new RegExp(`^ {2}base +stock +${join(repoRoot, "services", "base", "service.yml")}$`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^ {2}consul +stock +${join(repoRoot, "services", "consul", "service.yml")}$`, "m"));
  });

  it("the build writes out/ and resin.lock.json in the project, and pins what Redis depends on", () => {
    expect(existsSync(join(project, "out", "images", "debian", "cache", "rootfs.squashfs"))).toBe(true);
    expect(existsSync(join(repoRoot, "out", "images", "debian", "cache"))).toBe(false);
    const lock = JSON.parse(readFileSync(join(project, "resin.lock.json"), "utf8")) as Lock;
    expect(lock.debian["bookworm/redis-server"]?.depends).toEqual(expect.arrayContaining(["redis-tools", "libjemalloc2", "libssl3", "libc6"]));
    for (const p of ["redis-tools", "libjemalloc2", "liblzf1", "libatomic1", "libssl3"]) expect(lock.debian[`bookworm/${p}`], p).toBeDefined();
    // Stock packages are pinned as Resin's own lock pins them.
    const stock = JSON.parse(readFileSync(join(repoRoot, "resin.lock.json"), "utf8")) as Lock;
    expect(lock.debian["bullseye/consul"]).toEqual(stock.debian["bullseye/consul"]);
  });

  it("the image holds the symlinked binary, its target and the libraries its ELF closure reaches", () => {
    const file = (path: string) => built.files.find((f) => f.path === path);
    expect(file("usr/bin/redis-server")).toMatchObject({ type: "symlink", target: "redis-check-rdb", from: expect.stringMatching(/^deb:redis-server /) });
    expect(file("usr/bin/redis-check-rdb")).toMatchObject({ type: "file", from: expect.stringMatching(/^deb:redis-tools /) });
    for (const lib of ["libjemalloc.so.2", "liblzf.so.1", "libssl.so.3", "libcrypto.so.3", "libsystemd.so.0", "libatomic.so.1"]) {
      expect(file(`usr/lib/x86_64-linux-gnu/${lib}`), lib).toMatchObject({ type: "file" });
    }
    // Only what the closure reaches: redis-tools' other programs and unneeded libraries stay out.
    expect(file("usr/bin/redis-cli")).toBeUndefined();
    expect(file("usr/bin/redis-benchmark")).toBeUndefined();
    expect(built.files.filter((f) => f.from.startsWith("deb:init-system-helpers") || f.from.startsWith("deb:lsb-base"))).toEqual([]);
    expect(built.packages.map((p) => p.package)).toEqual(expect.arrayContaining(["redis-server", "redis-tools", "libjemalloc2"]));
    const depends = (JSON.parse(readFileSync(join(project, "resin.lock.json"), "utf8")) as Lock).debian["bookworm/redis-server"]!.depends!;
    const taken = built.packages.map((p) => p.package).filter((p) => depends.includes(p));
    process.stderr.write(`user-project: of redis-server's ${depends.length} Depends, the image takes files from: ${taken.join(", ")}\n`);
  });

  it("Redis answers PING through its forwarded port", async () => {
    const s = resinStatus(stateHome, name);
    expect(s.healthy).toBe(true);
    const node = s.nodes[0]!;
    expect([node.name, node.role]).toEqual(["cache-1", "cache"]);
    expect(node.services?.find((x) => x.name === "redis")?.state).toBe("up");
    const port = node.ports["redis.redis"];
    expect(port).toBeGreaterThan(0);
    let answer = "";
    for (let i = 0; i < 30 && answer !== "+PONG"; i++) {
      answer = await redis(port!, "PING").catch((e: Error) => e.message);
      if (answer !== "+PONG") await new Promise((r) => setTimeout(r, 1000));
    }
    expect(answer).toBe("+PONG");
    expect(await redis(port!, "SET resin user-project")).toBe("+OK");
    expect(await redis(port!, "GET resin")).toBe("$12");
  });

  it("Consul's catalog has Redis with its TCP check passing, and resin status shows it", async () => {
    const s = resinStatus(stateHome, name);
    const ep = { port: s.nodes[0]!.ports["consul.https"]!, access: consulAccess(await readSecrets(join(stateHome, "clusters", name, "secrets.json")), "dc1") };
    let checks = await consulChecks(ep);
    for (let i = 0; i < 60 && !checks.some((c) => c.serviceName === "redis" && c.status === "passing"); i++) {
      await new Promise((r) => setTimeout(r, 1000));
      checks = await consulChecks(ep);
    }
    const redisChecks = checks.filter((c) => c.serviceName === "redis");
    expect(redisChecks.map((c) => [c.node, c.name, c.status]), JSON.stringify(checks)).toEqual([["cache-1", "redis: tcp 6379", "passing"]]);
    const catalog = await consulClient(ep).get("/v1/catalog/service/redis");
    expect(catalog.json<{ ServiceTags: string[]; ServicePort: number; Node: string }[]>().map((e) => [e.Node, e.ServicePort, e.ServiceTags])).toEqual([["cache-1", 6379, ["cache"]]]);
    expect(resinStatus(stateHome, name).nodes[0]!.registered).toEqual([{ service: "redis", status: "passing" }]);
  });

  it("Consul's DNS names Redis: redis.service.consul answers with the node's address, through the node's forwarded DNS port", async () => {
    const node = resinStatus(stateHome, name).nodes[0]!;
    const port = node.ports["consul.dns"];
    expect(port).toBeGreaterThan(0);
    let answer = await dnsQueryTcp("127.0.0.1", port!, "redis.service.consul");
    // The check passed above; DNS answers only for a healthy instance, which it already is.
    for (let i = 0; i < 10 && answer.addresses.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      answer = await dnsQueryTcp("127.0.0.1", port!, "redis.service.consul");
    }
    expect(answer).toEqual({ rcode: "NOERROR", addresses: [node.address] });
    expect((await dnsQueryTcp("127.0.0.1", port!, "postgres.service.consul")).addresses).toEqual([]);
  });

  it("the node's token writes exactly the services its role declares: 200 for redis, 403 for others and for another node's token", async () => {
    const secrets = await readSecrets(join(stateHome, "clusters", name, "secrets.json"));
    const ep = { port: resinStatus(stateHome, name).nodes[0]!.ports["consul.https"]!, access: consulAccess(secrets, "dc1") };
    const consul = consulClient(ep);
    const own = consulAgentToken(secrets, "cache-1");
    const register = (service: string, token: string) => consul.put("/v1/agent/service/register", { body: { Name: service, ID: `${service}-probe`, Port: 1 }, token });
    const deregister = (service: string, token: string) => consul.put(`/v1/agent/service/deregister/${service}-probe`, { token });
    // Another node's agent token, with the policy Resin gives a node that registers nothing.
    const other = "5f0c3b1e-0000-4000-8000-000000000009";
    await ensureToken(ep, "resin-agent-cache-9", consulAgentPolicy("cache-9"), other);
    expect((await register("redis", other)).status).toBe(403);
    expect((await register("postgres", own)).status).toBe(403);
    const ok = await register("redis", own);
    expect(ok.status, ok.text).toBe(200);
    expect((await deregister("redis", other)).status).toBe(403);
    expect((await deregister("redis", own)).status).toBe(200);
  });

  it("stage 1 set the role's sysctl before Redis started, and Redis does not complain", async () => {
    const console = await resinHere(["logs", "cache-1", "-n", "2000"]);
    expect(console.stdout).toContain("sysctl vm.overcommit_memory = 1");
    const log = await resinHere(["logs", "cache-1", "--service", "redis"]);
    expect(log.stdout).toContain("Ready to accept connections");
    expect(log.stdout).not.toContain("overcommit_memory is set to 0");
  });

  it("resin logs finds the cluster from the node's name alone", async () => {
    const r = await resinHere(["logs", "cache-1", "--service", "redis"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("Ready to accept connections");
  });

  it("resin up --role of another role on the existing cluster is refused, and changes nothing", async () => {
    const before = readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8");
    const r = await resinHere(["up", "--name", name, "--role", "consul-server", "--channel", "debian"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("resin: cluster 'cache' runs 1 × cache, not consul-server");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readFileSync(join(stateHome, "clusters", name, "cluster.json"), "utf8")).toBe(before);
  });
});
