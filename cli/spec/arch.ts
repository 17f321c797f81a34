// The one field that picks the architecture (gokrazy's GOARCH): every stage looks up what
// differs between amd64 and arm64 here and nowhere else, so build, image and provider code
// take an `Arch` and never branch on it. Debian's names are the key (amd64, arm64): they
// are what package names, apt indexes and the lock use.
import { z } from "zod";
import { ResinError } from "../util/errors.js";

export const ARCHES = ["amd64", "arm64"] as const;
export type Arch = (typeof ARCHES)[number];
export const ArchSchema = z.enum(ARCHES);
export const DEFAULT_ARCH: Arch = "amd64";

export interface ArchFacts {
  arch: Arch;
  /** Debian's multiarch directory name: usr/lib/<triplet>. */
  triplet: string;
  /** The Linux machine name (uname -m) and the dynamic loader's file name. */
  uname: string;
  loader: string;
  /** Go's GOARCH. */
  goarch: string;
  /** HashiCorp's release platform: <product>_<version>_<platform>.zip. */
  hashicorpPlatform: string;
  /** ELF e_machine of its binaries and kernel modules. */
  elfMachine: number;
  /** PE machine of its EFI applications. */
  peMachine: number;
  /** The UEFI suffix: the removable-media path EFI/BOOT/BOOT<EFI>.EFI and systemd's linux<efi>.efi.stub. */
  efi: string;
  /** UAPI Discoverable Partitions Specification type GUIDs: the root and its dm-verity tree. */
  gptRoot: string;
  gptRootVerity: string;
  /** QEMU: the emulator, its machine type, the serial console the guest writes to. */
  qemu: string;
  qemuMachine: string;
  console: string;
  /**
   * Devices the machine lacks that a node needs, beyond the common virtio-pci ones. q35
   * has a PS/2 keyboard; virt has none, so a virtio keyboard carries the host's
   * ctrl-alt-del (QMP send-key: the clean shutdown) to the guest, whose kernel needs
   * virtio_input loaded for it.
   */
  qemuDevices: string[];
  /** Node.js's process.arch for a host of this architecture (KVM only where they agree). */
  nodeArch: string;
  /**
   * The CPU QEMU emulates under TCG (KVM always takes the host's). arm64: a concrete
   * model. `max` turns on pointer authentication with the QARMA cipher, slow to emulate;
   * measured here (QEMU 7.2, Debian's 6.1 arm64 kernel to userspace, the probe's
   * initramfs): max 8.1 s, max,pauth-impdef=on 2.8–3.3 s, cortex-a57 1.7–2.8 s.
   */
  tcgCpu: string;
  /** UEFI firmware: the code (read-only) and the template of the variable store a machine copies, with their Debian package. */
  firmware: { code: string; vars: string; package: string };
  /** Beyond one machine: the AMI architecture, the default EC2 instance type, libvirt's arch and machine. */
  awsArchitecture: string;
  awsInstanceType: string;
  libvirtArch: string;
}

export const ARCH: Record<Arch, ArchFacts> = {
  amd64: {
    arch: "amd64",
    triplet: "x86_64-linux-gnu",
    uname: "x86_64",
    loader: "ld-linux-x86-64.so.2",
    goarch: "amd64",
    hashicorpPlatform: "linux_amd64",
    elfMachine: 62, // EM_X86_64
    peMachine: 0x8664, // IMAGE_FILE_MACHINE_AMD64
    efi: "x64",
    gptRoot: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    gptRootVerity: "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    qemu: "qemu-system-x86_64",
    qemuMachine: "q35",
    console: "ttyS0",
    qemuDevices: [],
    nodeArch: "x64",
    tcgCpu: "max",
    firmware: { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd", package: "ovmf" },
    awsArchitecture: "x86_64",
    awsInstanceType: "t3.small",
    libvirtArch: "x86_64",
  },
  arm64: {
    arch: "arm64",
    triplet: "aarch64-linux-gnu",
    uname: "aarch64",
    loader: "ld-linux-aarch64.so.1",
    goarch: "arm64",
    hashicorpPlatform: "linux_arm64",
    elfMachine: 183, // EM_AARCH64
    peMachine: 0xaa64, // IMAGE_FILE_MACHINE_ARM64
    efi: "aa64",
    gptRoot: "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
    gptRootVerity: "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
    qemu: "qemu-system-aarch64",
    qemuMachine: "virt",
    console: "ttyAMA0",
    qemuDevices: ["virtio-keyboard-pci"],
    nodeArch: "arm64",
    tcgCpu: "cortex-a57",
    firmware: { code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd", package: "qemu-efi-aarch64" },
    awsArchitecture: "arm64",
    awsInstanceType: "t4g.small",
    libvirtArch: "aarch64",
  },
};

/** The architecture of the machine Resin runs on, if it is one Resin builds for. */
export function hostArch(): Arch | undefined {
  return ARCHES.find((a) => ARCH[a].nodeArch === process.arch);
}

/** The architecture recorded for something that may predate the field (a manifest, a node): absent means amd64; anything else is an error. */
export function archOf(thing: object | undefined): Arch {
  const recorded = (thing as { arch?: unknown } | undefined)?.arch;
  if (recorded === undefined) return DEFAULT_ARCH;
  const parsed = ArchSchema.safeParse(recorded);
  if (!parsed.success) throw new ResinError(`architecture ${JSON.stringify(recorded)} is not one Resin knows`, `Resin builds and boots ${ARCHES.join(" and ")}; rebuild the image (resin build --arch …)`);
  return parsed.data;
}

/** The emulators a set of nodes needs, one per architecture among them. */
export function emulatorsFor(arches: Arch[]): string[] {
  return [...new Set(arches)].sort().map((a) => ARCH[a].qemu);
}

/**
 * The variables a service spec may use in package names and paths, so that it says once
 * what differs per architecture: linux-image-$ARCH, usr/lib/$MULTIARCH/…, linux$EFI_ARCH.efi.stub.
 */
export function archVariables(arch: Arch): Record<string, string> {
  const facts = ARCH[arch];
  return { ARCH: facts.arch, MULTIARCH: facts.triplet, EFI_ARCH: facts.efi };
}

/** `text` with its architecture variables resolved; an unknown one throws, naming it (`where` says whose text it is). */
export function resolveArch(text: string, arch: Arch, where: string): string {
  const vars = archVariables(arch);
  return text.replace(/\$([A-Z][A-Z_]*)/g, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) throw new UnknownArchVariable(where, name, Object.keys(vars));
    return value;
  });
}

export class UnknownArchVariable extends Error {
  constructor(
    readonly where: string,
    readonly variable: string,
    readonly known: string[],
  ) {
    super(`${where}: unknown variable $${variable}; the architecture variables are ${known.map((k) => `$${k}`).join(", ")}`);
  }
}

/** The command that runs a program of `arch` on this host: nothing for the host's own, qemu-user for another. */
export function targetRunner(arch: Arch): string[] {
  return hostArch() === arch ? [] : [`qemu-${ARCH[arch].uname}-static`];
}
