import { describe, it, expect } from "vitest";
import { join } from "node:path";
import { accelArgs } from "../../cli/provider/qemu/accel.js";
import { DIR, spec } from "./vm-spec.js";
import { KERNEL_APPEND, kernelAppend, qemuArgs, vmPaths } from "../../cli/provider/qemu/vm.js";
import { kvmStartError } from "../../cli/provider/qemu/provider.js";

// The QEMU command line is built by a pure function; these tests read it the way
// QEMU would and check the isolation promises: the cluster NIC is a private VDE
// switch, the host NIC has no route out and forwards only on loopback.

/** Every value following `flag` (QEMU options may repeat). */
function values(args: string[], flag: string): string[] {
  const out: string[] = [];
  args.forEach((a, i) => {
    if (a === flag) out.push(args[i + 1]!);
  });
  return out;
}

const hostfwds = (args: string[]) => [...args.join(" ").matchAll(/hostfwd=(tcp|udp):([^:,]*):(\d+)-([^:,]*):(\d+)/g)];

describe("accelArgs", () => {
  it("uses multi-threaded TCG with the max CPU model", () => {
    expect(accelArgs("tcg")).toEqual(["-accel", "tcg,thread=multi", "-cpu", "max"]);
  });

  it("uses KVM with the host CPU", () => {
    expect(accelArgs("kvm")).toEqual(["-accel", "kvm", "-cpu", "host"]);
  });
});

describe("qemuArgs", () => {
  const args = qemuArgs(spec());

  it("is a flat list of defined strings", () => {
    for (const a of args) {
      expect(typeof a).toBe("string");
      expect(a).not.toMatch(/undefined|NaN|\[object Object\]/);
    }
  });

  it("gives a node a memory balloon only when asked (the e2e suite's run-time dm-verity test)", () => {
    expect(values(args, "-device").filter((d) => d.startsWith("virtio-balloon"))).toEqual([]);
    expect(values(qemuArgs(spec({ balloon: true })), "-device").filter((d) => d.startsWith("virtio-balloon"))).toEqual(["virtio-balloon-pci,deflate-on-oom=on"]);
  });

  it("passes the machine, accelerator, memory, CPUs, kernel and command line", () => {
    expect(values(args, "-name")).toEqual(["demo-1"]);
    expect(values(args, "-accel")).toEqual(["tcg,thread=multi"]);
    expect(values(args, "-cpu")).toEqual(["max"]);
    expect(values(args, "-m")).toEqual(["1024"]);
    expect(values(args, "-smp")).toEqual(["2"]);
    expect(values(args, "-kernel")).toEqual(["/images/abc/vmlinuz"]);
    expect(values(args, "-initrd")).toEqual(["/images/abc/initrd.img"]);
    expect(values(args, "-append")).toEqual([KERNEL_APPEND]);
    expect(KERNEL_APPEND).toContain("console=ttyS0");
    expect(args).toContain("-nodefaults");
    expect(args).toContain("-no-reboot");
    expect(values(args, "-display")).toEqual(["none"]);
  });

  it("attaches the root's dm-verity hash tree as a second read-only disk with serial verity, and nothing without one", () => {
    const verity = qemuArgs(spec({ hashDisk: "/images/abc/rootfs,verity" }));
    expect(values(verity, "-drive")).toContain("if=none,id=verity,file=/images/abc/rootfs,,verity,format=raw,readonly=on");
    expect(values(verity, "-device")).toContain("virtio-blk-pci,drive=verity,serial=verity");
    expect(values(args, "-drive").filter((d) => d.includes("id=verity"))).toEqual([]);
  });

  it("puts the image's root hash, salt and block count on a local boot's command line, before any extra words", () => {
    const verity = { rootHash: "0f".repeat(32), salt: "a1".repeat(32), dataBlocks: 7 };
    expect(kernelAppend(verity, "resin.metadata=x")).toBe(`${KERNEL_APPEND} resin.verity.roothash=${"0f".repeat(32)} resin.verity.salt=${"a1".repeat(32)} resin.verity.blocks=7 resin.metadata=x`);
    // An image from before the hash tree: its /init knows nothing of it.
    expect(kernelAppend(undefined)).toBe(KERNEL_APPEND);
  });

  it("uses KVM arguments when asked", () => {
    const kvm = qemuArgs(spec({ accel: "kvm" }));
    expect(values(kvm, "-accel")).toEqual(["kvm"]);
    expect(values(kvm, "-cpu")).toEqual(["host"]);
  });

  it("puts the cluster NIC on the VDE switch socket", () => {
    const netdevs = values(args, "-netdev");
    expect(netdevs).toContain("vde,id=cluster,sock=/state/resin/clusters/demo/switch.ctl");
    expect(values(args, "-device")).toContain("virtio-net-pci,netdev=cluster,mac=52:54:2a:97:01:01");
  });

  it("gives the host NIC no route out (restrict=on)", () => {
    const user = values(args, "-netdev").filter((n) => n.startsWith("user,"));
    expect(user).toHaveLength(1);
    expect(user[0]!.split(",")).toContain("restrict=on");
    expect(user[0]!.split(",")).toContain("id=host");
    expect(values(args, "-device")).toContain("virtio-net-pci,netdev=host,mac=52:54:2a:97:02:01");
  });

  it("forwards each port on 127.0.0.1 only, never on all interfaces", () => {
    const fwds = hostfwds(args);
    expect(fwds.map((m) => [m[1], m[2], Number(m[3]), Number(m[5])])).toEqual([
      ["tcp", "127.0.0.1", 41001, 8500],
      ["tcp", "127.0.0.1", 41002, 22],
    ]);
    const all = args.join(" ");
    expect(all).not.toMatch(/hostfwd=[a-z]*:0\.0\.0\.0/);
    expect(all).not.toMatch(/hostfwd=[a-z]*::/); // an empty address means every interface
    // The forwards belong to the restricted user NIC, not the VDE one.
    for (const n of values(args, "-netdev")) if (n.includes("hostfwd")) expect(n.startsWith("user,")).toBe(true);
  });

  it("has no forwards when none are asked for", () => {
    const none = qemuArgs(spec({ forwards: [] }));
    expect(none.join(" ")).not.toContain("hostfwd");
    expect(values(none, "-netdev").find((n) => n.startsWith("user,"))).toBe("user,id=host,restrict=on");
  });

  it("attaches the root disk and config drive read-only and the persist disk, told apart by serial", () => {
    const drives = values(args, "-drive");
    expect(drives).toContain("if=none,id=root,file=/images/abc/root.img,format=raw,readonly=on");
    expect(values(args, "-device")).toContain("virtio-blk-pci,drive=root,serial=root");
    // Only the persist disk is writable.
    expect(drives.filter((d) => !d.split(",").includes("readonly=on")).map((d) => d.split(",")[1])).toEqual(["id=persist"]);
    expect(drives).toContain(`if=none,id=cidata,file=${join(DIR, "cidata.iso")},format=raw,readonly=on`);
    expect(drives).toContain(`if=none,id=persist,file=${join(DIR, "persist.qcow2")},format=qcow2`);
    const devices = values(args, "-device");
    expect(devices).toContain("virtio-blk-pci,drive=cidata,serial=cidata");
    expect(devices).toContain("virtio-blk-pci,drive=persist,serial=persist");
  });

  it("daemonizes, writing its pid file and console log in the node directory", () => {
    const paths = vmPaths(DIR);
    expect(args).toContain("-daemonize");
    expect(values(args, "-pidfile")).toEqual([paths.pidFile]);
    expect(paths.pidFile).toBe(join(DIR, "qemu.pid"));
    expect(values(args, "-serial")).toEqual([`file:${paths.console}`]);
    expect(values(args, "-qmp")).toEqual([`unix:${paths.qmp},server=on,wait=off`]);
  });
});

