// The one place above provider/ that names an implementation: this host's machines.
import type { Machines } from "./machine.js";
import { qemuMachines } from "./qemu/machines.js";

export function localMachines(): Machines {
  return qemuMachines;
}
