// Choose the accelerator. /dev/kvm can exist and still not work (guests hang or
// QEMU asserts), so KVM is used only after a tiny guest has proved it runs: a boot
// sector that writes one byte to the serial port. Otherwise TCG, which always works.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { cacheHome } from "../../util/paths.js";
import { writeFileAtomic } from "../../util/files.js";

export type Accel = "kvm" | "tcg";

export const QEMU = "qemu-system-x86_64";

/** mov dx,0x3f8; mov al,'K'; out dx,al; cli; hlt — then the boot signature. */
export function probeBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  Buffer.from([0xba, 0xf8, 0x03, 0xb0, 0x4b, 0xee, 0xfa, 0xf4]).copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

export function accelArgs(accel: Accel): string[] {
  return accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", "max"];
}

async function kvmWorks(): Promise<boolean> {
  if (!existsSync("/dev/kvm")) return false;
  const dir = await mkdtemp(join(tmpdir(), "resin-kvm-probe-"));
  try {
    await writeFile(join(dir, "boot.img"), probeBootSector());
    const serial = join(dir, "serial.out");
    await execa(
      QEMU,
      [...accelArgs("kvm"), "-nodefaults", "-no-user-config", "-display", "none", "-m", "16", "-no-reboot",
        "-drive", `file=${join(dir, "boot.img")},format=raw,if=ide`, "-serial", `file:${serial}`],
      { timeout: 5000, reject: false },
    );
    return existsSync(serial) && (await readFile(serial, "latin1")).includes("K");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * RESIN_ACCEL=kvm|tcg forces a choice. Otherwise probe once per host boot and
 * remember the answer (keyed by the kernel's boot id).
 */
export async function chooseAccel(): Promise<Accel> {
  const forced = process.env.RESIN_ACCEL;
  if (forced === "kvm" || forced === "tcg") return forced;
  const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "unknown")).trim();
  const memo = join(cacheHome(), "accel.json");
  const known = await readFile(memo, "utf8").then((t) => JSON.parse(t) as { bootId: string; accel: Accel }).catch(() => undefined);
  if (known?.bootId === bootId) return known.accel;
  const accel: Accel = (await kvmWorks()) ? "kvm" : "tcg";
  await writeFileAtomic(memo, JSON.stringify({ bootId, accel }) + "\n");
  return accel;
}
