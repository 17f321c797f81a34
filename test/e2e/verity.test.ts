// dm-verity at boot, with real Consul 1.8.7 on three QEMU nodes: one node's copy of its
// image gets one byte of its root filesystem flipped, as someone with write access to
// that node's disk would do, and the node is restarted. Its /init must refuse the root
// before stage 1 and say why on the console, `resin status` must show it crashed with
// that reason, and the other two must keep quorum. Put back on the untouched image, the
// same node boots and rejoins: what stopped it was the flipped byte.
//
// A local cluster's nodes share one copy of each image (clusters/<name>/images/<digest>),
// so the tampered disk is a per-node copy: the image's files copied to their own
// directory, one byte flipped there, and the node's entry in cluster.json pointed at it.
// The manifest (and so the root hash on the kernel command line) stays the built one:
// what changed is the root filesystem's bytes only.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { kvGet, kvPut } from "../../cli/cluster/consul.js";
import { consulAt, consulServerClusterForSuite, keepLogsOnFailure, resinAsync, resinStatus } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-verity-"));
keepLogsOnFailure(stateHome, "verity");
const env = { RESIN_STATE_HOME: stateHome };
const name = "verity";
const clusterDir = join(stateHome, "clusters", name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(line: string): void {
  process.stderr.write(`verity: ${line}\n`);
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(500);
  }
}

function readState(): { nodes: { name: string; image: string; address: string }[] } {
  return JSON.parse(readFileSync(join(clusterDir, "cluster.json"), "utf8"));
}

/** Point `node` at the image with digest `digest` in cluster.json (nothing else changes). */
function setNodeImage(node: string, digest: string): void {
  const state = JSON.parse(readFileSync(join(clusterDir, "cluster.json"), "utf8"));
  state.nodes.find((n: { name: string }) => n.name === node).image = digest;
  writeFileSync(join(clusterDir, "cluster.json"), `${JSON.stringify(state, null, 2)}\n`);
}

describe("a node whose root filesystem was changed on its disk", () => {
  consulServerClusterForSuite(name, stateHome, env);

  it("the image's initramfs holds dmsetup, its libraries and dm-verity; its root filesystem holds no dmsetup", () => {
    const image = readState().nodes[0]!.image.replace(/^sha256:/, "");
    const manifest = JSON.parse(readFileSync(join(clusterDir, "images", image, "manifest.json"), "utf8"));
    const inInitramfs = manifest.initramfsFiles.map((f: { path: string }) => f.path);
    expect(inInitramfs).toEqual(expect.arrayContaining(["sbin/dmsetup", "lib/x86_64-linux-gnu/libdevmapper.so.1.02.1", "lib64/ld-linux-x86-64.so.2"]));
    expect(inInitramfs.some((p: string) => p.endsWith("/dm-verity.ko"))).toBe(true);
    expect(manifest.files.map((f: { path: string }) => f.path).filter((p: string) => /dmsetup|libdevmapper/.test(p))).toEqual([]);
  });

  it("refuses to boot, says so on its console and in resin status, and the other two keep quorum", async () => {
    const before = resinStatus(stateHome, name);
    expect(before.healthy).toBe(true);
    // Every node's console shows its root was opened through dm-verity.
    for (const n of before.nodes) {
      expect(readFileSync(join(clusterDir, "nodes", n.name, "console.log"), "latin1")).toMatch(/resin: root filesystem verified by dm-verity \(root hash [0-9a-f]{64}\)/);
    }
    // A follower, so the test also sees the cluster keep its leader.
    const victim = before.nodes.find((n) => !before.leader!.startsWith(`${n.address}:`))!.name;
    const others = before.nodes.map((n) => n.name).filter((n) => n !== victim);
    const original = readState().nodes.find((n) => n.name === victim)!.image;
    const originalDir = join(clusterDir, "images", original.replace(/^sha256:/, ""));
    const manifest = JSON.parse(readFileSync(join(originalDir, "manifest.json"), "utf8"));

    // The node's own copy of the image, one byte flipped in the middle of its squashfs.
    const tamperedDigest = `sha256:${createHash("sha256").update(`tampered copy of ${original} for ${victim}`).digest("hex")}`;
    const tamperedDir = join(clusterDir, "images", tamperedDigest.replace(/^sha256:/, ""));
    mkdirSync(tamperedDir);
    for (const f of ["vmlinuz", "initrd.img", "rootfs.squashfs", "rootfs.verity", "manifest.json"]) copyFileSync(join(originalDir, f), join(tamperedDir, f));
    const offset = Math.floor(manifest.rootfs.size / 2) + 123;
    const fd = openSync(join(tamperedDir, "rootfs.squashfs"), "r+");
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    const was = byte[0]!;
    byte[0] = was ^ 0x01;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);
    report(`${victim}: flipped byte ${offset} of its rootfs.squashfs (0x${was.toString(16)} → 0x${byte[0]!.toString(16)}); root hash on its command line stays ${manifest.verity.rootHash}`);

    expect((await resinAsync(["stop", victim, "--name", name], env)).status).toBe(0);
    setNodeImage(victim, tamperedDigest);
    const startedAt = Date.now();
    expect((await resinAsync(["start", victim, "--name", name], env)).status).toBe(0);

    // It powers itself off before stage 1: crashed, with the reason from its console.
    const crashed = await until(`${victim} to stop on its tampered root`, 180_000, () => {
      const s = resinStatus(stateHome, name);
      const n = s.nodes.find((x) => x.name === victim)!;
      return n.vm.state === "crashed" ? n : undefined;
    });
    report(`${victim} refused its root ${((Date.now() - startedAt) / 1000).toFixed(1)}s after resin start: ${crashed.vm.reason}`);
    expect(crashed.vm.reason).toMatch(/^root filesystem failed verification: /);
    expect(crashed.vm.reason).toContain(manifest.verity.rootHash);
    const console = readFileSync(join(clusterDir, "nodes", victim, "console.log"), "latin1");
    expect(console).toMatch(/^resin: FATAL: root filesystem failed verification: \/dev\/vd[a-z] does not match root hash [0-9a-f]{64} \(.*verity.*corrupted.*\)/m);
    // Nothing of stage 1 ran.
    expect(console).not.toContain("resin: boot ");
    expect(console).not.toContain("root filesystem verified by dm-verity");

    // The other two keep quorum: a leader, and a write and a read through each.
    const after = resinStatus(stateHome, name);
    expect(after.leader).not.toBeNull();
    for (const n of others) {
      await kvPut(consulAt(stateHome, name, n), `verity/${n}`, `written while ${victim} was refused`);
      expect(await kvGet(consulAt(stateHome, name, n), `verity/${n}`)).toBe(`written while ${victim} was refused`);
    }

    // Back on the untouched image, the same node boots and the cluster is whole again.
    setNodeImage(victim, original);
    expect((await resinAsync(["start", victim, "--name", name], env)).status).toBe(0);
    await until("the cluster to be healthy again with the node on its untouched image", 240_000, () => {
      const s = resinStatus(stateHome, name);
      return s.healthy && s.failureTolerance === 1 ? true : undefined;
    });
    expect(readFileSync(join(clusterDir, "nodes", victim, "console.log"), "latin1")).toContain(`resin: root filesystem verified by dm-verity (root hash ${manifest.verity.rootHash})`);
  });
});
