import { describe, it, expect, afterEach } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { accelArgs, chooseAccel, kvmCanRun, probeInitramfs, PROBE_MARKER } from "../../cli/provider/qemu/accel.js";
import { KERNEL_APPEND, kernelAppend, kernelBase, qemuArgs, startVm } from "../../cli/provider/qemu/vm.js";
import { ARCH, archOf, emulatorsFor, hostArch } from "../../cli/spec/arch.js";
import { checkSameArches, nodeState, parseArchSpec } from "../../cli/cluster/create.js";
import { NodeStateSchema, type ClusterState } from "../../cli/state/state.js";
import { platformOf, PlanManifestSchema } from "../../cli/provider/manifest.js";
import { formatStatus, StatusSchema } from "../../cli/commands/status.js";
import { ResinError } from "../../cli/util/errors.js";
import { spec } from "./vm-spec.js";

// The run side of arm64 (#23): what a node boots as comes from its image's architecture,
// looked up in cli/spec/arch.ts. The command line, the probe, the accelerator choice,
// the --arch flag, the cluster state and the status table, each read back.

const value = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe("qemuArgs per architecture", () => {
  it("amd64 (and a spec without arch) is q35 with TCG's max CPU, as before", () => {
    for (const s of [spec(), spec({ arch: "amd64" })]) {
      const args = qemuArgs(s);
      expect(value(args, "-machine")).toBe("q35");
      expect(value(args, "-cpu")).toBe("max");
    }
  });

  it("arm64 is virt with a concrete CPU under TCG, and the same virtio-pci devices, switch and forwards", () => {
    const amd = qemuArgs(spec());
    const arm = qemuArgs(spec({ arch: "arm64" }));
    expect(value(arm, "-machine")).toBe("virt");
    expect(value(arm, "-cpu")).toBe("cortex-a57");
    // Everything but the machine, the CPU and virt's keyboard (for ctrl-alt-del) is the same command line.
    const strip = (a: string[]) => a.filter((_, i) => !["-machine", "-cpu"].includes(a[i - 1] ?? "") && !["-machine", "-cpu"].includes(a[i]!) && a[i] !== "virtio-keyboard-pci" && a[i + 1] !== "virtio-keyboard-pci");
    expect(strip(arm)).toEqual(strip(amd));
    expect(amd).not.toContain("virtio-keyboard-pci");
    expect(arm.filter((a) => a.startsWith("virtio-"))).toEqual(["virtio-blk-pci,drive=root,serial=root", "virtio-rng-pci", "virtio-keyboard-pci", "virtio-blk-pci,drive=cidata,serial=cidata", "virtio-blk-pci,drive=persist,serial=persist", "virtio-net-pci,netdev=cluster,mac=52:54:2a:97:01:01", "virtio-net-pci,netdev=host,mac=52:54:2a:97:02:01"]);
  });

  it("KVM takes the host CPU whatever the architecture", () => {
    expect(accelArgs("kvm", "arm64")).toEqual(["-accel", "kvm", "-cpu", "host"]);
    expect(accelArgs("tcg", "arm64")).toEqual(["-accel", "tcg,thread=multi", "-cpu", "cortex-a57"]);
  });

  it("QEMU itself accepts the arm64 machine and CPU (qemu-system-aarch64 -machine virt -cpu …, started paused and asked to quit)", () => {
    const out = execFileSync(ARCH.arm64.qemu, ["-machine", "virt", ...accelArgs("tcg", "arm64").slice(2), "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"], {
      input: '{"execute":"qmp_capabilities"}\n{"execute":"query-cpus-fast"}\n{"execute":"quit"}\n',
      timeout: 30_000,
    }).toString();
    expect(out).toContain('"target": "aarch64"');
  });
});

