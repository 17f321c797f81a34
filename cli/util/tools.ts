// Host programs Resin runs, with the Debian package that provides each, so a missing
// one is reported as the exact install command instead of a spawn error.
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { ResinError } from "./errors.js";

export const HOST_TOOLS = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  vde_switch: "vde2",
  depmod: "kmod",
  mksquashfs: "squashfs-tools",
  "dpkg-deb": "dpkg",
  "apt-get": "apt",
} as const;

export type HostTool = keyof typeof HOST_TOOLS;

export function onPath(program: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
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
