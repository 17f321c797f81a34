import { afterEach, describe, expect, it } from "vitest";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { availableRoles, listRoles, loadRole, shownPath } from "../../cli/spec/load.js";
import { formatValidity, validateRoles } from "../../cli/commands/validate.js";
import { Debs, debRequests } from "../../cli/artifacts/debian.js";
import type { Lock } from "../../cli/artifacts/lock.js";
import { clusterOfNode, type ClusterState } from "../../cli/state/state.js";
import { checkSameRoles } from "../../cli/commands/up.js";
import { projectRoot } from "../../cli/util/paths.js";
import { ResinError, SpecError } from "../../cli/util/errors.js";

// A user's project (a directory with machines/, and services/ if it adds any) names
// Resin's stock roles and services; its own with a stock name must say `override: true`.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../fixtures/user-project/", import.meta.url));

const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A copy of the user-project fixture, plus `files` (relative path → text). */
function project(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-user-project-"));
  scratch.push(dir);
  cpSync(FIXTURE, dir, { recursive: true });
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

async function specError(p: Promise<unknown>): Promise<SpecError> {
  const e = await p.then(() => undefined, (e: unknown) => e);
  expect(e).toBeInstanceOf(SpecError);
  return e as SpecError;
}

const stockConsul = readFileSync(join(REPO, "services", "consul", "service.yml"), "utf8");

describe("a user's project on top of the stock specs", () => {
  it("a role of stock services and the project's own loads, each service from where it is", async () => {
    const dir = project();
    const role = await loadRole(dir, "cache", "debian");
    expect(role.origin).toBe("project");
    expect(role.services.map((s) => [s.name, s.origin, s.file])).toEqual([
      ["base", "stock", join(REPO, "services", "base", "service.yml")],
      ["consul", "stock", join(REPO, "services", "consul", "service.yml")],
      ["redis", "project", join(dir, "services", "redis", "service.yml")],
    ]);
  });

  it("stock roles are there by name; 'all roles' means the project's own", async () => {
    const dir = project();
    expect(await listRoles(dir)).toEqual(["cache"]);
    expect(await availableRoles(dir)).toEqual(expect.arrayContaining(["cache", "consul-server", "control-plane"]));
    const stock = await loadRole(dir, "consul-server", "debian");
    expect(stock.origin).toBe("stock");
    expect(stock.file).toBe(join(REPO, "machines", "consul-server.yml"));
    const err = await specError(loadRole(dir, "nope"));
    expect(err.message).toMatch(/no such role; the roles are: cache, consul-server, control-plane/);
  });

  it("refuses a service with a stock name that does not say override: true, naming both files", async () => {
    const dir = project({ "services/consul/service.yml": stockConsul });
    writeFileSync(join(dir, "services", "consul", "run"), "#!/bin/sh\n");
    writeFileSync(join(dir, "services", "consul", "marks"), "");
    for (const t of ["role.hcl.hbs", "node.hcl.hbs"]) writeFileSync(join(dir, "services", "consul", t), "");
    const err = await specError(loadRole(dir, "cache", "debian"));
    expect(err.file).toMatch(/services\/consul\/service\.yml$/);
    expect(err.problems).toEqual([
      { field: "name", line: stockConsul.split("\n").findIndex((l) => l.startsWith("name:")) + 1, message: expect.stringContaining("Resin has a stock service of this name") },
    ]);
    expect(err.message).toContain(`(${shownPath(join(REPO, "services", "consul", "service.yml"))})`);
    expect(err.message).toContain("add 'override: true'");
  });

  it("with override: true the project's service replaces the stock one, in stock roles too", async () => {
    const dir = project();
    cpSync(join(REPO, "services", "consul"), join(dir, "services", "consul"), { recursive: true });
    writeFileSync(join(dir, "services", "consul", "service.yml"), `${stockConsul}override: true\n`);
    for (const role of ["cache", "consul-server"]) {
      const loaded = await loadRole(dir, role, "debian");
      expect(loaded.services.find((s) => s.name === "consul")).toMatchObject({ origin: "project", file: join(dir, "services", "consul", "service.yml") });
    }
  });

  it("refuses a role with a stock name unless it says override: true", async () => {
    const text = "role: consul-server\ndescription: mine\nservices: [base, consul]\n";
    const err = await specError(loadRole(project({ "machines/consul-server.yml": text }), "consul-server"));
    expect(err.problems[0]).toMatchObject({ field: "role", line: 1 });
    expect(err.message).toContain(`(${shownPath(join(REPO, "machines", "consul-server.yml"))})`);
    const dir = project({ "machines/consul-server.yml": `${text}override: true\n` });
    const role = await loadRole(dir, "consul-server");
    expect([role.origin, role.spec.description]).toEqual(["project", "mine"]);
  });

  it("refuses two services of a role that register one Consul name, or set one kernel parameter differently, naming both", async () => {
    const redis = readFileSync(join(FIXTURE, "services", "redis", "service.yml"), "utf8");
    const sentinel = redis.replace("name: redis\n", "name: sentinel\n").replace("vm.overcommit_memory: 1", "vm.overcommit_memory: 0").replace("uid: 250", "uid: 251").replace("name: redis, uid", "name: sentinel, uid");
    const role = (extra = "") => `role: cache\ndescription: two\nservices: [base, consul, redis, sentinel]\nconfig: { consul: { server: true } }\n${extra}`;
    const files = { "services/sentinel/service.yml": sentinel, "services/sentinel/run": "#!/bin/sh\n" };
    const err = await specError(loadRole(project({ ...files, "machines/cache.yml": role() }), "cache", "debian"));
    expect(err.problems.map((p) => p.message)).toEqual([
      "services redis and sentinel both register 'redis' in Consul: rename one (consul.services[].name in its service.yml)",
      "services redis and sentinel set vm.overcommit_memory differently (1, 0): choose one under the role's own sysctl:",
    ]);
    // The role's own value decides the parameter; the repeated Consul name stays an error.
    const chosen = await specError(loadRole(project({ ...files, "machines/cache.yml": role("sysctl: { vm.overcommit_memory: 1 }\n") }), "cache", "debian"));
    expect(chosen.problems.map((p) => p.message)).toEqual(["services redis and sentinel both register 'redis' in Consul: rename one (consul.services[].name in its service.yml)"]);
  });

  it("refuses override: true where there is nothing to replace", async () => {
    const dir = project();
    const path = join(dir, "services", "redis", "service.yml");
    writeFileSync(path, `${readFileSync(path, "utf8")}override: true\n`);
    const err = await specError(loadRole(dir, "cache"));
    expect(err.problems[0]).toMatchObject({ field: "override", message: "there is no stock service of this name to replace: remove 'override'" });
  });

  it("in Resin's own repository every spec is stock, and none needs override", async () => {
    const role = await loadRole(REPO, "consul-server", "debian");
    expect([role.origin, ...role.services.map((s) => s.origin)]).toEqual(["stock", "stock", "stock"]);
  });

  it("resin validate says where each service of each role comes from", async () => {
    const dir = project();
    const results = await validateRoles(dir);
    expect(results.map((r) => [r.role, r.channels, r.errors])).toEqual([["cache", ["official", "debian"], []]]);
    const text = formatValidity(results);
    expect(text.split("\n")[0]).toBe(`ok: cache (channels: official, debian; project ${join(dir, "machines", "cache.yml")})`);
    expect(text).toMatch(new RegExp(`^  redis +project +${join(dir, "services", "redis", "service.yml")}$`, "m"));
    expect(text).toMatch(new RegExp(`^  base +stock +.*services/base/service\\.yml$`, "m"));
  });

  it("the project is the nearest directory with machines/, services/ or not", () => {
    const dir = project();
    rmSync(join(dir, "services"), { recursive: true });
    mkdirSync(join(dir, "deep", "er"), { recursive: true });
    const saved = process.env.RESIN_PROJECT;
    delete process.env.RESIN_PROJECT;
    try {
      expect(projectRoot(join(dir, "deep", "er"))).toBe(dir);
    } finally {
      if (saved !== undefined) process.env.RESIN_PROJECT = saved;
    }
  });
});

describe("services without channels", () => {
  it("top-level packages serve every channel; a stock service with channels keeps working", async () => {
    const dir = project();
    for (const channel of ["official", "debian"] as const) {
      const role = await loadRole(dir, "cache", channel);
      const redis = role.services.find((s) => s.name === "redis")!;
      expect(redis.packages.map((p) => [p.name, p.suite, p.paths])).toEqual([["redis-server", "bookworm", ["usr/bin/redis-server"]]]);
      expect(redis.libraries).toBeUndefined();
      const consul = role.services.find((s) => s.name === "consul")!;
      expect(channel === "official" ? consul.release?.product : consul.packages[0]?.name).toBe("consul");
    }
    // consul lists libraries under its debian channel only: that channel's list is the override.
    expect((await loadRole(dir, "cache", "debian")).services.find((s) => s.name === "consul")!.libraries).toEqual(["libc6"]);
  });

  it("only a service without `libraries:` asks for its packages' Depends to be locked", async () => {
    const role = await loadRole(project(), "cache", "debian");
    const requests = await debRequests(role.services, "amd64");
    expect(requests.find((r) => r.name === "redis-server")).toMatchObject({ suite: "bookworm", closure: true });
    expect(requests.find((r) => r.name === "consul")?.closure).toBeUndefined();
    expect(requests.find((r) => r.name === "runit")?.closure).toBeUndefined();
  });
});

describe("node names across clusters", () => {
  const clusters = [
    { name: "resin", nodes: ["resin-1", "resin-2", "resin-3"] },
    { name: "cache", nodes: ["cache-1"] },
    { name: "other", nodes: ["cache-1", "other-2"] },
  ];

  it("a node name unique across clusters names its cluster", () => {
    expect(clusterOfNode("resin-2", clusters)).toBe("resin");
    expect(clusterOfNode("other-2", clusters)).toBe("other");
  });

  it("an ambiguous one names the candidates", () => {
    expect(() => clusterOfNode("cache-1", clusters)).toThrow(ResinError);
    try {
      clusterOfNode("cache-1", clusters);
    } catch (e) {
      expect((e as ResinError).message).toBe("node 'cache-1' is in 2 clusters: cache, other");
      expect((e as ResinError).hint).toBe("say which: --name cache or --name other");
    }
  });

  it("an unknown one lists the clusters and their nodes", () => {
    try {
      clusterOfNode("nope-1", clusters);
      expect.unreachable();
    } catch (e) {
      expect((e as ResinError).message).toBe("no cluster has a node named 'nope-1'");
      expect((e as ResinError).hint).toContain("cache (cache-1); other (cache-1, other-2)");
    }
    expect(() => clusterOfNode("x-1", [])).toThrow("no cluster has a node named 'x-1'");
  });
});

describe("resin up --role on an existing cluster", () => {
  const existing = { name: "resin", nodes: ["consul-server", "consul-server", "consul-server"].map((role, i) => ({ name: `resin-${i + 1}`, role })) } as unknown as ClusterState;

  it("is refused when the cluster runs other roles", () => {
    expect(() => checkSameRoles(existing, ["cache", "cache", "cache"], false)).toThrow("cluster 'resin' runs 3 × consul-server, not cache");
  });

  it("is fine when the roles are the cluster's", () => {
    expect(() => checkSameRoles(existing, ["consul-server", "consul-server", "consul-server"], false)).not.toThrow();
    expect(() => checkSameRoles(existing, ["consul-server", "consul-server", "consul-server"], true)).not.toThrow();
  });

  it("with --roles, each role's count must match too", () => {
    const mixed = { name: "m", nodes: [{ role: "a" }, { role: "a" }, { role: "b" }] } as unknown as ClusterState;
    expect(() => checkSameRoles(mixed, ["a", "b", "b"], true)).toThrow("cluster 'm' runs 2 × a, 1 × b, not 1 × a, 2 × b");
    expect(() => checkSameRoles(mixed, ["a", "a", "b"], true)).not.toThrow();
  });
});

describe("the project's own resin.lock.json", () => {
  const sha = "ab".repeat(32);
  const stockEntry = { package: "consul", version: "1.8.7+dfsg1-2+b3", suite: "bullseye", sha256: sha, size: 1 };

  /** A cache holding the blob, so nothing needs fetching; offline, so nothing may be asked of apt. */
  function offlineDebs(lock: Lock, seed?: Lock) {
    const cache = mkdtempSync(join(tmpdir(), "resin-lock-cache-"));
    scratch.push(cache);
    mkdirSync(join(cache, "blobs", "sha256"), { recursive: true });
    writeFileSync(join(cache, "blobs", "sha256", sha), "x");
    process.env.RESIN_CACHE_HOME = cache;
    const lines: string[] = [];
    return { debs: new Debs(lock, (l) => lines.push(l), { offline: true, seed, suites: ["bullseye"], arch: "amd64" }), lines };
  }
  afterEach(() => {
    delete process.env.RESIN_CACHE_HOME;
  });

  it("pins a package it has no entry for as Resin's own lock pins it, without asking the mirror", async () => {
    const lock: Lock = { lockfileVersion: 1, debian: {} };
    const { debs, lines } = offlineDebs(lock, { lockfileVersion: 1, debian: { "bullseye/consul": stockEntry } });
    expect(await debs.ensure({ name: "consul", suite: "bullseye", arch: "amd64", kernel: false })).toEqual(stockEntry);
    expect(lock.debian["bullseye/consul"]).toEqual(stockEntry);
    expect(debs.changed).toBe(true);
    expect(lines.join("\n")).toContain("as Resin's own resin.lock.json pins it");
  });

  it("keeps its own entry over Resin's", async () => {
    const own = { ...stockEntry, version: "mine" };
    const lock: Lock = { lockfileVersion: 1, debian: { "bullseye/consul": own } };
    const { debs } = offlineDebs(lock, { lockfileVersion: 1, debian: { "bullseye/consul": stockEntry } });
    expect(await debs.ensure({ name: "consul", suite: "bullseye", arch: "amd64", kernel: false })).toEqual(own);
    expect(debs.changed).toBe(false);
  });

  it("needs the mirror's Packages index once to record what a package depends on, and says so offline", async () => {
    const lock: Lock = { lockfileVersion: 1, debian: { "bullseye/consul": stockEntry } };
    const { debs } = offlineDebs(lock);
    await expect(debs.ensure({ name: "consul", suite: "bullseye", arch: "amd64", kernel: false, closure: true })).rejects.toThrow("offline, but resin.lock.json does not say what bullseye/consul depends on");
    lock.debian["bullseye/consul"] = { ...stockEntry, depends: ["libc6"] };
    expect((await debs.ensure({ name: "consul", suite: "bullseye", arch: "amd64", kernel: false, closure: true })).depends).toEqual(["libc6"]);
  });
});
