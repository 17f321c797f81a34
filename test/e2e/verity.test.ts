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
//
// A block that changes while a node runs: the node boots on its own copy of the image
// with a virtio memory balloon, the file data of that copy's squashfs is changed under
// it (one byte in every 4096-byte block between the superblock and the inode table),
// and the host then inflates the balloon over QMP until the guest must drop the clean
// page cache it runs from (Consul's binary, busybox, ...). Squashfs reads a page it no
// longer holds with a bio to the dm-verity device, so the next page the node needs
// comes from the changed disk: dm-verity must refuse it and, in panic_on_corruption
// mode, stop the kernel before anything runs on it. No hook in the image does this:
// the balloon is a host device, its driver the one libvirt's domains use.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { kvGet, kvPut } from "../../cli/cluster/consul.js";
import { clusterHandle } from "../../cli/state/state.js";
import { startNode } from "../../cli/provider/qemu/provider.js";
import { qmpCommand } from "../../cli/provider/qemu/qmp.js";
import { consulAt, consulServerClusterForSuite, keepLogsOnFailure, resinAsync, resinStatus, until } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-verity-"));
keepLogsOnFailure(stateHome, "verity");
const env = { RESIN_STATE_HOME: stateHome };
process.env.RESIN_STATE_HOME = stateHome; // startNode below reads it too
const name = "verity";
const cluster = clusterHandle(name);
const clusterDir = join(stateHome, "clusters", name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(line: string): void {
  process.stderr.write(`verity: ${line}\n`);
}


function readState(): { nodes: { name: string; image: string; address: string }[] } {
  return JSON.parse(readFileSync(join(clusterDir, "cluster.json"), "utf8"));
}

/** A copy of image `original` under its own digest (made from `why`), for one node: the files the provider boots from and the manifest. */
function imageCopy(original: string, why: string): { digest: string; dir: string } {
  const digest = `sha256:${createHash("sha256").update(why).digest("hex")}`;
  const dir = join(clusterDir, "images", digest.replace(/^sha256:/, ""));
  mkdirSync(dir);
  for (const f of ["vmlinuz", "initrd.img", "rootfs.squashfs", "rootfs.verity", "manifest.json"]) copyFileSync(join(clusterDir, "images", original.replace(/^sha256:/, ""), f), join(dir, f));
  return { digest, dir };
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
    const { digest: tamperedDigest, dir: tamperedDir } = imageCopy(original, `tampered copy of ${original} for ${victim}`);
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

  it("a block changed under a running node is never served: the node panics when it reads it, and the other two keep quorum", async () => {
    const before = resinStatus(stateHome, name);
    expect(before.healthy).toBe(true);
    const victim = before.nodes.find((n) => !before.leader!.startsWith(`${n.address}:`))!.name;
    const others = before.nodes.map((n) => n.name).filter((n) => n !== victim);
    const original = readState().nodes.find((n) => n.name === victim)!.image;
    const manifest = JSON.parse(readFileSync(join(clusterDir, "images", original.replace(/^sha256:/, ""), "manifest.json"), "utf8"));

    // The node boots, untouched, on its own copy of the image, with a balloon.
    const copy = imageCopy(original, `run-time copy of ${original} for ${victim}`);
    expect((await resinAsync(["stop", victim, "--name", name], env)).status).toBe(0);
    setNodeImage(victim, copy.digest);
    const state = (await cluster.read())!;
    await startNode(cluster, state, state.nodes.find((n) => n.name === victim)!, "tcg", () => {}, { balloon: true });
    await cluster.write(state);
    await until(`${victim} to rejoin on its own copy of the image`, 240_000, () => {
      const s = resinStatus(stateHome, name);
      return s.healthy && s.failureTolerance === 1 ? true : undefined;
    });
    const consolePath = join(clusterDir, "nodes", victim, "console.log");
    expect(readFileSync(consolePath, "latin1")).toContain(`resin: root filesystem verified by dm-verity (root hash ${manifest.verity.rootHash})`);

    // Its disk changes under it: one byte in each 4096-byte block (dm-verity's data
    // block) of the squashfs's file data, which runs from the superblock to the inode
    // table. The superblock, inodes and directories stay as they were.
    const fd = openSync(join(copy.dir, "rootfs.squashfs"), "r+");
    const superblock = Buffer.alloc(96);
    readSync(fd, superblock, 0, 96, 0);
    expect(superblock.readUInt32LE(0)).toBe(0x73717368); // "hsqs"
    const inodeTable = Number(superblock.readBigUInt64LE(64));
    let changed = 0;
    const byte = Buffer.alloc(1);
    for (let block = 1; (block + 1) * 4096 <= inodeTable; block++) {
      readSync(fd, byte, 0, 1, block * 4096 + 2048);
      byte[0] = byte[0]! ^ 0xff;
      writeSync(fd, byte, 0, 1, block * 4096 + 2048);
      changed++;
    }
    closeSync(fd);
    const changedAt = Date.now();
    report(`${victim}: changed one byte in each of ${changed} blocks (4096 bytes) of its running root's file data (blocks 1 to ${changed}; the inode table starts at byte ${inodeTable})`);
    // Nothing it holds in memory is affected: it runs on until it reads from the disk.
    expect(resinStatus(stateHome, name).nodes.find((n) => n.name === victim)!.vm.state).toBe("running");

    // The host takes memory from it, step by step, until it must read its root again.
    const qmp = join(cluster.node(victim).dir, "qmp.sock");
    let actual = "";
    const crashedNode = () => {
      const n = resinStatus(stateHome, name).nodes.find((x) => x.name === victim)!;
      return n.vm.state === "crashed" ? n : undefined;
    };
    let crashed = crashedNode();
    for (const mib of [512, 384, 256, 192, 160, 128, 112, 96, 80, 64]) {
      if (crashed) break;
      try {
        await qmpCommand(qmp, { execute: "balloon", arguments: { value: mib * 1048576 } });
      } catch {
        // QEMU is gone: the node stopped as the balloon grew.
      }
      const deadline = Date.now() + 20_000;
      while (!(crashed = crashedNode()) && Date.now() < deadline) {
        actual = await qmpCommand(qmp, { execute: "query-balloon" }).then((r) => `${Math.round((r as { actual: number }).actual / 1048576)} MiB`, () => actual);
        await sleep(1000);
      }
      report(`${victim}: balloon target ${mib} MiB, guest at ${actual || "?"}${crashed ? ": stopped" : ""}`);
    }
    if (!crashed) throw new Error(`${victim} still runs with its guest down to ${actual}: it read nothing from its changed root, or served it`);
    report(`${victim} stopped ${((Date.now() - changedAt) / 1000).toFixed(1)}s after its root changed: ${crashed.vm.reason}`);
    const console = readFileSync(consolePath, "latin1");
    const said = console.split("\n").filter((l) => /device-mapper: verity|Kernel panic - not syncing/.test(l)).slice(-4);
    report(`${victim}'s console:\n  ${said.join("\n  ")}`);
    // dm-verity found a changed data block and panicked the kernel: nothing ran on it.
    expect(console).toMatch(/device-mapper: verity: \d+:\d+: data block \d+ is corrupted/);
    expect(console).toMatch(/Kernel panic - not syncing: dm-verity device corrupted/);
    expect(crashed.vm.reason).toMatch(/^kernel panic: .*dm-verity device corrupted/);

    // The other two keep quorum: a leader, and a write and a read through each.
    expect(resinStatus(stateHome, name).leader).not.toBeNull();
    for (const n of others) {
      await kvPut(consulAt(stateHome, name, n), `verity/run/${n}`, `written after ${victim} panicked`);
      expect(await kvGet(consulAt(stateHome, name, n), `verity/run/${n}`)).toBe(`written after ${victim} panicked`);
    }
  });
});
