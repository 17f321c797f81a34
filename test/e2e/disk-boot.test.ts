// The disk images boot on their own: QEMU with UEFI firmware (OVMF) and nothing but
// the disk, plus the config drive and persist disk Resin attaches to every node. No
// -kernel, -initrd or -append: the firmware finds /EFI/BOOT/BOOTX64.EFI on the ESP,
// the unified kernel image boots, and the initramfs finds the root partition by its label.
// The ISO boots the same way from a SATA CD drive (El Torito) and attached as a disk
// (its hybrid GPT), and the initramfs mounts the root file from it.
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadRole, type Role } from "../../cli/spec/load.js";
import { imagesDir, readManifest, type ImageManifest } from "../../cli/image/manifest.js";
import { writeIso9660 } from "../../cli/image/iso9660.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { generateSecrets } from "../../cli/bootstrap/secrets.js";
import { serviceRolesOf } from "../../cli/bootstrap/node-secrets.js";
import { nodeMetadata, serialiseMetadata, serversByService } from "../../cli/bootstrap/metadata.js";
import { chooseAccel } from "../../cli/provider/qemu/accel.js";
import { ARCH, type Arch } from "../../cli/spec/arch.js";
import { guestStatus } from "../../cli/cluster/guest.js";
import { freeLoopbackPort } from "../../cli/provider/qemu/ports.js";
import { readPid } from "../../cli/provider/qemu/process.js";
import { startSwitch, stopSwitch, switchPaths } from "../../cli/provider/qemu/vde.js";
import { createPersistDisk, qemuArgs, stopVm, vmPaths, vmPid, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { killLeftovers, processesUnder, repoRoot, resinAsync } from "./helpers.js";

/** Debian's ovmf package: UEFI firmware for q35 without secure boot, and its variable store template (AAVMF for arm64: spec/arch.ts). */
const OVMF_CODE = ARCH.amd64.firmware.code;
const STAGE_2 = "runit: enter stage: /etc/runit/2";

const work = mkdtempSync(join(tmpdir(), "resin-e2e-disk-"));
const imageDir = join(repoRoot, "out", "images", "debian", "consul-server");
let manifest: ImageManifest;
let role: Role;

/**
 * The node's QEMU command line as Resin builds it, with the direct kernel boot and the
 * squashfs disk replaced by UEFI firmware (code read-only, a private copy of the
 * variable store) and the disk image as the boot disk.
 */
type Media = "raw" | "qcow2" | "iso-cdrom" | "iso-disk";

/** How each way of booting attaches the image. */
function bootDrive(media: Media, file: string): string[] {
  if (media === "iso-cdrom") return ["-drive", `if=none,id=disk,file=${file},format=raw,media=cdrom,readonly=on`, "-device", "ide-cd,drive=disk,bootindex=0"];
  const format = media === "qcow2" ? "qcow2" : "raw";
  return ["-drive", `if=none,id=disk,file=${file},format=${format},readonly=on`, "-device", "virtio-blk-pci,drive=disk,bootindex=0"];
}

/**
 * The ISO boots are also a node on someone else's hypervisor: only the cluster NIC (no
 * user-mode NIC for the host) and a persist disk without Resin's virtio serial, found
 * blank on the first boot (iso-disk) and by its ext4 label on the next (iso-cdrom).
 */
const ISO_MEDIA: Media[] = ["iso-disk", "iso-cdrom"];
let isoPersistDisk = "";

function uefiDiskArgs(spec: VmSpec, disk: string, media: Media, vars: string, firmware: string): string[] {
  const withoutHostNic = media === "iso-disk";
  const withoutPersistSerial = ISO_MEDIA.includes(media);
  const args = qemuArgs(spec);
  const out: string[] = [];
  const dropped: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [arg, value] = [args[i]!, args[i + 1] ?? ""];
    const directBoot = ["-kernel", "-initrd", "-append"].includes(arg);
    const rootDisk = (arg === "-drive" && value.includes("id=root,")) || (arg === "-device" && value.includes("drive=root,"));
    const hostNic = withoutHostNic && ((arg === "-netdev" && value.startsWith("user,id=host")) || (arg === "-device" && value.includes("netdev=host,")));
    if (hostNic) {
      i++;
      continue;
    }
    if (withoutPersistSerial && arg === "-device" && value.includes("drive=persist,")) {
      out.push(arg, value.replace(",serial=persist", ""));
      i++;
      continue;
    }
    if (directBoot || rootDisk) {
      dropped.push(arg);
      i++;
      continue;
    }
    out.push(arg);
  }
  expect(dropped.sort()).toEqual(["-append", "-device", "-drive", "-initrd", "-kernel"]);
  return [
    ...out,
    "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${firmware}`,
    "-drive", `if=pflash,format=raw,unit=1,file=${vars}`,
    ...bootDrive(media, disk),
  ];
}

