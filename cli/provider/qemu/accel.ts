// Choose the accelerator. /dev/kvm can exist and still not work: a boot sector may run
// while a Linux guest hangs for ever in its early boot, printing nothing. So KVM is used
// only after it has booted the image's own kernel and initramfs to userspace within a
// few seconds: the initramfs with a two-line /init that prints a marker on the serial
// console and powers off. Otherwise TCG, which always works. KVM runs only guests of the
// host's own architecture: a node of another one (arm64 on an amd64 host) is TCG, unprobed.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import { writeCpio } from "../../image/cpio.js";
import { cacheHome } from "../../util/paths.js";
import { writeFileAtomic } from "../../util/files.js";
import { sha256File } from "../../util/hash.js";
import type { Log } from "../../util/log.js";
import type { Accel } from "../machine.js";
import { ARCH, DEFAULT_ARCH, hostArch, type Arch } from "../../spec/arch.js";

export type { Accel };

/** The amd64 emulator (the one for an architecture is ARCH[arch].qemu). */
export const QEMU = ARCH.amd64.qemu;

/** How long the probe guest may take to reach userspace: KVM needs well under a second. */
export const PROBE_DEADLINE_MS = 5000;

export const PROBE_MARKER = "resin-accel-probe: userspace reached";

export function accelArgs(accel: Accel, arch: Arch = DEFAULT_ARCH): string[] {
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", ARCH[arch].tcgCpu];
}

/** Whether KVM can run a guest of `arch` here at all: only one of the host's own architecture. */
export function kvmCanRun(arch: Arch, host: Arch | undefined = hostArch()): boolean {
  return host === arch;
}

/**
 * The image's initramfs with its /init replaced (a later cpio archive overrides an
 * earlier one): mount devtmpfs, print the marker on the architecture's serial console, power off.
 */
export function probeInitramfs(imageInitrd: Buffer, arch: Arch = DEFAULT_ARCH): Buffer {
  const init = `#!/bin/sh\nmount -t devtmpfs devtmpfs /dev\necho "${PROBE_MARKER}" > /dev/${ARCH[arch].console}\npoweroff -f\n`;
  return Buffer.concat([imageInitrd, gzipSync(writeCpio([{ type: "file", path: "init", mode: 0o755, data: Buffer.from(init) }]), { level: 9 })]);
}

export interface ProbeResult {
  ok: boolean;
  ms: number;
  /** What went wrong, for the one line that says why TCG is used. */
  why?: string;
}

/**
 * Boot `kernel` with the probe initramfs under the given accelerator arguments and wait
 * for the marker. Takes the arguments rather than an Accel so that a test can hand it
 * an accelerator that hangs (a guest started paused, -S).
 */
export async function probeAccel(image: { kernel: string; initrd: string }, args: string[], deadlineMs = PROBE_DEADLINE_MS, arch: Arch = DEFAULT_ARCH): Promise<ProbeResult> {
  const dir = await mkdtemp(join(tmpdir(), "resin-accel-probe-"));
  const started = Date.now();
  const facts = ARCH[arch];
  try {
    await writeFile(join(dir, "initrd.img"), probeInitramfs(await readFile(image.initrd), arch));
    const serial = join(dir, "serial.out");
    const run = await execa(
      facts.qemu,
      [...args, "-machine", facts.qemuMachine, "-m", "128", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", image.kernel, "-initrd", join(dir, "initrd.img"), "-append", `console=${facts.console} panic=-1 quiet`,
        "-serial", `file:${serial}`],
      { timeout: deadlineMs, forceKillAfterDelay: 1000, reject: false, stdin: "ignore" },
    );
    const ms = Date.now() - started;
    const out = existsSync(serial) ? await readFile(serial, "latin1") : "";
    if (out.includes(PROBE_MARKER)) return { ok: true, ms };
    if (run.timedOut) return { ok: false, ms, why: `its guest printed ${out.length ? "no marker" : "nothing"} within ${deadlineMs / 1000}s` };
    return { ok: false, ms, why: `QEMU ended without the marker: ${(run.stderr || `exit ${run.exitCode}`).trim().split("\n")[0]}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface Memo {
  bootId: string;
  kernel: string;
  accel: Accel;
  why?: string;
}

const memoPath = () => join(cacheHome(), "accel.json");

/** Forget the remembered choice, e.g. after a node booted with it stayed silent. */
export async function forgetAccel(): Promise<void> {
  await rm(memoPath(), { force: true });
}

/**
 * RESIN_ACCEL=kvm|tcg forces a choice. Otherwise KVM must boot the image's kernel and
 * initramfs (in `imageDir`) to userspace within the deadline. The answer is remembered
 * for this host boot and this kernel; TCG is announced once, with the reason, when the
 * probe fails. Without an image to probe with, a remembered answer or else TCG. An image
 * of another architecture than the host's is TCG without a probe (`log` says so; the
 * caller asks once per architecture), even under RESIN_ACCEL=kvm.
 */
export async function chooseAccel(imageDir?: string, log: Log = () => {}, probeArgs: string[] = accelArgs("kvm"), arch: Arch = DEFAULT_ARCH): Promise<Accel> {
  const forced = process.env.RESIN_ACCEL;
  if (!kvmCanRun(arch)) {
    if (forced !== "tcg") log(`  ${arch} nodes on this ${hostArch() ?? process.arch} host: emulated by TCG (KVM runs only the host's own architecture)`);
    return "tcg";
  }
  if (forced === "kvm" || forced === "tcg") return forced;
  if (!existsSync("/dev/kvm")) return "tcg";
  const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "unknown")).trim();
  const known = await readFile(memoPath(), "utf8").then((t) => JSON.parse(t) as Memo).catch(() => undefined);
  const image = imageDir ? { kernel: join(imageDir, "vmlinuz"), initrd: join(imageDir, "initrd.img") } : undefined;
  if (!image || !existsSync(image.kernel)) return known?.bootId === bootId ? known.accel : "tcg";
  const kernel = await sha256File(image.kernel);
  if (known?.bootId === bootId && known.kernel === kernel) return known.accel;
  const result = await probeAccel(image, probeArgs, PROBE_DEADLINE_MS, arch);
  const accel: Accel = result.ok ? "kvm" : "tcg";
  if (!result.ok) log(`  KVM did not pass its probe (${result.why}): using TCG, which is slower (RESIN_ACCEL=kvm|tcg forces a choice)`);
  await writeFileAtomic(memoPath(), JSON.stringify({ bootId, kernel, accel, why: result.why } satisfies Memo) + "\n");
  return accel;
}
