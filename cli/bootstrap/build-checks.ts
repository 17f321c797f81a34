// Build checks: each service's `checks.build` commands run against a freshly built
// image before it is installed, with the image's own programs (`consul validate` is the
// image's Consul), after a sample node's metadata is written to /run/config by the
// image's own awk, exactly as stage 1 does at boot. They run in a copy of the root
// filesystem, chrooted, in private mount, PID and network namespaces (only a loopback
// that is down), so a check can neither reach the network nor touch the host's mounts.
// A failing check stops the build with the checker's own output.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { Role } from "../spec/load.js";
import type { BuildCheck } from "../image/build.js";
import type { BuildCheckResult } from "../image/manifest.js";
import { ResinError } from "../util/errors.js";
import { printable } from "../util/text.js";
import { planCluster } from "./plan.js";
import { generateSecrets } from "./secrets.js";
import { nodeMetadata, serialiseMetadata, serversByService } from "./metadata.js";
import { serviceRolesOf } from "./node-secrets.js";
import { readFileSync } from "node:fs";
import { ARCH, hostArch, type Arch } from "../spec/arch.js";

/** The user data a one-node cluster of the role would boot with: fresh sample secrets, never a real cluster's. */
export async function sampleUserData(role: Role, versions: Record<string, string>): Promise<Buffer> {
  const plan = planCluster("build-check", [role.spec.role]);
  const secrets = await generateSecrets(plan, () => serviceRolesOf(role));
  const servers = serversByService(plan.nodes, () => role);
  const tree = await nodeMetadata({ plan, node: plan.nodes[0]!, secrets, role, versions: Object.fromEntries(Object.entries(versions).map(([s, v]) => [s, { version: v }])), servers });
  return serialiseMetadata(tree);
}

/**
 * Run `script` as /bin/sh -c inside the root at `root`: mount, PID and network
 * namespaces of its own (a user namespace too when not root), /dev bound in, a fresh /proc.
 */
export async function inImage(root: string, script: string, timeoutMs = 60_000) {
  const rootless = process.getuid?.() !== 0;
  const enter = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2"';
  return execa("unshare", [...(rootless ? ["--user", "--map-root-user"] : []), "--mount", "--pid", "--net", "--fork", "--kill-child", "sh", "-c", enter, "resin-check", root, script], {
    reject: false,
    all: true,
    stdin: "ignore",
    timeout: timeoutMs,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", LANG: "C" },
    extendEnv: false,
  });
}

const tail = (s: string, bytes = 4096) => (s.length > bytes ? `…${s.slice(-bytes)}` : s);

/**
 * Why the image's programs cannot run on this host, if they cannot: another architecture
 * whose emulator the kernel does not run by itself (binfmt_misc, with the F flag so that
 * it works inside the check's chroot). Then the checks are skipped, and the manifest says why.
 */
export function foreignArchReason(arch: Arch, binfmt: (name: string) => string | undefined = readBinfmt): string | undefined {
  if (hostArch() === arch) return undefined;
  const entry = binfmt(`qemu-${ARCH[arch].uname}`);
  if (entry && /^enabled$/m.test(entry) && /^flags:.*F/m.test(entry)) return undefined;
  return `the image is ${arch} and this host is ${hostArch() ?? process.arch}, with no qemu-${ARCH[arch].uname} registered in binfmt_misc (flag F) to run its programs; build on an ${arch} machine, or register qemu-user-static's, to run them`;
}

function readBinfmt(name: string): string | undefined {
  try {
    return readFileSync(join("/proc/sys/fs/binfmt_misc", name), "utf8");
  } catch {
    return undefined;
  }
}

export const runBuildChecks: BuildCheck = async (role, image, log) => {
  const wanted = role.services.flatMap((s) => s.checks.build.map((command) => ({ service: s.name, command })));
  if (wanted.length === 0) return [];
  const foreign = foreignArchReason(role.arch);
  if (foreign) {
    log(`  checks skipped: ${foreign}`);
    return wanted.map(({ service, command }) => ({ service, command, exitCode: -1, output: "", skipped: foreign }));
  }
  const dir = await mkdtemp(join(tmpdir(), "resin-build-check-"));
  try {
    const root = join(dir, "root");
    const unpack = await execa("unsquashfs", ["-no-progress", "-quiet", "-no-xattrs", "-d", root, image.rootfs], { reject: false, all: true });
    if (unpack.exitCode !== 0) throw new ResinError(`${role.spec.role}: cannot unpack the image's root filesystem for its build checks: ${unpack.all}`);
    const versions = Object.fromEntries(image.services.map((s) => [s.name, s.version ?? ""]));
    await writeFile(join(root, "run", "resin-sample-user-data"), await sampleUserData(role, versions), { mode: 0o600 });
    const stage1 = await inImage(root, "awk -v root=/run/config -f /usr/lib/resin/metadata.awk < /run/resin-sample-user-data");
    if (stage1.exitCode !== 0) throw new ResinError(`${role.spec.role}: the image's own metadata reader failed on a sample node's metadata (exit ${stage1.exitCode})`, printable(stage1.all ?? ""));
    const results: BuildCheckResult[] = [];
    for (const { service, command } of wanted) {
      const started = Date.now();
      const r = await inImage(root, command);
      // What goes into the manifest is what the check said, never how long it took: the
      // same image must give the same manifest.
      const result = { service, command, exitCode: r.exitCode ?? -1, output: tail(printable(r.all ?? "").trim()) };
      const seconds = (Date.now() - started) / 1000;
      if (result.exitCode !== 0) {
        throw new ResinError(
          `${role.spec.role}: build check of service ${service} failed (${r.timedOut ? "timed out" : `exit ${result.exitCode}`}): ${command}`,
          `${result.output || "(it printed nothing)"}\nnothing was installed: the previous image of ${role.spec.role} is unchanged`,
        );
      }
      log(`  check ${service}: ${command} (${seconds.toFixed(2)}s)`);
      results.push(result);
    }
    return results;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};
