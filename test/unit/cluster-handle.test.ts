// The cluster handle (cli/state/state.ts): a command makes it once from a name and every
// layer below takes its paths and state from it. Its paths are where the state directory
// has always put them, under RESIN_STATE_HOME as it was when the handle was made; a bad
// name is refused when the handle is made, with the message commands have always given.
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterForNode, clusterHandle, listClusters, type ClusterState } from "../../cli/state/state.js";
import { ResinError } from "../../cli/util/errors.js";
import { canonicalJson } from "../../cli/util/hash.js";

const saved = process.env.RESIN_STATE_HOME;
const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
  if (saved === undefined) delete process.env.RESIN_STATE_HOME;
  else process.env.RESIN_STATE_HOME = saved;
});

/** A fresh RESIN_STATE_HOME, set for this test. */
function home(): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-handle-"));
  scratch.push(dir);
  process.env.RESIN_STATE_HOME = dir;
  return dir;
}

const DIGEST = `sha256:${"ab".repeat(32)}`;

/** A one-node cluster's state, as `resin plan` records it. */
function stateOf(name: string): ClusterState {
  return {
    version: 1,
    name,
    channel: "debian",
    datacenter: "dc1",
    subnet: "10.88.0.0/24",
    network: { mode: "static" },
    nodes: [
      {
        name: `${name}-1`, role: "consul-server", index: 1, address: "10.88.0.11", prefix: 24,
        clusterMac: "52:54:0a:1b:01:01", hostMac: "52:54:0a:1b:02:01", hostAddress: "10.0.2.15/24",
        image: DIGEST, memoryMib: 512, cpus: 1, ports: {},
      },
    ],
  };
}

describe("a cluster handle", () => {
  it("derives every path of the cluster from RESIN_STATE_HOME and its name, as the state directory lays them out", () => {
    const root = home();
    const c = clusterHandle("demo");
    const dir = join(root, "clusters", "demo");
    expect(c.name).toBe("demo");
    expect([c.dir, c.stateFile, c.secrets, c.images, c.nodes, c.lock]).toEqual([
      dir,
      join(dir, "cluster.json"),
      join(dir, "secrets.json"),
      join(dir, "images"),
      join(dir, "nodes"),
      join(root, "clusters", "demo.lock"),
    ]);
    expect(c.node("demo-2")).toEqual({
      dir: join(dir, "nodes", "demo-2"),
      configDrive: join(dir, "nodes", "demo-2", "cidata.iso"),
      userData: join(dir, "nodes", "demo-2", "user-data.json"),
      persistDisk: join(dir, "nodes", "demo-2", "persist.qcow2"),
      stoppedMarker: join(dir, "nodes", "demo-2", "stopped"),
      startedMarker: join(dir, "nodes", "demo-2", "started"),
    });
    expect(c.imageDir(DIGEST)).toBe(join(dir, "images", "ab".repeat(32)));
    // Deriving paths touches nothing on disk.
    expect(existsSync(join(root, "clusters"))).toBe(false);
  });

  it("keeps the paths it was made with when RESIN_STATE_HOME changes afterwards", () => {
    const first = home();
    const c = clusterHandle("demo");
    home();
    expect(c.dir).toBe(join(first, "clusters", "demo"));
    expect(clusterHandle("demo").dir).not.toBe(c.dir);
  });

  it.each(["", "..", "a/b", "-rf", "Upper", "x".repeat(32)])("refuses the name %j when it is made, with the one message and hint, creating nothing", (name) => {
    const root = home();
    let e: unknown;
    try {
      clusterHandle(name);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(ResinError);
    expect((e as ResinError).message).toBe(`invalid cluster name '${name}'`);
    expect((e as ResinError).hint).toBe("use lowercase letters, digits and '-', starting with a letter, at most 31 characters");
    expect(existsSync(join(root, "clusters"))).toBe(false);
  });

  it("refuses an image digest that is not one", () => {
    home();
    expect(() => clusterHandle("demo").imageDir("sha256:../../x")).toThrow(/'sha256:\.\.\/\.\.\/x' is not an image digest/);
  });

  it("writes its state as canonical JSON (keys sorted) and reads it back; a state of another cluster is not written through it", async () => {
    home();
    const c = clusterHandle("demo");
    expect(await c.read()).toBeUndefined();
    await c.ensureDir();
    await c.write(stateOf("demo"));
    expect(readFileSync(c.stateFile, "utf8")).toBe(`${canonicalJson(stateOf("demo"))}\n`);
    expect(await c.read()).toEqual(stateOf("demo"));
    expect(await c.require()).toEqual(stateOf("demo"));
    await expect(c.write(stateOf("other"))).rejects.toThrow("cluster 'other' written through the handle of 'demo'");
    expect(await c.read()).toEqual(stateOf("demo"));
  });

  it("require() names the clusters there are when this one has no state", async () => {
    home();
    await expect(clusterHandle("nope").require()).rejects.toMatchObject({ message: "no cluster named 'nope'", hint: "start one with `resin up`" });
    for (const name of ["beta", "alpha"]) {
      const c = clusterHandle(name);
      await c.ensureDir();
      await c.write(stateOf(name));
    }
    await expect(clusterHandle("nope").require()).rejects.toMatchObject({ message: "no cluster named 'nope'", hint: "clusters: alpha, beta" });
  });
});

describe("the handles a command finds", () => {
  it("listClusters: one per directory with a state file, by name; other entries are left out", async () => {
    const root = home();
    for (const name of ["beta", "alpha"]) {
      const c = clusterHandle(name);
      await c.ensureDir();
      await c.write(stateOf(name));
    }
    mkdirSync(join(root, "clusters", "empty"), { recursive: true }); // no cluster.json
    mkdirSync(join(root, "clusters", "Not-A-Name"), { recursive: true });
    writeFileSync(join(root, "clusters", "Not-A-Name", "cluster.json"), "{}");
    writeFileSync(join(root, "clusters", "alpha.lock"), "1 up\n");
    const found = await listClusters();
    expect(found.map((c) => c.name)).toEqual(["alpha", "beta"]);
    expect(found[0]!.dir).toBe(join(root, "clusters", "alpha"));
  });

  it("clusterForNode: the --name given (checked), else the one cluster that has the node", async () => {
    home();
    for (const name of ["alpha", "beta"]) {
      const c = clusterHandle(name);
      await c.ensureDir();
      await c.write(stateOf(name));
    }
    expect((await clusterForNode("beta-1", undefined)).dir).toBe(clusterHandle("beta").dir);
    expect((await clusterForNode("anything", "alpha")).name).toBe("alpha");
    await expect(clusterForNode("beta-1", "../x")).rejects.toThrow("invalid cluster name '../x'");
    await expect(clusterForNode("gamma-1", undefined)).rejects.toThrow("no cluster has a node named 'gamma-1'");
  });
});