describe("the kernel command line per architecture", () => {
  it("names the architecture's serial console", () => {
    expect(kernelBase("amd64")).toBe(KERNEL_APPEND);
    expect(KERNEL_APPEND).toBe("console=ttyS0 panic=-1 loglevel=4");
    expect(kernelBase("arm64")).toBe("console=ttyAMA0 panic=-1 loglevel=4");
    expect(kernelAppend(undefined, "resin.x=1", "arm64")).toBe("console=ttyAMA0 panic=-1 loglevel=4 resin.x=1");
    expect(kernelAppend(undefined, "resin.x=1")).toBe("console=ttyS0 panic=-1 loglevel=4 resin.x=1");
  });
});

describe("the accelerator probe per architecture", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  const initOf = (probe: Buffer) => {
    const work = mkdtempSync(join(tmpdir(), "resin-arch-probe-"));
    dirs.push(work);
    execFileSync("cpio", ["-idm", "--quiet"], { cwd: work, input: gunzipSync(probe) });
    return readFileSync(join(work, "init"), "utf8");
  };

  it("writes its marker to the architecture's console: /dev/ttyS0 on amd64, /dev/ttyAMA0 on arm64", () => {
    expect(initOf(probeInitramfs(Buffer.alloc(0)))).toContain(`echo "${PROBE_MARKER}" > /dev/ttyS0`);
    expect(initOf(probeInitramfs(Buffer.alloc(0), "arm64"))).toContain(`echo "${PROBE_MARKER}" > /dev/ttyAMA0`);
  });

  it("KVM only for the host's own architecture", () => {
    expect(kvmCanRun("amd64", "amd64")).toBe(true);
    expect(kvmCanRun("arm64", "amd64")).toBe(false);
    expect(kvmCanRun("amd64", "arm64")).toBe(false);
    expect(kvmCanRun("arm64", undefined)).toBe(false);
  });

  it("a node of another architecture than the host's is TCG without a probe, even under RESIN_ACCEL=kvm, and says why once", async () => {
    const other = hostArch() === "arm64" ? "amd64" : "arm64";
    const saved = process.env.RESIN_ACCEL;
    const said: string[] = [];
    try {
      process.env.RESIN_ACCEL = "kvm";
      // No image directory and probe arguments that would fail: the answer cannot come from a probe.
      expect(await chooseAccel("/nonexistent", (l) => said.push(l), ["-S"], other)).toBe("tcg");
      delete process.env.RESIN_ACCEL;
      expect(await chooseAccel("/nonexistent", (l) => said.push(l), ["-S"], other)).toBe("tcg");
      process.env.RESIN_ACCEL = "tcg";
      expect(await chooseAccel("/nonexistent", (l) => said.push(l), ["-S"], other)).toBe("tcg");
    } finally {
      if (saved === undefined) delete process.env.RESIN_ACCEL;
      else process.env.RESIN_ACCEL = saved;
    }
    expect(said).toHaveLength(2); // not when TCG was asked for anyway
    expect(said[0]).toContain(`${other} nodes on this`);
    expect(said[0]).toContain("emulated by TCG");
  });
});