async function configDrive(path: string, nodeName: string, manifest: ImageManifest): Promise<void> {
  const plan = planCluster(nodeName, ["consul-server"]);
  const secrets = await generateSecrets(plan, () => serviceRolesOf(role));
  const tree = await nodeMetadata({
    plan,
    node: plan.nodes[0]!,
    secrets,
    role,
    versions: Object.fromEntries(manifest.services.map((s) => [s.name, { version: s.version ?? "" }])),
    servers: serversByService(plan.nodes, () => role),
  });
  writeFileSync(path, writeIso9660({ volumeId: "cidata", files: [{ name: "user-data", data: serialiseMetadata(tree) }] }), { mode: 0o600 });
}

/**
 * Boot `format` (or the file `opts.disk` as that format) to runit stage 2 and give its
 * console; with `opts.refused`, until /init's FATAL line instead, and the VM's own end.
 */
async function bootFromDisk(format: Media, opts: { disk?: string; refused?: boolean; arch?: Arch; image?: { dir: string; manifest: ImageManifest }; ready?: (statusPort: number, read: () => string) => Promise<void> } = {}): Promise<string> {
  const arch = opts.arch ?? "amd64";
  const image = opts.image ?? { dir: imageDir, manifest };
  const dir = join(work, `${arch === "amd64" ? "" : `${arch}-`}${opts.refused ? `${format}-refused` : format}`);
  mkdirSync(dir, { recursive: true });
  const sw = switchPaths(dir);
  await startSwitch(sw);
  try {
    const vars = join(dir, "VARS.fd");
    copyFileSync(ARCH[arch].firmware.vars, vars);
    const configDrivePath = join(dir, "cidata.iso");
    await configDrive(configDrivePath, `disk-${format}`, image.manifest);
    const statusPort = opts.ready ? await freeLoopbackPort() : 0;
    // The ISO boots share one persist disk: the second one finds what the first formatted.
    const persistDisk = ISO_MEDIA.includes(format) ? (isoPersistDisk ||= join(work, "iso-persist.qcow2")) : join(dir, "persist.qcow2");
    await createPersistDisk(persistDisk, 1);
    const plan = planCluster(`disk-${format}`, ["consul-server"]).nodes[0]!;
    const spec: VmSpec = {
      name: plan.name,
      dir,
      // Only to satisfy the spec: uefiDiskArgs drops the direct kernel boot.
      kernel: "unused",
      initrd: "unused",
      rootDisk: "unused",
      append: "unused",
      memoryMib: 1024,
      cpus: 1,
      arch,
      accel: await chooseAccel(undefined, undefined, undefined, arch),
      switchSocket: sw.socket,
      clusterMac: plan.clusterMac,
      hostMac: plan.hostMac,
      forwards: opts.ready ? [{ hostPort: statusPort, guestPort: 9100 }] : [],
      configDrive: configDrivePath,
      persistDisk,
    };
    const disk = opts.disk ?? join(image.dir, format.startsWith("iso") ? image.manifest.disk.iso.file : image.manifest.disk[format as "raw" | "qcow2"].file);
    const result = await execa(ARCH[arch].qemu, uefiDiskArgs(spec, disk, format, vars, ARCH[arch].firmware.code), { reject: false, stdin: "ignore" });
    const pid = await readPid(vmPaths(dir).pidFile);
    if (result.exitCode !== 0 || !pid) throw new Error(`QEMU did not start: ${result.stderr || result.stdout}`);

    const consoleLog = vmPaths(dir).console;
    const read = () => (existsSync(consoleLog) ? readFileSync(consoleLog, "latin1") : "");
    // Emulated arm64 (UEFI firmware and kernel under TCG) is several times slower: a hang guard, not a speed claim.
    const deadline = Date.now() + (arch === "amd64" ? 300_000 : 900_000);
    if (opts.refused) {
      // /init powers the node off after its FATAL line: QEMU (-no-reboot) ends by itself.
      while ((await vmPid(dir)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000));
      if (await vmPid(dir)) throw new Error(`the node booted from a changed ${format} was still running after 300s; console:\n${read().slice(-3000)}`);
      return read();
    }
    while (!read().includes(STAGE_2)) {
      if (/resin: FATAL|Kernel panic/.test(read()) || !(await vmPid(dir)) || Date.now() > deadline) {
        throw new Error(`the node booted from ${format} did not reach runit stage 2; console:\n${read().slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    if (opts.ready) await opts.ready(statusPort, read);
    return read();
  } finally {
    // By pid: ctrl-alt-del for runit's stage 3, then signals if it does not end in time.
    await stopVm(dir);
    await stopSwitch(sw);
  }
}

describe("disk images boot under UEFI with nothing but the disk, the config drive and the persist disk", () => {
  beforeAll(async () => {
    if (!existsSync(OVMF_CODE)) throw new Error(`no UEFI firmware at ${OVMF_CODE}: install the ovmf package (apt-get install ovmf)`);
    manifest = (await readManifest(imageDir))!;
    expect(manifest.digest).toBe(inject("imageDigests")["consul-server"]);
    role = await loadRole(repoRoot, "consul-server", "debian");
  });

  afterAll(() => {
    killLeftovers(work);
    rmSync(work, { recursive: true, force: true });
  });

  it("the image lists both disks, and the UEFI stub is not in its root filesystem", () => {
    expect(manifest.disk.raw.file).toBe("disk.raw");
    expect(manifest.disk.qcow2.file).toBe("disk.qcow2");
    expect(manifest.disk.cmdline).toContain("resin.root=PARTLABEL=resin-root");
    expect(manifest.disk.uki.stub).toMatch(/^deb:systemd-boot-efi /);
    expect(manifest.files.filter((f) => /systemd|\.efi/.test(f.path))).toEqual([]);
    expect(manifest.packages.map((p) => p.package)).toContain("systemd-boot-efi");
  });

  for (const format of ["raw", "qcow2"] as const) {
    it(`boots disk.${format} to runit stage 2, root found by partition label, and stops leaving no process`, async () => {
      const log = await bootFromDisk(format);
      expect(log).toMatch(/resin: root filesystem \/dev\/vd[a-z]2 \(PARTLABEL=resin-root\)/);
      // Through dm-verity, with the root hash the UKI's command line carries.
      expect(log).toContain(`resin: root filesystem verified by dm-verity (root hash ${manifest.verity!.rootHash})`);
      expect(log).toContain("resin: metadata from");
      expect(log).toMatch(/resin: persist disk \/dev\/vd[a-z] on \/var\/lib/);
      expect(log).toContain(STAGE_2);
      expect(processesUnder(work)).toEqual([]);
    });
  }

  it("disk.raw with one byte of its root partition flipped stops in /init, before stage 1, naming verification", async () => {
    const changed = join(work, "changed.raw");
    copyFileSync(join(imageDir, manifest.disk.raw.file), changed);
    const root = manifest.disk.partitions.find((p) => p.name === "resin-root")!;
    const offset = root.firstLba * 512 + Math.floor(manifest.rootfs.size / 2) + 123;
    const fd = openSync(changed, "r+");
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x01;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);
    const log = await bootFromDisk("raw", { disk: changed, refused: true });
    expect(log).toMatch(new RegExp(`^resin: FATAL: root filesystem failed verification: /dev/vd[a-z]2 does not match root hash ${manifest.verity!.rootHash} \\(.*corrupted.*\\)`, "m"));
    expect(log).not.toContain("resin: boot ");
    expect(processesUnder(work)).toEqual([]);
  });

  it("the ISO is listed with its label and the command line that finds it", () => {
    expect(manifest.disk.iso.file).toBe("disk.iso");
    expect(manifest.disk.iso.volumeId).toBe(`RESIN-${manifest.digest.slice("sha256:".length, "sha256:".length + 12)}`);
    expect(manifest.disk.iso.cmdline).toContain(`resin.root=LABEL=${manifest.disk.iso.volumeId}`);
  });

  for (const media of ISO_MEDIA) {
    it(`boots disk.iso ${media === "iso-cdrom" ? "from a SATA CD drive (El Torito)" : "attached as a disk (hybrid GPT), with only its cluster NIC,"} to runit stage 2, its root a file on the ISO`, async () => {
      const log = await bootFromDisk(media);
      const device = media === "iso-cdrom" ? "\\/dev\\/sr0" : "\\/dev\\/vd[a-z]";
      expect(log).toMatch(new RegExp(`resin: root filesystem ${device} \\(LABEL=${manifest.disk.iso.volumeId}\\)`));
      expect(log).toContain(`resin: root filesystem verified by dm-verity (root hash ${manifest.verity!.rootHash})`);
      expect(log).toContain("resin: metadata from cdrom");
      expect(log).toMatch(/resin: persist disk \/dev\/vd[a-z] on \/var\/lib/);
      // No virtio serial on the persist disk: blank on the first boot, labelled persist on the next.
      expect(log).toMatch(media === "iso-disk" ? /resin: formatting \/dev\/vd[a-z] \(blank: first boot\)/ : /resin: persist disk \/dev\/vd[a-z] on \/var\/lib/);
      if (media === "iso-cdrom") expect(log).not.toContain("(first boot)");
      if (media === "iso-disk") {
        // Booted with its cluster NIC only, as a libvirt domain is: the plan's host NIC is skipped.
        expect(log).toMatch(/resin: no network interface with MAC [0-9a-f:]{17} \(host\): skipped/);
        expect(log).toContain("resin: the status endpoint listens on the cluster address");
      } else {
        expect(log).not.toContain("(host): skipped");
      }
      expect(log).toContain(STAGE_2);
      expect(processesUnder(work)).toEqual([]);
    });
  }
});

describe("arm64: disk.qcow2 under AAVMF (qemu-system-aarch64 -machine virt, TCG) to a ready Consul", () => {
  let arm: { dir: string; manifest: ImageManifest };

  beforeAll(async () => {
    for (const f of [ARCH.arm64.firmware.code, ARCH.arm64.firmware.vars]) {
      if (!existsSync(f)) throw new Error(`no arm64 UEFI firmware at ${f}: install the ${ARCH.arm64.firmware.package} package (apt-get install ${ARCH.arm64.firmware.package})`);
    }
    const built = await resinAsync(["build", "consul-server", "--arch", "arm64", "--channel", "debian"]);
    if (built.status !== 0) throw new Error(`resin build --arch arm64 failed:\n${built.stderr}`);
    const dir = join(imagesDir(repoRoot, "debian", "arm64"), "consul-server");
    if (!existsSync(join(dir, "manifest.json"))) throw new Error(`resin build --arch arm64 wrote no manifest in ${dir}`);
    arm = { dir, manifest: (await readManifest(dir))! };
    role ??= await loadRole(repoRoot, "consul-server", "debian");
  });

  afterAll(() => {
    killLeftovers(work);
    rmSync(work, { recursive: true, force: true });
  });

  it("the image is arm64, its UKI on the ESP's arm64 path", () => {
    expect((arm.manifest as unknown as { arch?: string }).arch).toBe("arm64");
    expect(arm.manifest.disk.cmdline).toContain(`console=${ARCH.arm64.console}`);
  });

  it("boots disk.qcow2 through AAVMF to runit stage 2 and a running Consul agent, its root through dm-verity, and stops leaving no process", async () => {
    const started = Date.now();
    const log = await bootFromDisk("qcow2", {
      arch: "arm64",
      image: arm,
      ready: async (statusPort, read) => {
        const deadline = Date.now() + 600_000;
        for (;;) {
          const s = await guestStatus(statusPort, 10_000);
          if ("timeline" in s && s.timeline.some((t) => t.step === "agent") && s.services.some((x) => x.name === "consul" && x.state === "up")) return;
          if (Date.now() > deadline || /resin: FATAL|Kernel panic/.test(read())) throw new Error(`Consul did not start on the arm64 disk boot; status ${JSON.stringify(s)}; console:\n${read().slice(-3000)}`);
          await new Promise((r) => setTimeout(r, 2000));
        }
      },
    });
    process.stderr.write(`e2e disk-boot arm64: disk.qcow2 under AAVMF (TCG) → Consul agent running in ${((Date.now() - started) / 1000).toFixed(0)}s\n`);
    expect(log).toMatch(/resin: root filesystem \/dev\/vd[a-z]2 \(PARTLABEL=resin-root\)/);
    expect(log).toContain(`resin: root filesystem verified by dm-verity (root hash ${arm.manifest.verity!.rootHash})`);
    expect(log).toContain(STAGE_2);
    expect(processesUnder(work)).toEqual([]);
  });
});
