// The build side of arm64 (#23): one architecture field, looked up in cli/spec/arch.ts,
// reaches the spec (package names and paths), the lock, the ELF closure, the UKI, the
// disk's partition types and boot path, and the digest. The build itself (real arm64
// packages) runs in the e2e suite (arm64.test.ts, reproducible.test.ts).
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { forArch, loadRole, type Service } from "../../cli/spec/load.js";
import { ARCH, resolveArch } from "../../cli/spec/arch.js";
import { lockEntries, lockKey, type Lock } from "../../cli/artifacts/lock.js";
import { addLibraryClosure, libraryDirs, PackageSearch } from "../../cli/image/libraries.js";
import { Rootfs } from "../../cli/image/rootfs.js";
import { imageDigest, imagesDir, manifestDigest, type ImageFile } from "../../cli/image/manifest.js";
import { buildUki } from "../../cli/image/uki.js";
import { diskLayout, efiStubPath, espBootPath, imageParts } from "../../cli/image/disk.js";
import { writeLayout } from "../../cli/image/layout.js";
import { installRoot } from "../../cli/util/paths.js";
import { SpecError } from "../../cli/util/errors.js";
import { synthElf } from "./synth-elf.js";
import { tinyStub } from "./tiny-pe.js";

describe("the spec says once what differs per architecture", () => {
  it("resolves $ARCH, $MULTIARCH and $EFI_ARCH in the stock base service for each architecture", async () => {
    for (const arch of ["amd64", "arm64"] as const) {
      const role = await loadRole(installRoot(), "consul-server", "debian", installRoot(), arch);
      const base = role.services.find((s) => s.name === "base")!;
      expect(role.arch).toBe(arch);
      expect(base.kernel!.package).toBe(`linux-image-${arch}`);
      const paths = base.packages.flatMap((p) => p.paths);
      expect(paths).toContain(`usr/lib/${ARCH[arch].triplet}/xtables/libxt_owner.so`);
      expect(paths).toContain(efiStubPath(arch));
      expect(paths.filter((p) => p.includes("$"))).toEqual([]);
    }
  });

  it("names the file, the field and the variables for an unknown variable", () => {
    const service = { name: "x", file: join(installRoot(), "services", "x", "service.yml"), packages: [{ name: "foo-$CPU", paths: ["usr/bin/foo"], applets: false, build_only: false, initramfs: false }] } as unknown as Service;
    let error: unknown;
    try {
      forArch(service, "arm64");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SpecError);
    expect((error as Error).message).toMatch(/services\/x\/service\.yml/);
    expect((error as Error).message).toMatch(/packages\[0\]\.name: unknown variable \$CPU in 'foo-\$CPU'; use \$ARCH, \$MULTIARCH, \$EFI_ARCH/);
    expect(resolveArch("lib/$MULTIARCH/linux$EFI_ARCH.efi", "arm64", "t")).toBe("lib/aarch64-linux-gnu/linuxaa64.efi");
  });
});

describe("the lock pins per architecture", () => {
  it("keeps amd64's keys as they were and qualifies the others as Debian does (:arm64)", () => {
    expect(lockKey("bookworm", "busybox-static")).toBe("bookworm/busybox-static");
    expect(lockKey("bookworm", "busybox-static", "amd64")).toBe("bookworm/busybox-static");
    expect(lockKey("bookworm", "busybox-static", "arm64")).toBe("bookworm/busybox-static:arm64");
  });

  it("gives each architecture only its own entries", () => {
    const deb = (pkg: string, sha: string) => ({ package: pkg, version: "1", suite: "bookworm", sha256: sha.repeat(64), size: 1 });
    const lock: Lock = { lockfileVersion: 1, debian: { "bookworm/busybox-static": deb("busybox-static", "a"), "bookworm/busybox-static:arm64": deb("busybox-static", "b"), "bullseye/consul:arm64": deb("consul", "c") } };
    expect([...lockEntries(lock, "amd64")].map(([k, d]) => [k, d.sha256[0]])).toEqual([["bookworm/busybox-static", "a"]]);
    expect([...lockEntries(lock, "arm64")].map(([k, d]) => [k, d.sha256[0]])).toEqual([["bookworm/busybox-static", "b"], ["bullseye/consul", "c"]]);
  });

  it("writes each architecture's images to their own directory (amd64's where they always were)", () => {
    expect(imagesDir("/p", "debian")).toBe("/p/out/images/debian");
    expect(imagesDir("/p", "debian", "amd64")).toBe("/p/out/images/debian");
    expect(imagesDir("/p", "debian", "arm64")).toBe("/p/out/images/debian-arm64");
  });
});

