// Hostile input that must not hurt, without booting anything: image manifests that lie
// (bad digest, injected ports, traversal file names), cluster names that reach outside
// the clusters directory, two commands racing for one lock, and host ports that must
// never collide. Each bad case expects a clear ResinError and nothing changed on disk.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { installImage } from "../../cli/cluster/images.js";
import { withClusterLock } from "../../cli/state/lock.js";
import { clusterHandle } from "../../cli/state/state.js";
import { imageDigest, readManifest } from "../../cli/image/manifest.js";
import { probeInitramfs, PROBE_MARKER } from "../../cli/provider/qemu/accel.js";
import { assignPorts } from "../../cli/provider/qemu/ports.js";
import { qemuArgs } from "../../cli/provider/qemu/vm.js";
import { printable } from "../../cli/util/text.js";
import { ResinError } from "../../cli/util/errors.js";
import { sha256 } from "../../cli/util/hash.js";
import { snapshot } from "../tools/snapshot.js";

const scratch: string[] = [];
const savedState = process.env.RESIN_STATE_HOME;
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
  if (savedState === undefined) delete process.env.RESIN_STATE_HOME;
  else process.env.RESIN_STATE_HOME = savedState;
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-hostile-"));
  scratch.push(dir);
  return dir;
}

/** A small but real-shaped image directory whose manifest tells the truth. */
function fakeImage(dir: string): { dir: string; manifest: Record<string, any> } {
  mkdirSync(dir, { recursive: true });
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return { file: name, sha256: sha256(text), size: Buffer.byteLength(text) };
  };
  const kernel = file("vmlinuz", "kernel bytes");
  const initrd = file("initrd.img", "initramfs bytes");
  const rootfs = file("rootfs.squashfs", "root filesystem bytes");
  const manifest = {
    role: "consul-server",
    channel: "debian",
    inputDigest: "x",
    digest: imageDigest([kernel, initrd, rootfs]),
    kernel: { ...kernel, version: "6.1", modules: [] },
    initrd,
    rootfs,
    disk: { raw: file("disk.raw", "raw"), qcow2: file("disk.qcow2", "qcow2"), iso: file("disk.iso", "iso") },
    services: [{ name: "base", ports: { status: 9100 } }, { name: "consul", version: "1.8.7", ports: { https: 8501 } }],
    packages: [],
    releases: [],
    files: [],
    initramfsFiles: [],
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
  return { dir, manifest };
}

async function rejection(p: Promise<unknown>): Promise<ResinError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "expected a ResinError").toBeInstanceOf(ResinError);
  return e as ResinError;
}

