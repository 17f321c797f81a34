import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import { Rootfs, type Provenance } from "../../cli/image/rootfs.js";

// Rootfs collects an image's files in memory, creating parent directories, refusing
// two different sources for one path, and producing the manifest (sorted, with sha256).

const consulDeb: Provenance = { kind: "deb", source: "consul 1.8.7+dfsg1-2+b3" };
const consulService: Provenance = { kind: "service", source: "consul/run" };
const baseService: Provenance = { kind: "service", source: "base/init" };

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("Rootfs", () => {
  it("creates every parent directory of a file, mode 0755", () => {
    const fs = new Rootfs();
    fs.file("etc/service/consul/run", Buffer.from("#!/bin/sh\n"), 0o755, consulService);
    for (const dir of ["etc", "etc/service", "etc/service/consul"]) {
      expect(fs.get(dir), dir).toEqual({ type: "dir", path: dir, mode: 0o755 });
    }
    expect(fs.get("etc/service/consul/run")).toMatchObject({ type: "file", mode: 0o755 });
    expect(fs.list().map((e) => e.path).sort()).toEqual(["etc", "etc/service", "etc/service/consul", "etc/service/consul/run"]);
  });

  it("creates parents for symlinks and directories too, keeping an explicit directory's mode", () => {
    const fs = new Rootfs();
    fs.symlink("usr/bin/sv", "/usr/bin/runit", consulService);
    fs.dir("var/lib/consul", 0o700);
    expect(fs.get("usr")?.type).toBe("dir");
    expect(fs.get("usr/bin")?.type).toBe("dir");
    expect(fs.get("var/lib")).toEqual({ type: "dir", path: "var/lib", mode: 0o755 });
    expect(fs.get("var/lib/consul")).toEqual({ type: "dir", path: "var/lib/consul", mode: 0o700 });
  });

  it("refuses two different files at one path, naming both sources", () => {
    const fs = new Rootfs();
    fs.file("usr/bin/consul", Buffer.from("binary from the deb"), 0o755, consulDeb);
    expect(() => fs.file("usr/bin/consul", Buffer.from("a wrapper script"), 0o755, consulService)).toThrow(
      /usr\/bin\/consul.*deb:consul 1\.8\.7\+dfsg1-2\+b3.*service:consul\/run/,
    );
    // The first file stays.
    expect((fs.get("usr/bin/consul") as { data: Buffer }).data.toString()).toBe("binary from the deb");
  });

  it("refuses the same bytes with a different mode", () => {
    const fs = new Rootfs();
    fs.file("init", Buffer.from("#!/bin/sh\n"), 0o755, baseService);
    expect(() => fs.file("init", Buffer.from("#!/bin/sh\n"), 0o644, consulService)).toThrow(/base\/init.*consul\/run/);
  });

  it("allows identical content from a second source, and keeps the first provenance", () => {
    const fs = new Rootfs();
    const libc = Buffer.from("\x7fELF libc");
    fs.file("lib/x86_64-linux-gnu/libc.so.6", libc, 0o755, { kind: "deb", source: "libc6 2.36-9" });
    expect(() => fs.file("lib/x86_64-linux-gnu/libc.so.6", Buffer.from(libc), 0o755, { kind: "deb", source: "libc6 (again)" })).not.toThrow();
    const entry = fs.manifest().find((m) => m.path === "lib/x86_64-linux-gnu/libc.so.6");
    expect(entry?.from).toBe("deb:libc6 2.36-9");
  });

  it("allows the same symlink twice, refuses a different target, and skips with ifFree", () => {
    const fs = new Rootfs();
    fs.symlink("bin/sh", "/bin/busybox", consulDeb);
    expect(() => fs.symlink("bin/sh", "/bin/busybox", consulService)).not.toThrow();
    expect(() => fs.symlink("bin/sh", "/bin/dash", consulService)).toThrow(/bin\/sh.*deb:consul.*service:consul\/run/);
    fs.file("bin/ls", Buffer.from("ls"), 0o755, consulDeb);
    fs.symlink("bin/ls", "/bin/busybox", baseService, true);
    expect(fs.get("bin/ls")?.type).toBe("file");
  });

  it("refuses a directory where a file is, and a file where a directory is", () => {
    const fs = new Rootfs();
    fs.file("etc/consul.d", Buffer.from("x"), 0o644, consulService);
    expect(() => fs.dir("etc/consul.d")).toThrow(/etc\/consul\.d.*service:consul\/run/);
    fs.dir("var/lib/consul");
    expect(() => fs.file("var/lib/consul", Buffer.from("x"), 0o644, consulDeb)).toThrow(/var\/lib\/consul.*deb:consul/);
  });

  it("refuses a path below a file (a file cannot be a parent directory)", () => {
    const fs = new Rootfs();
    fs.file("usr/lib", Buffer.from("not a directory"), 0o644, consulDeb);
    expect(() => fs.file("usr/lib/resin/metadata.awk", Buffer.from("{}"), 0o644, baseService)).toThrow(/usr\/lib/);
  });

  it("lists a dir() of an existing directory only once", () => {
    const fs = new Rootfs();
    fs.file("etc/passwd", Buffer.from("root"), 0o644, baseService);
    fs.dir("etc");
    expect(fs.list().filter((e) => e.path === "etc")).toHaveLength(1);
  });
});

