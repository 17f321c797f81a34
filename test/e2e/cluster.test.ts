// The walking skeleton end to end: three real Consul 1.8.7 servers in QEMU.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { request } from "undici";
import { consulClient, consulView, kvGet, kvPut, lanMembers, rawStatus } from "../../cli/cluster/consul.js";
import type { ClusterState } from "../../cli/state/state.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { nodeMetadata, serialiseMetadata } from "../../cli/bootstrap/metadata.js";
import { issueNodeCertificates, type Secrets } from "../../cli/bootstrap/secrets.js";
import { writeIso9660 } from "../../cli/image/iso9660.js";
import { loadRole } from "../../cli/spec/load.js";
import { chooseAccel } from "../../cli/provider/qemu/accel.js";
import { createPersistDisk, kernelAppend, startVm, stopVm } from "../../cli/provider/qemu/vm.js";
import type { VerityParams } from "../../cli/image/verity.js";
import { consulAt, fileBytes, keepLogsOnFailure, killLeftovers, processesUnder, repoRoot, resinAsync, resinStatus } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-state-"));
keepLogsOnFailure(stateHome, "cluster");
const env = { RESIN_STATE_HOME: stateHome };
const name = "e2e";
const clusterDir = join(stateHome, "clusters", name);

describe("three-node Consul cluster in QEMU", () => {
  beforeAll(async () => {
    const result = await resinAsync(["up", "--name", name, "--nodes", "3", "--role", "consul-server", "--channel", "debian", "--timeout", "420"], env);
    if (result.status !== 0) throw new Error(`resin up failed (exit ${result.status}):\n${result.stderr}`);
  });

  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
  });

  it("boots the image set built once for the run", () => {
    const digest = inject("imageDigests")["consul-server"];
    expect(resinStatus(stateHome, name).nodes.map((n) => n.image)).toEqual([digest, digest, digest]);
  });

  it("all three nodes report the same leader and three raft peers", () => {
    const s = resinStatus(stateHome, name);
    expect(s.nodes.map((n) => n.vm.state)).toEqual(["running", "running", "running"]);
    const leaders = new Set(s.nodes.map((n) => n.consul?.leader));
    expect(leaders.size).toBe(1);
    expect(s.leader).toMatch(/^10\.88\.0\.1[123]:8300$/);
    for (const n of s.nodes) expect(n.consul?.peers?.slice().sort()).toEqual(["10.88.0.11:8300", "10.88.0.12:8300", "10.88.0.13:8300"]);
    expect(s.healthy).toBe(true);
  });

  it("a key written through node 1 is read through node 3", async () => {
    const value = "written-through-e2e-1";
    await kvPut(consulAt(stateHome, name, "e2e-1"), "e2e/skeleton", value);
    // Consul's default reads go through the leader, so node 3 sees the committed write.
    expect(await kvGet(consulAt(stateHome, name, "e2e-3"), "e2e/skeleton")).toBe(value);
  });

  it("serves its API only over TLS with the cluster CA, and only with a token", async () => {
    const ep = consulAt(stateHome, name, "e2e-2");
    // Without the cluster CA the server's certificate is not trusted.
    await expect(request(`https://127.0.0.1:${ep.port}/v1/status/leader`)).rejects.toThrow(/certificate/);
    // Plain HTTP is not served on the API port at all.
    await expect(request(`http://127.0.0.1:${ep.port}/v1/status/leader`, { headersTimeout: 5000 }).then((r) => r.statusCode)).resolves.toBe(400);
    // With TLS but no token, ACLs deny (default_policy = deny); the management token may.
    expect(await rawStatus(ep, "/v1/kv/e2e/skeleton")).toBe(403);
    expect(await rawStatus(ep, "/v1/kv/e2e/skeleton", ep.access!.token)).toBe(200);
  });

  it("a fourth VM with the wrong gossip key cannot join, and the same VM with the right key can", async () => {
    // Everything right but the gossip key: a certificate from the cluster CA, the same
    // image, the cluster's own switch. Only the key keeps it out; the positive control
    // boots the same node (name, MAC, address, certificate, image) with the cluster's key
    // on a fresh persist disk (Consul keeps the key it first started with in its data
    // directory) and must join.
    const stateFile = JSON.parse(readFileSync(join(clusterDir, "cluster.json"), "utf8")) as ClusterState;
    const secrets = JSON.parse(readFileSync(join(clusterDir, "secrets.json"), "utf8")) as Secrets;
    const plan = planCluster(name, ["consul-server", "consul-server", "consul-server", "consul-server"]);
    const intruder = plan.nodes[3]!;
    const certified: Secrets = { ...secrets, nodes: { ...secrets.nodes, [intruder.name]: await issueNodeCertificates(secrets.cas, plan, intruder, { consul: "server" }) } };
    const wrong: Secrets = { ...certified, gossipKey: randomBytes(32).toString("base64") };
    const imageDir = join(clusterDir, "images", stateFile.nodes[0]!.image.replace("sha256:", ""));
    const manifest = JSON.parse(readFileSync(join(imageDir, "manifest.json"), "utf8")) as { services: { name: string; version?: string }[]; verity: VerityParams };
    const role = await loadRole(repoRoot, "consul-server", "debian");
    const consoleText = (dir: string) => (existsSync(join(dir, "console.log")) ? readFileSync(join(dir, "console.log"), "utf8") : "");
    const boot = async (withSecrets: Secrets): Promise<string> => {
      const tree = await nodeMetadata({
        plan,
        node: intruder,
        secrets: withSecrets,
        role,
        versions: Object.fromEntries(manifest.services.map((x) => [x.name, { version: x.version ?? "" }])),
        servers: { consul: plan.nodes.slice(0, 3) },
      });
      const dir = mkdtempSync(join(tmpdir(), "resin-e2e-intruder-"));
      writeFileSync(join(dir, "cidata.iso"), writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: serialiseMetadata(tree) }] }));
      await createPersistDisk(join(dir, "persist.qcow2"), 1);
      await startVm({
        name: intruder.name,
        dir,
        kernel: join(imageDir, "vmlinuz"),
        initrd: join(imageDir, "initrd.img"),
        rootDisk: join(imageDir, "rootfs.squashfs"),
        // Opened through dm-verity, as every node's root is.
        hashDisk: join(imageDir, "rootfs.verity"),
        append: kernelAppend(manifest.verity),
        memoryMib: 1024,
        cpus: 1,
        accel: await chooseAccel(),
        switchSocket: join(clusterDir, "switch", "ctl"),
        clusterMac: intruder.clusterMac,
        hostMac: intruder.hostMac,
        forwards: [],
        configDrive: join(dir, "cidata.iso"),
        persistDisk: join(dir, "persist.qcow2"),
      });
      return dir;
    };
    const until = async (what: string, dir: string, ok: () => Promise<boolean> | boolean) => {
      // A hang guard: a node boots under TCG in well under a minute.
      for (const deadline = Date.now() + 240_000; !(await ok()); await new Promise((r) => setTimeout(r, 1000))) {
        if (Date.now() > deadline) throw new Error(`${what} did not happen within 240 s; console:\n${consoleText(dir).slice(-3000)}`);
      }
    };
    const members = async () => (await lanMembers(consulAt(stateHome, name, "e2e-1"))).sort();

    // The wrong key: its join attempts fail on the key, as Consul 1.8.7 words it.
    const refusedDir = await boot(wrong);
    try {
      const refusal = /Failed to join \S+: No installed keys could decrypt the message/;
      await until("a join refused for its key", refusedDir, () => refusal.test(consoleText(refusedDir)));
      expect(await members()).toEqual(["e2e-1", "e2e-2", "e2e-3"]);
    } finally {
      await stopVm(refusedDir, { graceMs: 0 });
      rmSync(refusedDir, { recursive: true, force: true });
    }

    // The control: the cluster's key. It joins; then it is stopped and removed from the
    // member list and the raft (force-leave with prune, as an operator would), and the
    // cluster is back to its three servers.
    const ep = consulAt(stateHome, name, "e2e-1");
    const joinedDir = await boot(certified);
    try {
      await until(`${intruder.name} in the member list`, joinedDir, async () => (await members().catch((): string[] => [])).includes(intruder.name));
      expect(consoleText(joinedDir)).not.toMatch(/No installed keys could decrypt the message/);
    } finally {
      await stopVm(joinedDir, { graceMs: 0 });
      rmSync(joinedDir, { recursive: true, force: true });
    }
    // Repeated until done: a force-leave of a server that just failed can take longer than
    // one request waits on a loaded machine.
    const consul = consulClient(ep);
    await until("the cluster back to its three servers", joinedDir, async () => {
      const now = await members().catch(() => [intruder.name]);
      if (now.includes(intruder.name)) await consul.put(`/v1/agent/force-leave/${intruder.name}?prune`, { timeoutMs: 30_000 }).catch(() => undefined);
      const peers = (await consulView(ep)).peers ?? [];
      if (peers.includes(`${intruder.address}:8300`)) await consul.delete(`/v1/operator/raft/peer?address=${intruder.address}:8300`, { timeoutMs: 30_000 }).catch(() => undefined);
      return peers.length === 3 && !now.includes(intruder.name) && (await members().catch(() => [])).join(",") === "e2e-1,e2e-2,e2e-3";
    });
    await until("a healthy cluster with failure tolerance 1", joinedDir, () => {
      const st = resinStatus(stateHome, name);
      return st.healthy && st.failureTolerance === 1;
    });
  });

  it("a second `up` of the running cluster converges: it leaves every running node alone and changes no state", async () => {
    const before = ["cluster.json", "secrets.json"].map((f) => fileBytes(join(clusterDir, f)));
    const stateBefore = readFileSync(join(clusterDir, "cluster.json"), "utf8");
    const pids = processesUnder(stateHome).sort();
    const result = await resinAsync(["up", "--name", name], env);
    expect(result.status, result.stderr).toBe(0);
    expect(processesUnder(stateHome).sort(), "no VM was restarted or added").toEqual(pids);
    expect(JSON.parse(readFileSync(join(clusterDir, "cluster.json"), "utf8")), "cluster.json says the same").toEqual(JSON.parse(stateBefore));
    expect(["cluster.json", "secrets.json"].map((f) => fileBytes(join(clusterDir, f))), "and has the same bytes, as secrets.json").toEqual(before);
  });

  it("`down` stops every VM and the switch, and keeps the state", async () => {
    expect(processesUnder(stateHome).length).toBe(4); // three VMs and one switch
    const result = await resinAsync(["down", "--name", name], env);
    expect(result.status).toBe(0);
    expect(processesUnder(stateHome)).toEqual([]);
    expect(fileBytes(join(clusterDir, "secrets.json"))).toBeDefined();
    expect(resinStatus(stateHome, name).nodes.map((n) => n.vm.state)).toEqual(["stopped", "stopped", "stopped"]);
  });

  it("`up` again brings back the same cluster with its data", async () => {
    const secretsBefore = fileBytes(join(clusterDir, "secrets.json"));
    const result = await resinAsync(["up", "--name", name, "--timeout", "420"], env);
    if (result.status !== 0) throw new Error(`resin up (restart) failed:\n${result.stderr}`);
    expect(result.stderr).toContain("starting again");
    expect(fileBytes(join(clusterDir, "secrets.json"))).toBe(secretsBefore);
    expect(await kvGet(consulAt(stateHome, name, "e2e-2"), "e2e/skeleton")).toBe("written-through-e2e-1");
    const down = await resinAsync(["down", "--name", name], env);
    expect(down.status).toBe(0);
    expect(processesUnder(stateHome)).toEqual([]);
  });
});
