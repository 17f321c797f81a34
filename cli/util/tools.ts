// Host programs Resin runs, with the Debian package that provides each, so a missing
// one is reported as the exact install command instead of a spawn error.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { ResinError } from "./errors.js";

export const HOST_TOOLS = {
  "qemu-system-x86_64": "qemu-system-x86",
  // arm64 nodes (resin up --arch arm64), emulated by TCG on an amd64 host.
  "qemu-system-aarch64": "qemu-system-arm",
  "qemu-img": "qemu-utils",
  // Runs a build step's program of another architecture (busybox --list-full).
  "qemu-aarch64-static": "qemu-user-static",
  "qemu-x86_64-static": "qemu-user-static",
  vde_switch: "vde2",
  depmod: "kmod",
  mksquashfs: "squashfs-tools",
  "dpkg-deb": "dpkg",
  "apt-get": "apt",
  // resin build --sign, resin inspect --verify of a signed image
  sbsign: "sbsigntool",
  sbverify: "sbsigntool",
  faketime: "faketime",
} as const;

export type HostTool = keyof typeof HOST_TOOLS;

export function onPath(program: string): boolean {
  return whichProgram(program) !== undefined;
}

/** Where PATH finds an executable `program`, or undefined. */
export function whichProgram(program: string): string | undefined {
  return (process.env.PATH ?? "").split(delimiter).map((dir) => join(dir, program)).find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function requireTools(tools: HostTool[]): void {
  const missing = tools.filter((t) => !onPath(t));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => HOST_TOOLS[t]))].join(" ");
  throw new ResinError(`missing host program${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`, `install with: apt-get install ${packages}`);
}
