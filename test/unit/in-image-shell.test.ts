import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { busybox } from "../tools/busybox.js";
import { verityCmdline, verityTable } from "../../cli/image/verity.js";

// The shell that runs inside an image (services/*/: run scripts, the boot script, the
// initramfs /init, the metadata providers and the files they source). The image has
// only busybox sh; the host's sh (dash on Debian) is checked too, since both must accept
// the same POSIX text.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SERVICES = join(REPO, "services");

/**
 * A service's run script in a scratch directory, with every path it names (and the base
 * helpers it calls, copied beside it) moved under that directory; chpst and chown only
 * record what they were asked in `calls` (neither can change users here; chpst drops
 * its -u and runs the rest), and the service's program is `program` ({at:NAME} is a
 * path in the directory). Returns the directory, a path maker and the environment.
 */
function runScriptSandbox(service: string, program: string): { dir: string; at: (path: string) => string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), `resin-${service}-run-`));
  const at = (path: string) => join(dir, path);
  const rehome = (text: string) =>
    text
      .replaceAll("/usr/lib/resin/", `${dir}/usr/lib/resin/`)
      .replaceAll(`/etc/${service}.d`, at(`etc/${service}.d`))
      .replaceAll("/var/lib/", `${dir}/var/lib/`)
      .replaceAll("/run/", `${dir}/run/`);
  const run = readFileSync(join(SERVICES, service, "run"), "utf8");
  writeFileSync(at(`${service}-run`), rehome(run), { mode: 0o755 });
  mkdirSync(at("usr/lib/resin"), { recursive: true });
  for (const [, helper] of run.matchAll(/\/usr\/lib\/resin\/([\w.-]+)/g)) {
    if (!existsSync(join(SERVICES, "base", helper!))) continue; // not a base helper (usr/lib/resin/consul/: a role's definitions)
    writeFileSync(at(`usr/lib/resin/${helper}`), rehome(readFileSync(join(SERVICES, "base", helper!), "utf8")), { mode: 0o755 });
  }
  mkdirSync(at("bin"));
  writeFileSync(at("bin/chpst"), `#!/bin/sh\nprintf 'chpst %s\\n' "$*" >> '${at("calls")}'\n[ "$1" = -u ] && shift 2\nexec "$@"\n`, { mode: 0o755 });
  writeFileSync(at("bin/chown"), `#!/bin/sh\nprintf 'chown %s\\n' "$*" >> '${at("calls")}'\n`, { mode: 0o755 });
  writeFileSync(at(`bin/${service}`), program.replace(/\{at:([\w.-]+)\}/g, (_m, name: string) => at(name)), { mode: 0o755 });
  return { dir, at, env: { ...process.env, LC_ALL: "C", PATH: `${at("bin")}:${process.env.PATH ?? "/usr/bin:/bin"}` } };
}

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
    {
      const bb = spawnSync(busybox, ["sh", "-n", s.path], { encoding: "utf8" });
      expect(bb.status, `busybox sh -n ${s.name}: ${bb.stderr}${bb.error?.message ?? ""}`).toBe(0);
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
      for (const sh of [["sh"], [busybox, "sh"]]) {
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

  it("copies a service's node config in one helper, which consul, nomad and vault call", () => {
    const copiers = walk(SERVICES).filter((p) => /\bcp\s+"?\/run\/config\//.test(readFileSync(p, "utf8"))).map((p) => relative(REPO, p));
    expect(copiers).toEqual(["services/base/private-config"]);
    for (const [file, call] of [
      ["consul/run", "/usr/lib/resin/private-config consul consul || exit 1"],
      ["vault/run", "/usr/lib/resin/private-config vault vault || exit 1"],
      ["nomad/run.hbs", "/usr/lib/resin/private-config nomad || exit 1"],
    ]) {
      expect(readFileSync(join(SERVICES, file!), "utf8"), file).toContain(call);
    }
  });

  it("private-config: a fresh copy readable by its owner only, and a clear failure without config", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-private-config-"));
    try {
      // The helper with /run under a temporary directory, and a sleep that does not wait.
      const helper = join(dir, "private-config");
      writeFileSync(helper, readFileSync(join(SERVICES, "base/private-config"), "utf8").replaceAll("/run/", `${dir}/run/`), { mode: 0o755 });
      mkdirSync(join(dir, "bin"));
      writeFileSync(join(dir, "bin", "sleep"), "#!/bin/sh\n", { mode: 0o755 });
      const env = { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH ?? "/usr/bin:/bin"}` };
      mkdirSync(join(dir, "run", "config", "svc"), { recursive: true });
      writeFileSync(join(dir, "run", "config", "svc", "10-node.hcl"), "x = 1\n", { mode: 0o644 });
      mkdirSync(join(dir, "run", "svc"), { mode: 0o700 });
      writeFileSync(join(dir, "run", "svc", "stale.hcl"), "old\n");
      for (const sh of [["sh"], [busybox, "sh"]]) {
        const ok = spawnSync(sh[0]!, [...sh.slice(1), helper, "svc"], { env, encoding: "utf8" });
        expect(ok.status, ok.stdout + ok.stderr).toBe(0);
        expect(readdirSync(join(dir, "run", "svc"))).toEqual(["10-node.hcl"]);
        expect(readFileSync(join(dir, "run", "svc", "10-node.hcl"), "utf8")).toBe("x = 1\n");
        expect(statSync(join(dir, "run", "svc", "10-node.hcl")).mode & 0o777).toBe(0o600);
        expect(statSync(join(dir, "run", "svc")).mode & 0o777).toBe(0o700);
        rmSync(join(dir, "run", "svc"), { recursive: true });
        chmodSync(join(dir, "run", "config", "svc", "10-node.hcl"), 0o644);
        const missing = spawnSync(sh[0]!, [...sh.slice(1), helper, "other"], { env, encoding: "utf8" });
        expect(missing.status).toBe(1);
        expect(missing.stdout).toContain(`other: no node config in ${dir}/run/config/other`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("no script or template changes owners recursively, and stage 1 protects hard links and symlinks before any service starts", () => {
    const recursive = walk(SERVICES).filter((p) => /\bchown\s+(-\w*\s+)*-\w*R/.test(readFileSync(p, "utf8"))).map((p) => relative(REPO, p));
    expect(recursive).toEqual([]);
    const boot = scripts.find((s) => s.name === "services/base/boot")!.text;
    const set = boot.indexOf('echo 1 > "/proc/sys/fs/$key" || fail');
    expect(set, "the boot script sets the sysctls and stops the node when it cannot").toBeGreaterThan(0);
    expect(boot).toContain("for key in protected_hardlinks protected_symlinks; do");
    expect(set).toBeLessThan(boot.indexOf("/usr/lib/resin/metadata/fetch"));
    expect(set).toBeLessThan(boot.indexOf("echo ready > /run/resin/boot-state"));
  });

  it.runIf(process.getuid?.() === 0)("private-config: a hard link, a symlink or a dotfile the service user planted in its old copy hands it nothing (as root, real chown)", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-private-config-planted-"));
    try {
      const helper = join(dir, "private-config");
      writeFileSync(helper, readFileSync(join(SERVICES, "base/private-config"), "utf8").replaceAll("/run/", `${dir}/run/`), { mode: 0o755 });
      mkdirSync(join(dir, "run", "config", "svc"), { recursive: true });
      writeFileSync(join(dir, "run", "config", "svc", "10-node.hcl"), "x = 1\n", { mode: 0o600 });
      // A root-only file on the same filesystem, as /run/config/resin/status-token is on a node.
      writeFileSync(join(dir, "run", "secret"), "root only\n", { mode: 0o600 });
      const nobody = Number(spawnSync("id", ["-u", "daemon"], { encoding: "utf8" }).stdout.trim());
      expect(nobody).toBeGreaterThan(0);
      for (const sh of [["sh"], [busybox, "sh"]]) {
        // The old copy, which the user owns and has filled.
        const old = join(dir, "run", "svc");
        mkdirSync(old, { mode: 0o700 });
        linkSync(join(dir, "run", "secret"), join(old, ".planted"));
        linkSync(join(dir, "run", "secret"), join(old, "planted.hcl"));
        symlinkSync(join(dir, "run", "secret"), join(old, "10-node.hcl"));
        chownSync(old, nobody, nobody);
        const r = spawnSync(sh[0]!, [...sh.slice(1), helper, "svc", "daemon"], { encoding: "utf8" });
        expect(r.status, `${sh.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        const secret = statSync(join(dir, "run", "secret"));
        expect([secret.uid, secret.gid, secret.mode & 0o777], `${sh.join(" ")}: the root-only file stays root's`).toEqual([0, 0, 0o600]);
        expect(readFileSync(join(dir, "run", "secret"), "utf8")).toBe("root only\n");
        // A fresh directory with the node's config only, the user's; nothing left beside it.
        expect(readdirSync(old)).toEqual(["10-node.hcl"]);
        expect(lstatSync(join(old, "10-node.hcl")).isFile()).toBe(true);
        expect(readFileSync(join(old, "10-node.hcl"), "utf8")).toBe("x = 1\n");
        for (const p of [old, join(old, "10-node.hcl")]) expect(statSync(p).uid, p).toBe(nobody);
        expect(statSync(old).mode & 0o777).toBe(0o700);
        expect(readdirSync(join(dir, "run")).sort()).toEqual(["config", "secret", "svc"]);
        rmSync(old, { recursive: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("consul/run gives Consul its .hcl and .json files one by one, in -config-dir's order, and no PEM file", () => {
    const { dir, at, env } = runScriptSandbox("consul", `#!/bin/sh\nfor a; do printf '%s\\n' "$a"; done > '{at:argv}'\n`);
    try {
      // The image's config, with what -config-dir skips: a directory and files of other extensions.
      mkdirSync(at("etc/consul.d/sub.hcl"), { recursive: true });
      for (const name of ["00-role.hcl", "50-extra.json", "README", "x.hcl.bak"]) writeFileSync(at(`etc/consul.d/${name}`), "");
      // The node's metadata: its config, a name that must stay one argument, and the PEM files.
      mkdirSync(at("run/config/consul"), { recursive: true });
      for (const name of ["10-node.hcl", "05-a.json", "20 b*.hcl", "ca.pem", "cert.pem", "key.pem"]) writeFileSync(at(`run/config/consul/${name}`), "");
      for (const sh of [["sh"], [busybox, "sh"]]) {
        rmSync(at("argv"), { force: true });
        rmSync(at("calls"), { force: true });
        const r = spawnSync(sh[0]!, [...sh.slice(1), at("consul-run")], { env, encoding: "utf8" });
        expect(r.status, `${sh.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        expect(readFileSync(at("argv"), "utf8").split("\n").slice(0, -1), sh.join(" ")).toEqual([
          "agent",
          `-config-file=${dir}/etc/consul.d/00-role.hcl`,
          `-config-file=${dir}/etc/consul.d/50-extra.json`,
          `-config-file=${dir}/run/consul/05-a.json`,
          `-config-file=${dir}/run/consul/10-node.hcl`,
          `-config-file=${dir}/run/consul/20 b*.hcl`,
        ]);
        // The PEM files are there, where the config names them; Consul is not asked to read them as config.
        expect(readdirSync(at("run/consul")).filter((n) => n.endsWith(".pem")).sort()).toEqual(["ca.pem", "cert.pem", "key.pem"]);
        // Root hands consul its fresh config files and directory, and /var/lib/consul itself: nothing recursively.
        const chowns = readFileSync(at("calls"), "utf8").trim().split("\n").filter((c) => c.startsWith("chown "));
        expect(chowns.at(-1), sh.join(" ")).toBe(`chown consul:consul ${dir}/var/lib/consul`);
        expect(chowns[0], sh.join(" ")).toMatch(new RegExp(`^chown consul:consul ${dir}/run/\\.consul\\.\\w+/05-a\\.json .* ${dir}/run/\\.consul\\.\\w+$`));
        expect(chowns).toHaveLength(2);
      }
      // A role that registers services: their definitions get this node's own agent token
      // (read from its config) in place of the placeholder, and join the config after it.
      mkdirSync(at("usr/lib/resin/consul"));
      writeFileSync(at("usr/lib/resin/consul/services.json"), '{"services":[{"name":"redis","token":"@resin-agent-token@"}]}\n');
      writeFileSync(at("run/config/consul/10-node.hcl"), 'acl {\n  tokens {\n    master = "11111111-2222-4333-8444-555555555555"\n    agent  = "0a1b2c3d-0000-4000-8000-00000000abcd"\n  }\n}\n');
      for (const sh of [["sh"], [busybox, "sh"]]) {
        rmSync(at("calls"), { force: true });
        const r = spawnSync(sh[0]!, [...sh.slice(1), at("consul-run")], { env, encoding: "utf8" });
        expect(r.status, `${sh.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        expect(readFileSync(at("argv"), "utf8").split("\n").slice(0, -1).at(-1), sh.join(" ")).toBe(`-config-file=${dir}/run/consul/50-services.json`);
        expect(readFileSync(at("run/consul/50-services.json"), "utf8")).toBe('{"services":[{"name":"redis","token":"0a1b2c3d-0000-4000-8000-00000000abcd"}]}\n');
        expect(readFileSync(at("calls"), "utf8"), sh.join(" ")).toContain(`chown consul:consul ${dir}/run/.consul-services.json`);
        expect(existsSync(at("run/.consul-services.json"))).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("vault/run hands vault its data directory only, and vault makes raft/ itself", () => {
    const { dir, at, env } = runScriptSandbox("vault", "#!/bin/sh\n");
    try {
      mkdirSync(at("run/config/vault"), { recursive: true });
      writeFileSync(at("run/config/vault/10-node.hcl"), 'api_addr = "https://10.0.0.1:8200"\n');
      for (const sh of [["sh"], [busybox, "sh"]]) {
        rmSync(at("calls"), { force: true });
        rmSync(at("var"), { recursive: true, force: true });
        const r = spawnSync(sh[0]!, [...sh.slice(1), at("vault-run")], { env, encoding: "utf8" });
        expect(r.status, `${sh.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        const calls = readFileSync(at("calls"), "utf8").trim().split("\n");
        expect(calls.slice(1), sh.join(" ")).toEqual([
          `chown vault:vault ${dir}/var/lib/vault`,
          `chpst -u vault:vault mkdir -p ${dir}/var/lib/vault/raft`,
          `chpst -u vault:vault vault server -config=${dir}/etc/vault.d -config=${dir}/run/vault`,
        ]);
        expect(calls[0], sh.join(" ")).toMatch(new RegExp(`^chown vault:vault ${dir}/run/\\.vault\\.\\w+/10-node\\.hcl ${dir}/run/\\.vault\\.\\w+$`));
        expect(statSync(at("var/lib/vault/raft")).isDirectory()).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("disks.sh gives results on stdout and by status, and sets none of the caller's variables", () => {
    const text = readFileSync(join(SERVICES, "base/disks.sh"), "utf8");
    const functions = [...text.matchAll(/^([a-z_]+)\(\) (.)$/gm)];
    expect(functions.map((m) => m[1])).toEqual(["disk_with_serial", "persist_disk", "partition_named", "find_disk", "wait_for_disk"]);
    for (const m of functions) expect(m[2], `${m[1]} runs in a subshell`).toBe("(");
    // Only lookups that touch nothing on this machine: no such serial, no such partition.
    const script = `. ${join(SERVICES, "base/disks.sh")}; block=b tries=t uevent=u
      wait_for_disk resin-no-such-serial 1 || echo none
      find_disk PARTLABEL=resin-no-such-partition || echo none
      echo "$block $tries $uevent"`;
    for (const sh of [["sh"], [busybox, "sh"]]) {
      const r = spawnSync(sh[0]!, [...sh.slice(1), "-c", script], { encoding: "utf8" });
      expect(r.stdout, `${sh.join(" ")}: ${r.stderr}`).toBe("none\nnone\nb t u\n");
    }
  });

  it("verity.sh reads the root hash from the command line the host writes, and refuses a missing or malformed one", () => {
    const text = readFileSync(join(SERVICES, "base/verity.sh"), "utf8");
    const functions = [...text.matchAll(/^([a-z_]+)\(\) (.)$/gm)];
    expect(functions.map((m) => m[1])).toEqual(["verity_params", "verity_table", "verity_open", "loop_attach"]);
    for (const m of functions) expect(m[2], `${m[1]} runs in a subshell`).toBe("(");
    const p = { rootHash: "0f".repeat(32), salt: "a1".repeat(32), dataBlocks: 5101 };
    const cases: [string, string, number][] = [
      [`console=ttyS0 ${verityCmdline(p)} resin.root=x`, `${p.rootHash} ${p.salt} 5101\n`, 0],
      ["console=ttyS0 panic=-1", "the kernel command line names no root hash (resin.verity.roothash=, resin.verity.salt=, resin.verity.blocks=)\n", 1],
      [verityCmdline(p).replace(p.rootHash, p.rootHash.slice(1)), "resin.verity.roothash= is not 64 lower-case hex digits\n", 1],
      [verityCmdline(p).replace(p.rootHash, p.rootHash.toUpperCase()), "resin.verity.roothash= is not 64 lower-case hex digits\n", 1],
      [verityCmdline(p).replace(p.salt, `${p.salt}0`), "resin.verity.salt= is not an even number of lower-case hex digits (at most 256 bytes)\n", 1],
      [verityCmdline(p).replace(/ resin\.verity\.salt=\S+/, ""), "resin.verity.salt= is not an even number of lower-case hex digits (at most 256 bytes)\n", 1],
      [verityCmdline(p).replace("5101", "05101"), "resin.verity.blocks= is not a positive block count\n", 1],
      [verityCmdline(p).replace("5101", "*"), "resin.verity.blocks= is not a positive block count\n", 1],
    ];
    for (const sh of [["sh"], [busybox, "sh"]]) {
      for (const [cmdline, out, status] of cases) {
        const r = spawnSync(sh[0]!, [...sh.slice(1), "-c", `. ${join(SERVICES, "base/verity.sh")}; hash=h; verity_params "$1"; s=$?; echo "$hash"; exit $s`, "sh", cmdline], { encoding: "utf8", cwd: tmpdir() });
        expect(r.stdout, `${sh.join(" ")} ${cmdline}: ${r.stderr}`).toBe(`${out}h\n`);
        expect(r.status).toBe(status);
      }
      // The table the shell gives dmsetup is the one cli/image/verity.ts describes.
      const t = spawnSync(sh[0]!, [...sh.slice(1), "-c", `. ${join(SERVICES, "base/verity.sh")}; verity_table /dev/vda /dev/vdb ${p.rootHash} ${p.salt} 5101; verity_table /dev/vda /dev/vdb ${p.rootHash} ${p.salt} 5101 panic_on_corruption`], { encoding: "utf8" });
      expect(t.stdout).toBe(`${verityTable(p, "/dev/vda", "/dev/vdb")}\n${verityTable(p, "/dev/vda", "/dev/vdb", "panic_on_corruption")}\n`);
    }
  });

  it("verity.sh opens the root with one dmsetup call, reads all of it through the device that answers I/O errors, and only then hands out the one that panics; a block that fails stops it, named", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-verity-open-"));
    try {
      const at = (path: string) => join(dir, path);
      mkdirSync(at("bin"));
      // dmsetup, dd and dmesg as the kernel answers them: dmsetup records its calls and the
      // environment it ran with; dd reads the whole device or fails as dm-verity's EIO does.
      writeFileSync(at("bin/dmsetup"), `#!/bin/sh\nprintf '%s|%s\\n' "DM_DISABLE_UDEV=$DM_DISABLE_UDEV" "$*" >> '${at("calls")}'\n`, { mode: 0o755 });
      writeFileSync(at("bin/dd"), `#!/bin/sh\nprintf 'dd %s\\n' "$*" >> '${at("calls")}'\n[ -e '${at("corrupt")}' ] || exit 0\necho "dd: error reading '/dev/mapper/root-check': Input/output error" >&2\nexit 1\n`, { mode: 0o755 });
      writeFileSync(at("bin/dmesg"), `#!/bin/sh\necho '[    9.1] virtio_blk virtio1: [vda] 40808 512-byte logical blocks'\necho '[    9.8] device-mapper: verity: 253:0: data block 2550 is corrupted'\n`, { mode: 0o755 });
      const env = { ...process.env, LC_ALL: "C", PATH: `${at("bin")}:${process.env.PATH ?? "/usr/bin:/bin"}` };
      const p = { rootHash: "0f".repeat(32), salt: "a1".repeat(32), dataBlocks: 5101 };
      const open = (sh: string[]) => spawnSync(sh[0]!, [...sh.slice(1), "-c", `. ${join(SERVICES, "base/verity.sh")}; verity_open /dev/vda /dev/vdb root ${p.rootHash} ${p.salt} 5101`], { encoding: "utf8", env });
      for (const sh of [["sh"], [busybox, "sh"]]) {
        rmSync(at("calls"), { force: true });
        rmSync(at("corrupt"), { force: true });
        const ok = open(sh);
        expect(ok.stdout, ok.stderr).toBe("/dev/mapper/root\n");
        expect(ok.status).toBe(0);
        expect(readFileSync(at("calls"), "utf8").split("\n").filter(Boolean)).toEqual([
          `DM_DISABLE_UDEV=1|create --concise root-check,,,ro,${verityTable(p, "/dev/vda", "/dev/vdb")};root,,,ro,${verityTable(p, "/dev/vda", "/dev/vdb", "panic_on_corruption")}`,
          "dd if=/dev/mapper/root-check of=/dev/null bs=1048576",
        ]);

        rmSync(at("calls"), { force: true });
        writeFileSync(at("corrupt"), "");
        const bad = open(sh);
        expect(bad.status).toBe(1);
        expect(bad.stdout).toBe(`/dev/vda does not match root hash ${p.rootHash} (device-mapper: verity: 253:0: data block 2550 is corrupted)\n`);
        // Never handed out, and both devices taken down again: nothing mounts the root.
        expect(readFileSync(at("calls"), "utf8").split("\n").filter(Boolean).slice(2)).toEqual(["DM_DISABLE_UDEV=1|remove root root-check"]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("/init opens the root only through verity.sh: its one squashfs mount takes the device verity_open gave, and nothing skips it", () => {
    const init = readFileSync(join(SERVICES, "base/init"), "utf8");
    const mounts = init.split("\n").filter((l) => /mount -t squashfs/.test(l));
    expect(mounts).toEqual(['mount -t squashfs -o ro "$root" /lower || fail "cannot mount the root filesystem from $root"']);
    const openAt = init.indexOf('root=$(verity_open "$root"');
    expect(openAt).toBeGreaterThan(0);
    expect(init.indexOf(mounts[0]!)).toBeGreaterThan(openAt);
    // No branch around it: the open and the mount are at the top level of the script.
    for (const line of [init.split("\n").find((l) => l.includes('root=$(verity_open "$root"'))!, mounts[0]!]) expect(line.startsWith("root=") || line.startsWith("mount ")).toBe(true);
    expect(init).toMatch(/params=\$\(verity_params "\$\(cat \/proc\/cmdline\)"\) \|\| fail "root filesystem failed verification: \$params"/);
  });

  it("pci-modules names the drivers the machine's PCI devices match, and nothing without a match", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-pci-modules-"));
    try {
      // The patterns as the builder writes them from modules.alias (ena's real ones).
      mkdirSync(join(dir, "etc"));
      writeFileSync(join(dir, "etc/modules.pci"), "pci:v00001D0Fd00000EC2sv*sd*bc*sc*i* ena\npci:v00001D0Fd0000EC20sv*sd*bc*sc*i* ena\n");
      const device = (slot: string, alias: string) => {
        mkdirSync(join(dir, "sys/bus/pci/devices", slot), { recursive: true });
        writeFileSync(join(dir, "sys/bus/pci/devices", slot, "modalias"), `${alias}\n`);
      };
      // A local VM: a q35 bridge and virtio devices only.
      device("0000:00:00.0", "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00");
      device("0000:00:02.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
      const run = () =>
        [["sh"], [busybox, "sh"]].map((sh) => {
          const r = spawnSync(sh[0]!, [...sh.slice(1), join(SERVICES, "base/pci-modules"), dir], { encoding: "utf8" });
          return { out: r.stdout, why: `${sh.join(" ")}: exit ${r.status} ${r.stderr}` };
        });
      for (const r of run()) expect(r.out, r.why).toBe("");
      // A Nitro instance's ENA NIC (vendor 1d0f, device ec20).
      device("0000:00:05.0", "pci:v00001D0Fd0000EC20sv00001D0Fsd00000000bc02sc00i00");
      for (const r of run()) expect(r.out, r.why).toBe("ena\n");
      // No list in the image (one built before it): nothing, and no error.
      rmSync(join(dir, "etc/modules.pci"));
      for (const r of run()) expect(r.out, r.why).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("marks each boot step once, with the guest's uptime, and leaves the caller's variables alone", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-timeline-"));
    try {
      const file = join(dir, "timeline");
      const script = `. ${join(SERVICES, "base/timeline.sh")}; RESIN_TIMELINE=${file}; file=f up=u
        mark kernel; mark root; mark kernel; echo "$file $up"`;
      for (const sh of [["sh"], [busybox, "sh"]]) {
        rmSync(file, { force: true });
        const r = spawnSync(sh[0]!, [...sh.slice(1), "-c", script], { encoding: "utf8" });
        expect(r.stdout, `${sh.join(" ")}: ${r.stderr}`).toBe("f u\n");
        const lines = readFileSync(file, "utf8").trim().split("\n");
        expect(lines.map((l) => l.split(" ")[1])).toEqual(["kernel", "root"]);
        for (const l of lines) expect(Number(l.split(" ")[0])).toBeGreaterThan(0);
      }
      // A mark that cannot be written is skipped quietly: it never stops a boot.
      const r = spawnSync("sh", ["-c", `. ${join(SERVICES, "base/timeline.sh")}; RESIN_TIMELINE=${dir}/no/such/dir/t; mark x; echo $?`], { encoding: "utf8" });
      expect(r.stdout + r.stderr).toBe("0\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("log-marks.awk passes every line through and marks the first match of each step (busybox awk)", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-log-marks-"));
    try {
      const log = [
        "==> Starting Consul agent...",
        "==> Consul agent running!",
        "2026-11-28T10:00:01.000Z [INFO]  agent.server: New leader elected: payload=demo-2",
        "2026-11-28T10:00:09.000Z [INFO]  agent.server: New leader elected: payload=demo-3",
        "2026-11-28T10:00:10.000Z [INFO]  agent.server: cluster leadership acquired",
      ].join("\n");
      const r = spawnSync(busybox, ["awk", "-v", `marks=${join(SERVICES, "consul/marks")}`, "-v", `lib=${join(SERVICES, "base/timeline.sh")}`, "-f", join(SERVICES, "base/log-marks.awk")], {
        input: `${log}\n`,
        encoding: "utf8",
        env: { ...process.env, RESIN_TIMELINE: join(dir, "timeline") },
      });
      expect(r.stdout, r.stderr).toBe(`${log}\n`);
      const marks = readFileSync(join(dir, "timeline"), "utf8").trim().split("\n");
      expect(marks.map((l) => l.split(" ")[1]), marks.join("\n")).toEqual(["agent", "leader"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the status endpoint serves the timeline as JSON (busybox sh, the node's /run/resin)", () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-status-cgi-"));
    try {
      writeFileSync(join(dir, "timeline"), "1.52 kernel\n2.10 root\n7.93 leader\nnot a mark\n");
      writeFileSync(join(dir, "boot-state"), "ready\n");
      const script = `mount -t tmpfs tmpfs /run && mkdir /run/resin && cp ${dir}/timeline ${dir}/boot-state /run/resin/ && ${busybox} sh ${join(SERVICES, "base/www/cgi-bin/status")}`;
      const r = spawnSync("unshare", ["-m", busybox, "sh", "-c", script], { encoding: "utf8" });
      const body = r.stdout.split("\r\n\r\n")[1] ?? "";
      let parsed: { boot: string; uptimeSeconds: number; timeline: { step: string; uptimeSeconds: number }[] } | undefined;
      expect(() => (parsed = JSON.parse(body)), `${r.stdout}\n${r.stderr}`).not.toThrow();
      expect(parsed!.boot).toBe("ready");
      expect(parsed!.uptimeSeconds).toBeGreaterThan(0);
      expect(parsed!.timeline).toEqual([
        { step: "kernel", uptimeSeconds: 1.52 },
        { step: "root", uptimeSeconds: 2.1 },
        { step: "leader", uptimeSeconds: 7.93 },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