describe("snapshot, the suites' proof that nothing changed on disk", () => {
  it("sees a changed byte, a new file and a removed file", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-snapshot-"));
    try {
      mkdirSync(join(dir, "a"));
      writeFileSync(join(dir, "a", "x"), "one");
      const before = snapshot(dir);
      expect(Object.keys(before)).toEqual(["/a/x"]);
      writeFileSync(join(dir, "a", "x"), "onf");
      expect(snapshot(dir)).not.toEqual(before);
      writeFileSync(join(dir, "a", "x"), "one");
      expect(snapshot(dir)).toEqual(before);
      writeFileSync(join(dir, "y"), "");
      expect(Object.keys(snapshot(dir)).sort()).toEqual(["/a/x", "/y"]);
      rmSync(join(dir, "a"), { recursive: true });
      expect(Object.keys(snapshot(dir))).toEqual(["/y"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("image manifests from an image set are checked, not trusted", () => {
  const D = "sha256:" + "a".repeat(64);
  it.each([
    ["a digest that is a path", (m: any) => (m.digest = "sha256:../../../../tmp/x"), "digest"],
    ["a digest with upper-case hex", (m: any) => (m.digest = D.toUpperCase()), "digest"],
    ["a port that injects QEMU options", (m: any) => (m.services[1].ports.https = "8501,hostfwd=tcp::2222-:22"), "services.1.ports.https"],
    ["a guestfwd command in a port", (m: any) => (m.services[1].ports.https = ",guestfwd=tcp:10.0.2.100:1-cmd:touch /tmp/pwned"), "services.1.ports.https"],
    ["a fractional port", (m: any) => (m.services[1].ports.https = 8501.5), "services.1.ports.https"],
    ["port 0", (m: any) => (m.services[0].ports.status = 0), "services.0.ports.status"],
    ["port 65536", (m: any) => (m.services[0].ports.status = 65536), "services.0.ports.status"],
    ["a port name with a comma", (m: any) => (m.services[1].ports = { "https,hostfwd=x": 8501 }), "services.1.ports"],
    ["a kernel file outside the image", (m: any) => (m.kernel.file = "../../../etc/passwd"), "kernel.file"],
    ["a rootfs file name with a slash", (m: any) => (m.rootfs.file = "sub/rootfs.squashfs"), "rootfs.file"],
    ["a disk file named ..", (m: any) => (m.disk.raw.file = ".."), "disk.raw.file"],
  ])("refuses %s, naming the field, and installs nothing", async (_what, spoil, field) => {
    process.env.RESIN_STATE_HOME = tempDir();
    const { dir, manifest } = fakeImage(join(tempDir(), "consul-server"));
    spoil(manifest);
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
    const before = snapshot(process.env.RESIN_STATE_HOME);
    const e = await rejection(installImage(clusterHandle("victim"), dir, D));
    expect(e.message, e.message).toContain(join(dir, "manifest.json"));
    expect(e.message, e.message).toContain(field);
    expect(e.message.split("\n")).toHaveLength(1);
    expect(snapshot(process.env.RESIN_STATE_HOME)).toEqual(before);
  });

  it("refuses a file whose bytes are not the ones its manifest lists, and installs nothing", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    const { dir, manifest } = fakeImage(join(tempDir(), "consul-server"));
    writeFileSync(join(dir, "rootfs.squashfs"), "another root filesystem");
    const e = await rejection(installImage(clusterHandle("victim"), dir, manifest.digest));
    expect(e.message, e.message).toMatch(/rootfs\.squashfs does not match its manifest/);
    expect(existsSync(clusterHandle("victim").images) ? readdirSync(clusterHandle("victim").images) : []).toEqual([]);
  });

  it("refuses a manifest whose digest is not the digest of its files", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    const { dir, manifest } = fakeImage(join(tempDir(), "consul-server"));
    manifest.digest = D;
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
    const e = await rejection(installImage(clusterHandle("victim"), dir, D));
    expect(e.message, e.message).toContain("is not the digest of the files it lists");
    expect(existsSync(clusterHandle("victim").imageDir(D))).toBe(false);
  });

  it("refuses a listed file that is a symlink to something else", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    const { dir, manifest } = fakeImage(join(tempDir(), "consul-server"));
    rmSync(join(dir, "vmlinuz"));
    execFileSync("ln", ["-s", "/etc/hostname", join(dir, "vmlinuz")]);
    const e = await rejection(installImage(clusterHandle("victim"), dir, manifest.digest));
    expect(e.message, e.message).toContain("vmlinuz is missing or not a regular file");
  });

  it("ties the disk images to the digest the cluster installed: a later image set with the same digest and another disk.raw is refused, nothing installed", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    // The cluster installs an image without its disk images (what `resin up` does).
    const first = fakeImage(join(tempDir(), "consul-server"));
    await installImage(clusterHandle("victim"), first.dir, first.manifest.digest);
    const installed = clusterHandle("victim").imageDir(first.manifest.digest);
    const installedManifest = readFileSync(join(installed, "manifest.json"), "utf8");
    expect(existsSync(join(installed, "disk.raw"))).toBe(false);
    // A crafted set: the same kernel, initrd and root filesystem (so the same digest), another disk.raw.
    const crafted = fakeImage(join(tempDir(), "consul-server"));
    expect(crafted.manifest.digest).toBe(first.manifest.digest);
    const evil = "a disk that boots something else";
    writeFileSync(join(crafted.dir, "disk.raw"), evil);
    // Its manifest telling the truth about the new disk…
    crafted.manifest.disk.raw = { file: "disk.raw", sha256: sha256(evil), size: Buffer.byteLength(evil) };
    writeFileSync(join(crafted.dir, "manifest.json"), JSON.stringify(crafted.manifest));
    const before = snapshot(process.env.RESIN_STATE_HOME);
    const e = await rejection(installImage(clusterHandle("victim"), crafted.dir, crafted.manifest.digest, { disks: true }));
    expect(e.message, e.message).toContain(`its manifest lists a disk.raw (sha256 ${sha256(evil)}) that is not the one cluster 'victim' installed`);
    expect(snapshot(process.env.RESIN_STATE_HOME)).toEqual(before);
    // …or lying, the installed one's hash over other bytes.
    crafted.manifest.disk.raw = first.manifest.disk.raw;
    writeFileSync(join(crafted.dir, "manifest.json"), JSON.stringify(crafted.manifest));
    const lie = await rejection(installImage(clusterHandle("victim"), crafted.dir, crafted.manifest.digest, { disks: true }));
    expect(lie.message, lie.message).toMatch(/disk\.raw does not match its manifest/);
    expect(snapshot(process.env.RESIN_STATE_HOME)).toEqual(before);
    expect(readFileSync(join(installed, "manifest.json"), "utf8")).toBe(installedManifest);
    // The honest set's disk images are taken.
    await installImage(clusterHandle("victim"), first.dir, first.manifest.digest, { disks: true });
    expect(readFileSync(join(installed, "disk.raw"), "utf8")).toBe("raw");
  });

  it("installs an honest image with the same bytes, in a 0700 cluster directory", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    const { dir, manifest } = fakeImage(join(tempDir(), "consul-server"));
    await installImage(clusterHandle("honest"), dir, manifest.digest, { disks: true });
    const installed = clusterHandle("honest").imageDir(manifest.digest);
    for (const f of ["vmlinuz", "initrd.img", "rootfs.squashfs", "manifest.json", "disk.raw", "disk.qcow2", "disk.iso"]) {
      expect(readFileSync(join(installed, f))).toEqual(readFileSync(join(dir, f)));
    }
    expect(statSync(clusterHandle("honest").dir).mode & 0o777).toBe(0o700);
    expect((await readManifest(installed))!.digest).toBe(manifest.digest);
  });
});

describe("cluster names", () => {
  it.each(["", ".", "..", "../x", "a/b", "-rf", "--yes", "x".repeat(40), "Upper", "a b", "a\u001b[31m"])("refuses %j before touching anything", (name) => {
    process.env.RESIN_STATE_HOME = tempDir();
    expect(() => clusterHandle(name)).toThrow(ResinError);
    expect(() => clusterHandle(name)).toThrow(/invalid cluster name/);
  });

  it("refuses an image digest that is not one", () => {
    expect(() => clusterHandle("ok").imageDir("sha256:../../x")).toThrow(/not an image digest/);
  });
});

describe("cluster.json is checked on every read", () => {
  const valid = () => ({
    version: 1,
    name: "victim",
    channel: "debian",
    datacenter: "dc1",
    subnet: "10.77.0.0/24",
    network: { mode: "static" },
    nodes: [
      {
        name: "victim-1", role: "consul-server", index: 1, address: "10.77.0.11", prefix: 24,
        clusterMac: "52:54:0a:1b:01:01", hostMac: "52:54:0a:1b:02:01", hostAddress: "10.0.2.15/24",
        image: "sha256:" + "a".repeat(64), memoryMib: 512, cpus: 1, ports: { "base.status": 40000 },
      },
    ],
  });
  it.each([
    ["a cluster MAC that adds QEMU options", (s: any) => (s.nodes[0].clusterMac = "52:54:00:00:00:01,romfile=/etc/shadow"), "nodes.0.clusterMac"],
    ["a host MAC with a second network line", (s: any) => (s.nodes[0].hostMac = "52:54:00:00:00:02\n* 10.9.9.9/8 host"), "nodes.0.hostMac"],
    ["an upper-case MAC", (s: any) => (s.nodes[0].hostMac = "52:54:00:00:00:0A"), "nodes.0.hostMac"],
    ["a node name that leaves nodes/", (s: any) => (s.nodes[0].name = "../../../tmp/x"), "nodes.0.name"],
    ["a node name that is not <cluster>-<index>", (s: any) => (s.nodes[0].name = "other-1"), "'other-1' is not victim-1"],
    ["an address with a space", (s: any) => (s.nodes[0].address = "10.77.0.11 host"), "nodes.0.address"],
    ["a host address without its prefix", (s: any) => (s.nodes[0].hostAddress = "10.0.2.15"), "nodes.0.hostAddress"],
    ["a cluster name that is not this cluster's", (s: any) => (s.name = "elsewhere"), "is not the cluster it is stored for"],
  ])("refuses %s, naming the field, and leaves the file alone", async (_what, spoil, field) => {
    process.env.RESIN_STATE_HOME = tempDir();
    const state = valid();
    mkdirSync(clusterHandle("victim").dir, { recursive: true });
    writeFileSync(clusterHandle("victim").stateFile, JSON.stringify(state));
    expect((await clusterHandle("victim").read())!.nodes[0]!.clusterMac).toBe("52:54:0a:1b:01:01");
    spoil(state);
    const text = JSON.stringify(state);
    writeFileSync(clusterHandle("victim").stateFile, text);
    const e = await rejection(clusterHandle("victim").read());
    expect(e.message, e.message).toContain(clusterHandle("victim").stateFile);
    expect(e.message, e.message).toContain(field);
    expect(e.message.split("\n")).toHaveLength(1);
    expect(e.hint).toMatch(/restore it from a backup/);
    expect(readFileSync(clusterHandle("victim").stateFile, "utf8")).toBe(text);
  });
});

describe("QEMU's command line", () => {
  it("cannot be given a forward that is not a pair of ports", () => {
    const spec = {
      name: "n", dir: "/d", kernel: "/k", initrd: "/i", rootDisk: "/r", append: "", memoryMib: 256, cpus: 1, accel: "tcg" as const,
      switchSocket: "/s", clusterMac: "52:54:00:00:00:01", hostMac: "52:54:00:00:00:02", persistDisk: "/p",
      forwards: [{ hostPort: "1,hostfwd=tcp::2222-:22" as unknown as number, guestPort: 22 }],
    };
    expect(() => qemuArgs(spec)).toThrow(/is not a pair of TCP ports/);
  });

  it("cannot be given a MAC that adds options", () => {
    const spec = {
      name: "n", dir: "/d", kernel: "/k", initrd: "/i", rootDisk: "/r", append: "", memoryMib: 256, cpus: 1, accel: "tcg" as const,
      switchSocket: "/s", clusterMac: "52:54:00:00:00:01", hostMac: "52:54:00:00:00:02", persistDisk: "/p", forwards: [],
    };
    expect(qemuArgs(spec)).toContain("virtio-net-pci,netdev=host,mac=52:54:00:00:00:02");
    expect(() => qemuArgs({ ...spec, hostMac: "52:54:00:00:00:02,romfile=/etc/shadow" })).toThrow(/"52:54:00:00:00:02,romfile=\/etc\/shadow" is not a MAC address/);
    expect(() => qemuArgs({ ...spec, clusterMac: "" })).toThrow(/is not a MAC address/);
  });
});

describe("host ports", () => {
  it("keeps recorded ports, moves one another program holds, and never gives two forwards one port", async () => {
    // A kernel that hands out the same port twice (as bind-to-0-and-close can) and one taken port.
    const offers = [41000, 41000, 41000, 41001, 41002];
    const { ports, moved } = await assignPorts(["base.status", "consul.https", "nomad.https"], { "base.status": 40000, "consul.https": 40001 }, new Set([40500]), {
      isFree: async (p) => p !== 40001,
      fresh: async () => offers.shift()!,
    });
    expect(ports["base.status"]).toBe(40000);
    expect(moved).toEqual([{ key: "consul.https", from: 40001, to: 41000 }]);
    expect(new Set(Object.values(ports)).size).toBe(3);
    expect(Object.values(ports)).not.toContain(40500);
  });

  it("gives a port another node of the cluster holds to nobody else", async () => {
    const { ports } = await assignPorts(["base.status"], { "base.status": 40500 }, new Set([40500]), { isFree: async () => true, fresh: async () => 41234 });
    expect(ports).toEqual({ "base.status": 41234 });
  });
});

describe("the cluster lock", () => {
  const cli = resolve(import.meta.dirname, "..", "..", "dist", "cli", "state", "lock.js");
  const stateJs = resolve(import.meta.dirname, "..", "..", "dist", "cli", "state", "state.js");

  /**
   * A separate node process that races for the lock through a barrier in `barrier`: it
   * says it is ready, waits until both contenders are, then asks for the lock. One that
   * takes it holds it until the other has had its answer (a file the other writes), so
   * the two attempts overlap however slowly the machine runs them; the wait has a hang
   * guard only (30 s), which a broken lock that let both in would reach.
   */
  function contender(stateHome: string, barrier: string, id: string): Promise<string> {
    const script = `
      const { withClusterLock } = await import(${JSON.stringify(cli)});
      const { clusterHandle } = await import(${JSON.stringify(stateJs)});
      const { existsSync, writeFileSync, readdirSync } = await import("node:fs");
      const { join } = await import("node:path");
      const barrier = ${JSON.stringify(barrier)};
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const until = async (ok) => { for (const end = Date.now() + 30000; !ok() && Date.now() < end; ) await sleep(5); };
      writeFileSync(join(barrier, "ready-${id}"), "");
      await until(() => readdirSync(barrier).filter((f) => f.startsWith("ready-")).length === 2);
      const otherAnswered = () => readdirSync(barrier).some((f) => f.startsWith("answered-") && f !== "answered-${id}");
      let result;
      try {
        await withClusterLock(clusterHandle("race"), "test", () => until(otherAnswered));
        result = "took it";
      } catch (e) { result = "refused: " + e.message; }
      writeFileSync(join(barrier, "answered-${id}"), "");
      console.log(result);`;
    return new Promise((resolvePromise) => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, RESIN_STATE_HOME: stateHome } });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.on("close", () => resolvePromise(out.trim()));
    });
  }

  it("lets exactly one of two racing commands take a stale lock", async () => {
    const stateHome = tempDir();
    for (let round = 0; round < 5; round++) {
      mkdirSync(join(stateHome, "clusters"), { recursive: true });
      const barrier = join(tempDir(), "barrier");
      mkdirSync(barrier);
      // A lock whose owner has died (pid far beyond pid_max), as a crash leaves it.
      writeFileSync(join(stateHome, "clusters", "race.lock"), "999999999 up\n");
      const results = await Promise.all([contender(stateHome, barrier, "a"), contender(stateHome, barrier, "b")]);
      expect(results.filter((r) => r === "took it"), results.join(" | ")).toHaveLength(1);
      expect(results.find((r) => r !== "took it"), results.join(" | ")).toMatch(/^refused: cluster 'race' is busy: another resin command \(pid \d+, test\)/);
      expect(readdirSync(join(stateHome, "clusters"))).toEqual([]);
    }
  }, 60_000);

  it("lets exactly one of three racing commands own a stale lock, whatever the order they reach it", async () => {
    // Three processes, each held (a barrier, not a delay) after it has read the stale
    // lock and before it acts on it. The first is let go and takes the lock over; then
    // the other two, whose view of the lock is now out of date, are let go together.
    // However they interleave, the first must stay the only owner.
    const stateHome = tempDir();
    const script = `
      import { createInterface } from "node:readline";
      const { withClusterLock } = await import(${JSON.stringify(cli)});
      const { clusterHandle } = await import(${JSON.stringify(stateJs)});
      const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
      const next = async () => (await lines.next()).value;
      let held = false;
      try {
        await withClusterLock(clusterHandle("race3"), "test", async () => { console.log("owner"); await next(); }, {
          onStale: async () => { if (held) return; held = true; console.log("stale"); await next(); },
        });
        console.log("took it");
      } catch (e) { console.log("refused: " + e.message); }
      process.exit(0);`;
    for (let round = 0; round < 10; round++) {
      mkdirSync(join(stateHome, "clusters"), { recursive: true });
      writeFileSync(join(stateHome, "clusters", "race3.lock"), "999999999 up\n");
      const children = [0, 1, 2].map(() => {
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, RESIN_STATE_HOME: stateHome } });
        const said: string[] = [];
        const waiters: (() => void)[] = [];
        let buffer = "";
        child.stdout.on("data", (d) => {
          buffer += d;
          for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
            said.push(buffer.slice(0, i));
            buffer = buffer.slice(i + 1);
            for (const w of waiters.splice(0)) w();
          }
        });
        child.stderr.on("data", (d) => said.push(`stderr: ${d}`));
        const closed = new Promise<void>((r) => child.on("close", () => r()));
        /** Resolves once the child has said a line matching `pattern`. */
        const saying = async (pattern: RegExp) => {
          while (!said.some((l) => pattern.test(l))) await new Promise<void>((r) => waiters.push(r));
        };
        return { child, said, saying, closed, tell: (line: string) => child.stdin.write(`${line}\n`) };
      });
      const [first, ...rest] = children as [(typeof children)[0], ...typeof children];
      await Promise.all(children.map((c) => c.saying(/^stale$/)));
      first.tell("go");
      await first.saying(/^owner$/);
      for (const c of rest) c.tell("go");
      // Each of the other two ends up owning the lock or refused.
      await Promise.all(rest.map((c) => c.saying(/^(owner|refused: .*)$/)));
      const all = children.map((c) => c.said.join(" / ")).join(" | ");
      expect(rest.filter((c) => c.said.includes("owner")), all).toEqual([]);
      for (const c of rest) expect(c.said.at(-1), all).toMatch(/^refused: cluster 'race3' is busy: another resin command \(pid \d+, test\)/);
      first.tell("release");
      await Promise.all(children.map((c) => c.closed));
      expect(first.said.at(-1), all).toBe("took it");
      expect(readdirSync(join(stateHome, "clusters")), all).toEqual([]);
    }
  }, 120_000);

  it("never reads a half-written lock: a live owner's lock always names it", async () => {
    process.env.RESIN_STATE_HOME = tempDir();
    const held = clusterHandle("held");
    await withClusterLock(held, "up", async () => {
      const text = readFileSync(join(process.env.RESIN_STATE_HOME!, "clusters", "held.lock"), "utf8");
      expect(text).toBe(`${process.pid} up\n`);
      const e = await rejection(withClusterLock(held, "down", async () => undefined));
      expect(e.message).toBe(`cluster 'held' is busy: another resin command (pid ${process.pid}, up) is changing it`);
    });
    expect(existsSync(join(process.env.RESIN_STATE_HOME!, "clusters", "held.lock"))).toBe(false);
  });

  it("refuses a bad cluster name before creating anything", async () => {
    process.env.RESIN_STATE_HOME = join(tempDir(), "state");
    const e = await rejection((async () => withClusterLock(clusterHandle("../x"), "destroy", async () => undefined))());
    expect(e.message).toBe("invalid cluster name '../x'");
    expect(existsSync(process.env.RESIN_STATE_HOME)).toBe(false);
  });
});

describe("text from guests", () => {
  it("loses escape sequences and control characters, keeps lines and tabs", () => {
    expect(printable("ok\u001b[2J\u001b[31mred\u001b[0m\r\n\u001b]0;evil title\u0007next\tline\u0000\n")).toBe("okred\nnext\tline\n");
  });
});

describe("the accelerator probe's initramfs", () => {
  it("is the image's initramfs followed by an archive whose /init prints the marker and powers off", () => {
    const image = Buffer.from("the image's own gzipped cpio");
    const probe = probeInitramfs(image);
    expect(probe.subarray(0, image.length)).toEqual(image);
    const cpio = gunzipSync(probe.subarray(image.length));
    const work = tempDir();
    execFileSync("cpio", ["-idm", "--quiet"], { cwd: work, input: cpio });
    const init = readFileSync(join(work, "init"), "utf8");
    expect(statSync(join(work, "init")).mode & 0o777).toBe(0o755);
    expect(init).toContain(`echo "${PROBE_MARKER}"`);
    expect(init).toMatch(/poweroff -f\n$/);
  });
});
