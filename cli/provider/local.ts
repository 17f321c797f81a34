// The one place above provider/ that names an implementation: this host's machines.
import type { ClusterMachines } from "./machine.js";
import { qemuMachines } from "./qemu/machines.js";

export function localMachines(): ClusterMachines {
  return qemuMachines;
}