describe("qemuArgs with a metadata service instead of a config drive", () => {
  const args = qemuArgs(
    spec({
      configDrive: undefined,
      metadataService: { forwards: [{ guestAddress: "169.254.169.254", guestPort: 80, hostPort: 41010 }] },
    }),
  );
  const netdevs = values(args, "-netdev");

  it("attaches no config drive", () => {
    expect(values(args, "-drive").some((d) => d.includes("cidata"))).toBe(false);
    expect(values(args, "-device").some((d) => d.includes("serial=cidata"))).toBe(false);
  });

  it("adds a restricted user-mode NIC on the link-local network, forwarding only to loopback", () => {
    const metadata = netdevs.find((n) => n.startsWith("user,id=metadata"));
    expect(metadata).toBe("user,id=metadata,restrict=on,net=169.254.0.0/16,guestfwd=tcp:169.254.169.254:80-cmd:busybox nc 127.0.0.1 41010");
    expect(values(args, "-device")).toContain("virtio-net-pci,netdev=metadata");
    // Still exactly one switch NIC and one host NIC besides it.
    expect(netdevs.filter((n) => n.startsWith("user,"))).toHaveLength(2);
    for (const n of netdevs.filter((n) => n.startsWith("user,"))) expect(n).toContain("restrict=on");
  });
});

describe("kvmStartError: a QEMU that exits at start under KVM", () => {
  const said = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";

  it("names the node, the accelerator and why it was used, QEMU's first line, and the fix", () => {
    const forced = kvmStartError("silent", "silent-1", said, true);
    expect(forced.message).toBe("QEMU exited as node silent-1 started under accelerator kvm (forced by RESIN_ACCEL): qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69");
    expect(forced.hint!.split("\n")).toEqual([
      "QEMU: qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.",
      "the likely cause is KVM on this host; use TCG:   RESIN_ACCEL=tcg resin up --name silent",
    ]);
    expect(kvmStartError("prod", "prod-2", said, false).message).toContain("under accelerator kvm (it passed its probe)");
  });

  it("still gives the fix when QEMU said nothing", () => {
    const e = kvmStartError("c", "c-1", "", true);
    expect(e.message).toMatch(/: no message$/);
    expect(e.hint).toBe("the likely cause is KVM on this host; use TCG:   RESIN_ACCEL=tcg resin up --name c");
  });
});