describe("the ELF closure is the architecture's", () => {
  const aarch64 = (elf: Buffer) => (elf.writeUInt16LE(183, 0x12), elf);

  it("searches the architecture's multiarch directories", () => {
    expect(libraryDirs("arm64").slice(0, 2)).toEqual(["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"]);
  });

  it("takes an aarch64 program into an arm64 image and refuses an x86-64 one, naming it", async () => {
    const good = new Rootfs();
    good.file("usr/bin/static-tool", aarch64(synthElf({ static: true })), 0o755, { kind: "test", source: "test" });
    await addLibraryClosure(good, new Map(), new PackageSearch("the role's libraries", []), () => {}, "arm64");

    const bad = new Rootfs();
    bad.file("usr/bin/tool", synthElf({ static: true }), 0o755, { kind: "test", source: "test" });
    await expect(addLibraryClosure(bad, new Map(), new PackageSearch("the role's libraries", []), () => {}, "arm64")).rejects.toThrow(/usr\/bin\/tool is built for amd64, not arm64, the architecture of this image/);
    await expect(addLibraryClosure(bad, new Map(), new PackageSearch("the role's libraries", []), () => {}, "amd64")).resolves.toBeUndefined();
  });
});

describe("the boot path is the architecture's", () => {
  it("refuses a UEFI stub of another machine", async () => {
    const parts = { stub: tinyStub(), kernel: Buffer.alloc(10), initrd: Buffer.alloc(10), cmdline: "x", osRelease: "ID=resin\n" };
    await expect(buildUki({ ...parts, machine: ARCH.arm64.peMachine })).rejects.toThrow(/the stub is for PE machine 0x8664, not 0xaa64/);
    await expect(buildUki({ ...parts, machine: ARCH.amd64.peMachine })).resolves.toBeDefined();
  });

  it("lays out an arm64 disk with the arm64 root and root-verity types and BOOTAA64.EFI, as sgdisk and mtools read it", async () => {
    const work = mkdtempSync(join(tmpdir(), "resin-arch-disk-"));
    try {
      const file = (name: string, data: Buffer) => (writeFileSync(join(work, name), data), join(work, name));
      // The stub must be the image's machine: the tiny PE stub with its machine set to arm64's.
      const stub = tinyStub();
      stub.writeUInt16LE(ARCH.arm64.peMachine, stub.readUInt32LE(0x3c) + 4);
      const parts = await imageParts({
        digest: "sha256:" + "cd".repeat(32),
        role: "consul-server",
        channel: "debian",
        arch: "arm64",
        kernel: file("vmlinuz", Buffer.alloc(70_000, 1)),
        initrd: file("initrd.img", Buffer.alloc(30_000, 2)),
        rootfs: file("rootfs.squashfs", Buffer.alloc(150_000, 3)),
        verity: file("rootfs.verity", Buffer.alloc(4096, 4)),
        verityParams: { rootHash: "12".repeat(32), salt: "34".repeat(32), dataBlocks: 37 },
        stub: { data: stub, from: "test" },
      });
      const layout = await diskLayout(parts);
      await writeLayout(join(work, "disk.raw"), layout.image);
      const types = execFileSync("sgdisk", ["-p", join(work, "disk.raw")], { encoding: "utf8" });
      expect(layout.partitions.map((p) => p.type)).toEqual(["C12A7328-F81F-11D2-BA4B-00A0C93EC93B", ARCH.arm64.gptRoot, ARCH.arm64.gptRootVerity]);
      expect(types).toMatch(/resin-root/);
      const esp = layout.partitions[0]!;
      const listing = execFileSync("mdir", ["-i", `${join(work, "disk.raw")}@@${esp.firstLba * 512}`, "-/", "::/EFI/BOOT"], { encoding: "utf8" });
      expect(espBootPath("arm64")).toBe("EFI/BOOT/BOOTAA64.EFI");
      expect(listing).toMatch(/BOOTAA64\s+EFI/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("the digest covers the architecture", () => {
  const parts: ImageFile[] = [
    { file: "vmlinuz", sha256: "a".repeat(64), size: 1 },
    { file: "initrd.img", sha256: "b".repeat(64), size: 1 },
    { file: "rootfs.squashfs", sha256: "c".repeat(64), size: 1 },
  ];
  it("differs between architectures for the same files, and stays as it was for a manifest without one", () => {
    expect(imageDigest(parts, "arm64")).not.toBe(imageDigest(parts, "amd64"));
    const [k, initrd, rootfs] = parts as [ImageFile, ImageFile, ImageFile];
    const kernel = { ...k, version: "6.1", modules: [] };
    expect(manifestDigest({ kernel, initrd, rootfs })).toBe(imageDigest(parts));
    expect(manifestDigest({ kernel, initrd, rootfs, arch: "arm64" })).toBe(imageDigest(parts, "arm64"));
  });
});
