// One node's VmSpec for the tests that read QEMU's command line (qemu-args, arch-run).
import { join } from "node:path";
import { KERNEL_APPEND, type VmSpec } from "../../cli/provider/qemu/vm.js";

export const DIR = "/state/resin/clusters/demo/nodes/demo-1";

export function spec(over: Partial<VmSpec> = {}): VmSpec {
  return {
    name: "demo-1",
    dir: DIR,
    kernel: "/images/abc/vmlinuz",
    initrd: "/images/abc/initrd.img",
    rootDisk: "/images/abc/root.img",
    append: KERNEL_APPEND,
    memoryMib: 1024,
    cpus: 2,
    accel: "tcg",
    switchSocket: "/state/resin/clusters/demo/switch.ctl",
    clusterMac: "52:54:2a:97:01:01",
    hostMac: "52:54:2a:97:02:01",
    forwards: [
      { hostPort: 41001, guestPort: 8500 },
      { hostPort: 41002, guestPort: 22 },
    ],
    configDrive: join(DIR, "cidata.iso"),
    persistDisk: join(DIR, "persist.qcow2"),
    ...over,
  };
}

