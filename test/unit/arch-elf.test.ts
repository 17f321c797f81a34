import { beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureDebs } from "../../cli/artifacts/debian.js";
import { unpackedDeb } from "../../cli/artifacts/cache.js";
import { lockKey, readLock, type LockedDeb } from "../../cli/artifacts/lock.js";
import { readElfDeps } from "../../cli/image/elf.js";
import { kernelFiles } from "../../cli/image/kernel.js";
import { addLibraryClosure, PackageSearch, type PackageRoot } from "../../cli/image/libraries.js";
import { Rootfs } from "../../cli/image/rootfs.js";
import { buildUki } from "../../cli/image/uki.js";
import { ARCH, type Arch } from "../../cli/spec/arch.js";
import { silentLog } from "../../cli/util/log.js";
import { tinyStub } from "./tiny-pe.js";

// The closures an arm64 image is made with, on an amd64 host, from Debian's real arm64
// packages as resin.lock.json pins them (fetched into the artifact cache once, as
// `resin build --arch arm64` does): Consul's shared libraries from libc6:arm64, the
// initramfs's kernel modules (some built in on arm64), and systemd's arm64 EFI stub.
// Reading single files is in elf.test.ts; the rules on hand-made files in arch-build.test.ts.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const AARCH64 = ARCH.arm64.elfMachine;


// ---- Debian's real arm64 packages ---------------------------------------------------------

const lockPromise = readLock(join(REPO, "resin.lock.json"));
const pinned = async (suite: string, name: string, arch: Arch): Promise<LockedDeb> => {
  const entry = (await lockPromise).debian[lockKey(suite, name, arch)];
  if (!entry) throw new Error(`resin.lock.json pins no ${lockKey(suite, name, arch)}: build an arm64 image once (resin build --arch arm64) to lock it`);
  return entry;
};
const roots = new Map<string, string>();
async function unpacked(suite: string, name: string, arch: Arch): Promise<string> {
  const key = lockKey(suite, name, arch);
  if (!roots.has(key)) {
    const d = await pinned(suite, name, arch);
    roots.set(key, await unpackedDeb(d.sha256, `${d.package} ${d.version}`));
  }
  return roots.get(key)!;
}
async function realLibc(arch: Arch): Promise<PackageRoot> {
  return { name: "libc6", root: await unpacked("bookworm", "libc6", arch), label: "libc6 (bookworm)" };
}

const readelf = (path: string) => {
  const headers = spawnSync("readelf", ["-hlW", path], { encoding: "utf8" }).stdout;
  const dynamic = spawnSync("readelf", ["-dW", path], { encoding: "utf8" }).stdout;
  return {
    machine: headers.match(/Machine:\s+(.+)/)?.[1]?.trim(),
    interpreter: headers.match(/Requesting program interpreter: ([^\]]+)\]/)?.[1],
    needed: [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!),
  };
};

beforeAll(async () => {
  // The pinned arm64 packages into the cache (a no-op when a build already put them there).
  const lock = await lockPromise;
  const wanted: [string, string, boolean][] = [
    ["bookworm", "libc6", false],
    ["bookworm", "busybox-static", false],
    ["bullseye", "consul", false],
    ["bookworm", "linux-image-arm64", true],
    ["bookworm", "systemd-boot-efi", false],
  ];
  for (const [suite, name, kernel] of wanted) await ensureDebs([{ suite, name, arch: "arm64", kernel }], lock, silentLog, { offline: false });
}, 600_000);