describe("starting a node whose emulator is missing", () => {
  it("names the program and its Debian package, before QEMU is run", async () => {
    const saved = process.env.PATH;
    process.env.PATH = mkdtempSync(join(tmpdir(), "resin-empty-path-"));
    try {
      await expect(startVm(spec({ arch: "arm64", dir: mkdtempSync(join(tmpdir(), "resin-node-")) }))).rejects.toThrow(
        expect.objectContaining({ message: "missing host program: qemu-system-aarch64", hint: "install with: apt-get install qemu-system-arm" }),
      );
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe("emulatorsFor", () => {
  it("asks only for the emulators the nodes need, one per architecture", () => {
    expect(emulatorsFor(["amd64", "amd64"])).toEqual(["qemu-system-x86_64"]);
    expect(emulatorsFor(["arm64", "arm64", "arm64"])).toEqual(["qemu-system-aarch64"]);
    expect(emulatorsFor(["arm64", "amd64", "arm64"])).toEqual(["qemu-system-x86_64", "qemu-system-aarch64"]);
  });
});

describe("--arch", () => {
  const roles = ["consul-server", "consul-server", "consul-server", "cache"];

  it("absent: every role amd64", () => {
    expect([...parseArchSpec(undefined, roles)]).toEqual([["consul-server", "amd64"], ["cache", "amd64"]]);
  });

  it("one architecture is every role's", () => {
    expect([...parseArchSpec("arm64", roles)]).toEqual([["consul-server", "arm64"], ["cache", "arm64"]]);
  });

  it("ROLE=ARCH,… sets roles one by one; a role not named stays amd64", () => {
    expect([...parseArchSpec("consul-server=arm64", roles)]).toEqual([["consul-server", "arm64"], ["cache", "amd64"]]);
    expect([...parseArchSpec("cache=arm64, consul-server=amd64", roles)]).toEqual([["consul-server", "amd64"], ["cache", "arm64"]]);
  });

  it("refuses an unknown architecture, an unknown role and a malformed entry, naming it and the form", () => {
    const err = (s: string) => {
      try {
        parseArchSpec(s, roles);
      } catch (e) {
        return e as ResinError;
      }
      throw new Error(`accepted ${s}`);
    };
    expect(err("riscv64").message).toBe("--arch: 'riscv64' is not an architecture Resin builds for");
    expect(err("riscv64").hint).toContain("--arch consul-server=arm64,cache=amd64");
    expect(err("consul-server=x86_64").message).toBe("--arch: 'x86_64' is not an architecture Resin builds for");
    expect(err("nomad-client=arm64").message).toBe("--arch: role 'nomad-client' is not one of the cluster's (consul-server, cache)");
    expect(err("consul-server=arm64,=amd64").message).toBe("--arch: '=amd64' is not ROLE=ARCH");
  });
});

describe("the node's architecture in the cluster state", () => {
  const plan = { name: "demo-1", role: "consul-server", index: 1, address: "10.88.0.11", prefix: 24, clusterMac: "52:54:2a:97:01:01", hostMac: "52:54:2a:97:02:01", hostAddress: "10.0.2.15/24" };
  const image = `sha256:${"a".repeat(64)}`;

  it("is recorded for a new node; an old cluster.json without it reads as amd64; another word is refused", () => {
    const node = nodeState(plan, image, { memory_mib: 512, cpus: 1 }, "arm64");
    expect(node.arch).toBe("arm64");
    expect(NodeStateSchema.parse(node).arch).toBe("arm64");
    const { arch: _, ...old } = node;
    expect(archOf(NodeStateSchema.parse(old))).toBe("amd64");
    expect(NodeStateSchema.safeParse({ ...node, arch: "riscv64" }).success).toBe(false);
  });

  it("archOf: absent is amd64, a known word itself, anything else an error", () => {
    expect(archOf(undefined)).toBe("amd64");
    expect(archOf({})).toBe("amd64");
    expect(archOf({ arch: "arm64" })).toBe("arm64");
    expect(() => archOf({ arch: "x86_64" })).toThrow('architecture "x86_64" is not one Resin knows');
  });

  it("--arch on an existing cluster must match it; a role --arch does not name is left as it is", () => {
    const state = { name: "demo", nodes: [nodeState(plan, image, { memory_mib: 512, cpus: 1 }, "arm64")] } as ClusterState;
    expect(() => checkSameArches(state, new Map([["consul-server", "arm64"]]), "up")).not.toThrow();
    expect(() => checkSameArches(state, new Map([["cache", "amd64"]]), "up")).not.toThrow();
    expect(() => checkSameArches(state, new Map([["consul-server", "amd64"]]), "up")).toThrow("cluster 'demo' runs consul-server as arm64, not amd64");
  });

});

describe("resin status shows the architecture", () => {
  const status = (arch: string | undefined) =>
    StatusSchema.parse({
      name: "demo",
      channel: "debian",
      healthy: true,
      leader: "demo-1",
      failureTolerance: 0,
      nodes: [{ name: "demo-1", role: "consul-server", address: "10.88.0.11", image: "sha256:x", ...(arch ? { arch } : {}), vm: { state: "stopped", pid: null, reason: null }, ports: {}, boot: null, services: null, timeline: null, launchToKernelSeconds: null, consul: null }],
    });

  it("in a column once a node is not amd64, and not for an all-amd64 cluster (or status JSON without the field)", () => {
    expect(formatStatus(status("arm64")).split("\n")[0]).toMatch(/^NODE\s+ROLE\s+ARCH\s+ADDRESS/);
    expect(formatStatus(status("arm64")).split("\n")[1]).toMatch(/^demo-1\s+consul-server\s+arm64\s+10\.88\.0\.11/);
    expect(formatStatus(status("amd64"))).not.toContain("ARCH");
    expect(formatStatus(status(undefined))).not.toContain("ARCH");
  });
});

describe("the plan manifest per architecture", () => {
  it("gives provisioners the AMI architecture, a default instance type and libvirt's arch and machine from the table", () => {
    expect(platformOf("amd64")).toEqual({ aws: { architecture: "x86_64", instance_type: "t3.small" }, libvirt: { arch: "x86_64", machine: "q35" } });
    expect(platformOf("arm64")).toEqual({ aws: { architecture: "arm64", instance_type: "t4g.small" }, libvirt: { arch: "aarch64", machine: "virt" } });
    expect(PlanManifestSchema.shape.roles.element.shape.arch.options).toEqual(["amd64", "arm64"]);
  });

  it("names firmware files that Debian's packages put here", () => {
    for (const a of Object.values(ARCH)) {
      expect(readFileSync(a.firmware.code).length, a.firmware.code).toBeGreaterThan(1 << 20);
      expect(readFileSync(a.firmware.vars).length, a.firmware.vars).toBeGreaterThan(1 << 16);
    }
  });
});

describe("an upgrade across architectures", () => {
  it("reads the new image's architecture from its manifest in the cluster (absent: amd64), which the node then records", async () => {
    const { installedImageArch } = await import("../../cli/cluster/images.js");
    const { clusterHandle } = await import("../../cli/state/state.js");
    const { mkdirSync, writeFileSync } = await import("node:fs");
    const saved = process.env.RESIN_STATE_HOME;
    process.env.RESIN_STATE_HOME = mkdtempSync(join(tmpdir(), "resin-arch-state-"));
    try {
      const demo = clusterHandle("demo");
      const digest = (c: string) => `sha256:${c.repeat(64)}`;
      const put = (d: string, extra: object) => {
        mkdirSync(demo.imageDir(d), { recursive: true });
        const f = (file: string) => ({ file, sha256: "e".repeat(64), size: 1 });
        const manifest = {
          role: "consul-server", channel: "debian", inputDigest: "x", digest: d,
          kernel: { ...f("vmlinuz"), version: "6.1", modules: [] }, initrd: f("initrd.img"), rootfs: f("rootfs.squashfs"),
          disk: { raw: f("disk.raw"), qcow2: f("disk.qcow2"), iso: f("disk.iso") },
          services: [], packages: [], releases: [], files: [], initramfsFiles: [],
          ...extra,
        };
        writeFileSync(join(demo.imageDir(d), "manifest.json"), JSON.stringify(manifest));
      };
      put(digest("a"), { arch: "arm64" });
      put(digest("b"), {});
      put(digest("c"), { arch: "sparc" });
      expect(await installedImageArch(demo, digest("a"))).toBe("arm64");
      expect(await installedImageArch(demo, digest("b"))).toBe("amd64");
      await expect(installedImageArch(demo, digest("c"))).rejects.toThrow("arch: Invalid enum value");
    } finally {
      rmSync(process.env.RESIN_STATE_HOME!, { recursive: true, force: true });
      if (saved === undefined) delete process.env.RESIN_STATE_HOME;
      else process.env.RESIN_STATE_HOME = saved;
    }
  });
});
