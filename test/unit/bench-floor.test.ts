import { describe, it, expect, inject } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { lockEntries, readLock } from "../../cli/artifacts/lock.js";
import { KERNEL_APPEND, qemuArgs, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { sha256 } from "../../cli/util/hash.js";
import { floorAppend, floorPlan, floorQemuArgs, parseTimeline } from "../../bench/floor/cluster.js";
import { FLOOR_APPLETS, FLOOR_HTTP_PORT, floorConsulConfig, floorDebs, floorInitramfs } from "../../bench/floor/image.js";

// The floor (bench/floor): the pure parts here; its boot is measured by `npm run bench`
// (BENCH_ONLY=floor boots it alone).

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const INIT = join(REPO, "bench", "floor", "init");

describe("the floor's kernel command line", () => {
  const plan = floorPlan();

  it("is Resin's, plus each node's name, addresses, MACs and every peer", () => {
    expect(plan.nodes.map((n) => n.name)).toEqual(["floor-1", "floor-2", "floor-3"]);
    const n = plan.nodes[1]!;
    expect(floorAppend(plan, n)).toBe(
      `${KERNEL_APPEND} floor.name=floor-2 floor.ip=${n.address}/${n.prefix} floor.mac=${n.clusterMac} ` +
        `floor.hostip=10.0.2.15/24 floor.hostmac=${n.hostMac} floor.join=${plan.nodes.map((x) => x.address).join(",")}`,
    );
  });

  it("differs between nodes only in the node's own facts", () => {
    const [a, b, c] = plan.nodes.map((n) => floorAppend(plan, n));
    expect(new Set([a, b, c]).size).toBe(3);
    const words = (s: string) => s.split(" ").filter((w) => !/^floor\.(name|ip|mac|hostmac)=/.test(w));
    expect(words(a!)).toEqual(words(b!));
    expect(words(b!)).toEqual(words(c!));
  });

  it("holds only characters /init accepts into its JSON", () => {
    for (const n of plan.nodes) {
      for (const w of floorAppend(plan, n).split(" ").filter((x) => x.startsWith("floor."))) expect(w.split("=")[1]).toMatch(/^[a-zA-Z0-9.,/:_-]+$/);
    }
  });
});

describe("the floor's QEMU command line", () => {
  const spec = {
    name: "floor-1",
    dir: "/state/floor/nodes/floor-1",
    kernel: "/img/vmlinuz",
    initrd: "/img/initrd.img",
    append: "console=ttyS0",
    memoryMib: 1024,
    cpus: 1,
    accel: "tcg" as const,
    switchSocket: "/state/floor/switch/ctl",
    clusterMac: "52:54:00:00:01:01",
    hostMac: "52:54:00:00:02:01",
    forwards: [{ hostPort: 41000, guestPort: FLOOR_HTTP_PORT }],
  };
  const args = floorQemuArgs(spec);

  it("is Resin's without the root and persist disks", () => {
    const resin: VmSpec = { ...spec, rootDisk: "/r", persistDisk: "/p" };
    const full = qemuArgs(resin);
    expect(args.filter((a) => a === "-drive")).toEqual([]);
    expect(args.some((a) => a.startsWith("virtio-blk-pci"))).toBe(false);
    // Everything else as Resin has it, in its order.
    const expected: string[] = [];
    for (let i = 0; i < full.length; i++) {
      if (["-drive", "-device"].includes(full[i]!) && /^(if=none,id=|virtio-blk-pci,drive=)(root|persist),/.test(full[i + 1] ?? "")) i++;
      else expected.push(full[i]!);
    }
    expect(expected.length).toBe(full.length - 8);
    expect(args).toEqual(expected);
  });

  it("keeps the private switch, and a user-mode NIC with no way out but one loopback forward", () => {
    const joined = args.join(" ");
    expect(joined).toContain("-netdev vde,id=cluster,sock=/state/floor/switch/ctl");
    expect(joined).toContain(`-netdev user,id=host,restrict=on,hostfwd=tcp:127.0.0.1:41000-:${FLOOR_HTTP_PORT}`);
    expect([...joined.matchAll(/hostfwd=/g)]).toHaveLength(1);
    expect(args.filter((a) => a.startsWith("virtio-net-pci"))).toHaveLength(2);
  });
});

const RAFT = { raftMultiplier: 1, serverStabilizationSeconds: 4 };

describe("the floor's Consul config and /init", () => {
  it("is a server expecting three, plain HTTP on 8500, data in RAM", () => {
    expect(JSON.parse(floorConsulConfig(RAFT))).toEqual({
      bootstrap_expect: 3,
      client_addr: "0.0.0.0",
      data_dir: "/var/lib/consul",
      datacenter: "dc1",
      disable_update_check: true,
      log_level: "INFO",
      ports: { http: 8500 },
      server: true,
      performance: { raft_multiplier: 1 },
      autopilot: { server_stabilization_time: "4s" },
    });
    expect(floorConsulConfig(RAFT)).toBe(floorConsulConfig(RAFT));
  });

  it("/init is valid sh, calls no applet it lacks, and prints its timeline", () => {
    const check = spawnSync("sh", ["-n", INIT], { encoding: "utf8" });
    expect(check.status, check.stderr).toBe(0);
    const text = readFileSync(INIT, "utf8");
    for (const applet of ["mount", "cat", "mkdir", "modprobe", "ip", "sleep", "poweroff"]) {
      expect(FLOOR_APPLETS.map((a) => a.split("/").pop())).toContain(applet);
      expect(text).toMatch(new RegExp(`\\b${applet}\\b`));
    }
    for (const step of ["init", "modules", "network", "exec consul"]) expect(text).toContain(`stamp ${step.includes(" ") ? `"${step}"` : step}`);
  });

  it("/init writes the node's Consul settings as JSON", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-floor-node-"));
    try {
      const json = nodeJson(dir, "floor-2", "10.88.0.12/24", "10.88.0.11,10.88.0.12,10.88.0.13");
      expect(JSON.parse(json)).toEqual({ node_name: "floor-2", bind_addr: "10.88.0.12", advertise_addr: "10.88.0.12", retry_join: ["10.88.0.11", "10.88.0.12", "10.88.0.13"] });
      expect(JSON.parse(nodeJson(dir, "a", "10.0.0.1/8", "10.0.0.1")).retry_join).toEqual(["10.0.0.1"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("parseTimeline reads /init's lines out of a console log", () => {
    const log = "[    0.0] kernel\r\nfloor: t=3.63 init\r\nfloor: t=3.87 modules\nnoise floor: t=9 x\nfloor: t=4.06 exec consul\r\n==> Starting Consul agent...\n";
    expect(parseTimeline(log)).toEqual([
      { step: "init", uptime: 3.63 },
      { step: "modules", uptime: 3.87 },
      { step: "exec consul", uptime: 4.06 },
    ]);
  });
});

/** Run /init's own lines that write node.json (from `peers=` to the echo), with its variables set, on the host's sh. */
function nodeJson(dir: string, name: string, ip: string, join_: string): string {
  const text = readFileSync(INIT, "utf8");
  const start = text.indexOf('peers="" rest=$join');
  const end = text.indexOf("\n", text.indexOf("> /run/consul/node.json"));
  expect(start).toBeGreaterThan(0);
  const out = join(dir, "node.json");
  const snippet = text.slice(start, end).replace("/run/consul/node.json", out);
  const r = spawnSync("sh", ["-c", `name='${name}' ip='${ip}' join='${join_}'\n${snippet}`], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(out, "utf8");
}

// The initramfs itself, from the .debs resin.lock.json names (the unit suite's global
// setup, test/unit/global-setup.ts, puts them in Resin's artifact cache).
const lock = await readLock(join(REPO, "resin.lock.json"));
const debs = floorDebs([...lockEntries(lock, "amd64").values()]);

describe("the floor's initramfs (from the cached .debs)", () => {
  it("is the same bytes from the same inputs, and holds exactly busybox, consul, its libraries, the NIC modules, the config and /init", { timeout: 60_000 }, async () => {
    const a = await floorInitramfs(debs, RAFT, { init: INIT });
    const b = await floorInitramfs(debs, RAFT, { init: INIT });
    expect(sha256(a.cpio)).toBe(sha256(b.cpio));
    expect(a.cpio.equals(b.cpio)).toBe(true);

    const k = `lib/modules/${a.kernelVersion}`;
    const kd = `${k}/kernel/drivers`;
    expect(a.files.map((f) => `${f.type} ${f.path}`)).toEqual(
      [
        "dir bin", "file bin/busybox", "symlink bin/cat", "symlink bin/mkdir", "symlink bin/mount", "symlink bin/sh", "symlink bin/sleep",
        "dir dev", "dir etc", "dir etc/consul.d", "file etc/consul.d/floor.json", "file etc/modules", "file init",
        "dir lib", "dir lib/modules", `dir ${k}`, `dir ${k}/kernel`, `dir ${kd}`, `dir ${kd}/char`, `dir ${kd}/char/hw_random`,
        `file ${kd}/char/hw_random/virtio-rng.ko`, `dir ${kd}/net`, `file ${kd}/net/net_failover.ko`, `file ${kd}/net/virtio_net.ko`,
        `dir ${kd}/virtio`, `file ${kd}/virtio/virtio.ko`, `file ${kd}/virtio/virtio_pci.ko`, `file ${kd}/virtio/virtio_pci_legacy_dev.ko`,
        `file ${kd}/virtio/virtio_pci_modern_dev.ko`, `file ${kd}/virtio/virtio_ring.ko`,
        `dir ${k}/kernel/net`, `dir ${k}/kernel/net/core`, `file ${k}/kernel/net/core/failover.ko`,
        `file ${k}/modules.alias`, `file ${k}/modules.builtin`, `file ${k}/modules.dep`, `file ${k}/modules.softdep`, `file ${k}/modules.symbols`,
        "dir lib/x86_64-linux-gnu", "file lib/x86_64-linux-gnu/libc.so.6", "file lib/x86_64-linux-gnu/libpthread.so.0",
        "dir lib64", "file lib64/ld-linux-x86-64.so.2",
        "dir proc", "dir run", "dir sbin", "symlink sbin/ip", "symlink sbin/modprobe", "symlink sbin/poweroff",
        "dir sys", "dir tmp", "dir usr", "dir usr/bin", "file usr/bin/consul", "dir var", "dir var/lib",
      ],
    );
    const byPath = new Map(a.files.map((f) => [f.path, f]));
    expect(byPath.get("usr/bin/consul")!.from).toBe(`deb:consul ${debs.consul.version}`);
    expect(byPath.get("bin/busybox")!.from).toBe(`deb:busybox-static ${debs.busybox.version}`);
    expect(byPath.get("init")!.sha256).toBe(sha256(readFileSync(INIT)));
    expect(byPath.get("etc/consul.d/floor.json")!.sha256).toBe(sha256(floorConsulConfig(RAFT)));
    expect(byPath.get("init")!.mode).toBe("0755");
    for (const applet of FLOOR_APPLETS) expect(byPath.get(applet)).toMatchObject({ type: "symlink", target: "/bin/busybox" });
  });

  it("its config, with a node file as /init writes it, passes consul validate", () => {
    // The floor's consul is the same bullseye package the global setup unpacked.
    expect(debs.consul.sha256).toBe(lock.debian["bullseye/consul"]?.sha256);
    const consulBin = inject("consul187");
    const dir = mkdtempSync(join(tmpdir(), "resin-floor-config-"));
    try {
      writeFileSync(join(dir, "floor.json"), floorConsulConfig(RAFT));
      nodeJson(dir, "floor-1", "10.88.0.11/24", "10.88.0.11,10.88.0.12,10.88.0.13");
      const r = spawnSync(consulBin, ["validate", join(dir, "floor.json"), join(dir, "node.json")], { encoding: "utf8" });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