describe("Debian's arm64 binaries", () => {
  it("consul 1.8.7 (bullseye, arm64): AArch64, the aarch64 loader, as readelf reads it; its closure is libc6:arm64's", async () => {
    const path = join(await unpacked("bullseye", "consul", "arm64"), "usr/bin/consul");
    const deps = readElfDeps(readFileSync(path))!;
    const want = readelf(path);
    expect(want.machine).toBe("AArch64");
    expect(deps).toEqual({ machine: AARCH64, interpreter: want.interpreter, needed: want.needed });
    expect(deps.interpreter).toBe(`/lib/${ARCH.arm64.loader}`);

    const rootfs = new Rootfs();
    rootfs.file("usr/bin/consul", readFileSync(path), 0o755, { kind: "deb", source: "consul" });
    await addLibraryClosure(rootfs, new Map(), new PackageSearch("the role's libraries", [await realLibc("arm64")]), () => {}, "arm64");
    const libs = rootfs.list().filter((e) => e.type === "file" && e.path !== "usr/bin/consul").map((e) => e.path).sort();
    expect(libs).toContain(`lib/${ARCH.arm64.loader}`);
    // Each needed soname from libc6:arm64's multiarch directory (the loader, also NEEDED, is in already).
    for (const soname of want.needed.filter((n) => n !== ARCH.arm64.loader)) expect(libs).toContain(`lib/${ARCH.arm64.triplet}/${soname}`);
    expect(libs.every((p) => p === `lib/${ARCH.arm64.loader}` || p.startsWith(`lib/${ARCH.arm64.triplet}/`)), libs.join(" ")).toBe(true);
    // Every library taken is AArch64 too.
    for (const p of libs) {
      const entry = rootfs.get(p)!;
      expect(entry.type === "file" && readElfDeps(entry.data)?.machine, p).toBe(AARCH64);
    }
  });

  it("the kernel's modules are AArch64 relocatables; virtio and virtio_ring are built in, so the initramfs closure leaves them out", async () => {
    const root = await unpacked("bookworm", "linux-image-arm64", "arm64");
    const [version] = readdirSync(join(root, "lib/modules"));
    const builtin = readFileSync(join(root, "lib/modules", version!, "modules.builtin"), "utf8");
    expect(builtin).toContain("kernel/drivers/virtio/virtio.ko");
    const kernel = await kernelFiles(root, ["virtio_pci", "virtio_blk", "squashfs", "overlay", "dm_verity"]);
    expect(kernel.version).toMatch(/-arm64$/);
    expect(kernel.modules).toEqual(expect.arrayContaining(["dm_verity", "dm_mod", "virtio_blk", "virtio_pci"]));
    expect(kernel.modules).not.toContain("virtio");
    expect(kernel.modules).not.toContain("virtio_ring");
    const kos = [...kernel.files].filter(([p]) => p.endsWith(".ko"));
    expect(kos.length).toBe(kernel.modules.length);
    for (const [p, data] of kos) {
      expect(data.readUInt16LE(0x10), `${p} is ET_REL`).toBe(1);
      expect(readElfDeps(data), p).toEqual({ machine: AARCH64, interpreter: undefined, needed: [] });
    }
    // depmod wrote the arm64 tree's modules.dep over just these modules.
    expect(kernel.files.get(`lib/modules/${version}/modules.dep`)?.toString()).toMatch(/dm-verity\.ko: .*dm-bufio\.ko/);
  });

  it("systemd's arm64 stub is a PE for machine 0xaa64: a UKI is built from it for arm64, and refused for amd64 (and an amd64 stub for arm64)", async () => {
    const stub = readFileSync(join(await unpacked("bookworm", "systemd-boot-efi", "arm64"), `usr/lib/systemd/boot/efi/linux${ARCH.arm64.efi}.efi.stub`));
    expect(stub.readUInt16LE(stub.readUInt32LE(0x3c) + 4)).toBe(ARCH.arm64.peMachine);
    const parts = { stub, kernel: Buffer.alloc(4096, 1), initrd: Buffer.alloc(512, 2), cmdline: `console=${ARCH.arm64.console}`, osRelease: "ID=resin\n" };
    await expect(buildUki({ ...parts, machine: ARCH.arm64.peMachine })).resolves.toBeDefined();
    await expect(buildUki({ ...parts, machine: ARCH.amd64.peMachine })).rejects.toThrow("uki: the stub is for PE machine 0xaa64, not 0x8664");
    await expect(buildUki({ ...parts, stub: tinyStub(), machine: ARCH.arm64.peMachine })).rejects.toThrow("uki: the stub is for PE machine 0x8664, not 0xaa64");
  });
});