describe("Rootfs.manifest", () => {
  function sample(): Rootfs {
    const fs = new Rootfs();
    // Added out of order on purpose.
    fs.file("usr/bin/consul", Buffer.from("consul binary"), 0o755, consulDeb);
    fs.dir("tmp", 0o1777);
    fs.symlink("bin/sh", "/bin/busybox", { kind: "deb", source: "applet of bin/busybox" });
    fs.file("etc/passwd", Buffer.from("root:x:0:0:root:/root:/bin/sh\n"), 0o644, { kind: "generated", source: "users" });
    fs.file("bin/busybox", Buffer.from("busybox binary"), 0o755, { kind: "deb", source: "busybox-static 1:1.35.0-4+b3" });
    return fs;
  }

  it("is sorted by path", () => {
    const paths = sample().manifest().map((m) => m.path);
    expect(paths).toEqual([...paths].sort());
    expect(paths).toEqual(["bin", "bin/busybox", "bin/sh", "etc", "etc/passwd", "tmp", "usr", "usr/bin", "usr/bin/consul"]);
  });

  it("describes files with mode, size and sha256, dirs with mode, symlinks with target", () => {
    const m = Object.fromEntries(sample().manifest().map((e) => [e.path, e]));
    const consul = Buffer.from("consul binary");
    expect(m["usr/bin/consul"]).toEqual({
      path: "usr/bin/consul",
      type: "file",
      mode: "0755",
      size: consul.length,
      sha256: sha(consul),
      from: "deb:consul 1.8.7+dfsg1-2+b3",
    });
    expect(m["usr/bin/consul"]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(m["etc/passwd"]).toMatchObject({ mode: "0644", from: "generated:users" });
    expect(m["tmp"]).toEqual({ path: "tmp", type: "dir", mode: "01777", from: "generated:resin" });
    expect(m["usr"]).toEqual({ path: "usr", type: "dir", mode: "0755", from: "generated:resin" });
    expect(m["bin/sh"]).toEqual({ path: "bin/sh", type: "symlink", target: "/bin/busybox", from: "deb:applet of bin/busybox" });
  });

  it("is the same whatever order the files were added in", () => {
    const a = sample();
    const b = new Rootfs();
    b.file("bin/busybox", Buffer.from("busybox binary"), 0o755, { kind: "deb", source: "busybox-static 1:1.35.0-4+b3" });
    b.file("etc/passwd", Buffer.from("root:x:0:0:root:/root:/bin/sh\n"), 0o644, { kind: "generated", source: "users" });
    b.symlink("bin/sh", "/bin/busybox", { kind: "deb", source: "applet of bin/busybox" });
    b.dir("tmp", 0o1777);
    b.file("usr/bin/consul", Buffer.from("consul binary"), 0o755, consulDeb);
    expect(JSON.stringify(b.manifest())).toBe(JSON.stringify(a.manifest()));
  });
});
