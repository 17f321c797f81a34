import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

// The shell that runs inside an image (services/*/: run scripts, the boot script, the
// initramfs /init, the metadata providers and the files they source). The image has
// only busybox sh; the host's sh (dash on Debian) is checked too, since both must accept
// the same POSIX text.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SERVICES = join(REPO, "services");

function onPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}
const busybox = existsSync("/bin/busybox") ? "/bin/busybox" : onPath("busybox");

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** Every shell file in services/: scripts with #!/bin/sh and the .sh files they source (templates are checked rendered, in golden.test.ts). */
const scripts = walk(SERVICES)
  .filter((p) => !p.endsWith(".hbs"))
  .filter((p) => p.endsWith(".sh") || readFileSync(p, "utf8").startsWith("#!/bin/sh\n"))
  .map((p) => ({ path: p, name: relative(REPO, p), text: readFileSync(p, "utf8") }));

describe("the in-image shell", () => {
  it("finds the scripts", () => {
    expect(scripts.map((s) => s.name)).toEqual(expect.arrayContaining(["services/base/boot", "services/base/init", "services/base/disks.sh", "services/base/metadata/lib.sh", "services/consul/run"]));
  });

  it.each(scripts.map((s) => [s.name, s] as const))("%s parses with sh -n and busybox sh -n", (_name, s) => {
    const sh = spawnSync("sh", ["-n", s.path], { encoding: "utf8" });
    expect(sh.status, `sh -n ${s.name}: ${sh.stderr}`).toBe(0);
    if (busybox) {
      const bb = spawnSync(busybox, ["sh", "-n", s.path], { encoding: "utf8" });
      expect(bb.status, `busybox sh -n ${s.name}: ${bb.stderr}`).toBe(0);
    }
  });

  it("splits the kernel command line with globbing off (set -f) wherever it splits it", () => {
    const splitters = scripts.filter((s) => s.text.includes("$(cat /proc/cmdline)"));
    expect(splitters.map((s) => s.name).sort()).toEqual(["services/base/init", "services/base/metadata/lib.sh"]);
    for (const s of splitters) {
      const before = s.text.slice(0, s.text.indexOf("$(cat /proc/cmdline)"));
      expect(before.slice(before.lastIndexOf("\n", before.length - 40)), `${s.name}: set -f before the split`).toMatch(/\bset -f\b/);
    }
  });

  it("cmdline_value takes a value with a glob character as it is, and leaves the caller's globbing on", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-cmdline-"));
    try {
      const cmdline = join(dir, "cmdline");
      writeFileSync(cmdline, "console=ttyS0 resin.metadata=* resin.metadata.sha256=ab?d\n");
      // A file the unquoted * and ? would have expanded to.
      writeFileSync(join(dir, "resin.metadata=http:not-this"), "");
      writeFileSync(join(dir, "resin.metadata.sha256=abcd"), "");
      const lib = readFileSync(join(SERVICES, "base/metadata/lib.sh"), "utf8").replaceAll("/proc/cmdline", cmdline);
      writeFileSync(join(dir, "lib.sh"), lib);
      const script = '. ./lib.sh; cmdline_value resin.metadata; cmdline_value resin.metadata.sha256; cmdline_value absent || echo absent; echo cmd*; case $- in *f*) echo "set -f leaked" ;; esac';
      for (const sh of [["sh"], ...(busybox ? [[busybox, "sh"]] : [])]) {
        const r = spawnSync(sh[0]!, [...sh.slice(1), "-c", script], { cwd: dir, encoding: "utf8" });
        expect(r.stdout, `${sh.join(" ")}: ${r.stderr}`).toBe("*\nab?d\nabsent\ncmdline\n");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("mounts cgroup2 once, in stage 1 (the boot script), and in no service's run script", () => {
    const mounters = scripts.filter((s) => s.text.includes("mount -t cgroup2")).map((s) => s.name);
    expect(mounters).toEqual(["services/base/boot"]);
    const templates = walk(SERVICES).filter((p) => p.endsWith(".hbs") && readFileSync(p, "utf8").includes("mount -t cgroup2"));
    expect(templates).toEqual([]);
    const boot = scripts.find((s) => s.name === "services/base/boot")!.text;
    expect(boot.indexOf("mount -t cgroup2")).toBeLessThan(boot.indexOf("echo ready > /run/resin/boot-state"));
  });
});
