// What the cluster stage needs of the machines a cluster's nodes run on, in the spirit
// of Flatcar mantle's platform.Machine: start, stop, ask how it is, read its console.
// Local QEMU (provider/qemu/machines.ts) is one implementation; `localMachines()` in
// provider/local.ts is how cluster/ obtains it.
import type { ClusterState, NodeState } from "../state/state.js";
import type { Log } from "../util/log.js";

export type MachineState = "running" | "stopped" | "crashed";

export interface MachineStatus {
  state: MachineState;
  pid?: number;
  /** Why a machine nobody stopped has ended. */
  reason?: string;
}

/** How the machines of a cluster run: "kvm" or "tcg" for local QEMU. */
export type Accel = "kvm" | "tcg";

export interface Machines {
  /** Boot a node on the image its state records, on the host ports recorded for it. Returns its pid. */
  start(state: ClusterState, node: NodeState, log: Log): Promise<number>;
  /** Stop a node on purpose: cleanly when graceMs > 0. */
  stop(state: ClusterState, node: NodeState, opts?: { graceMs?: number }): Promise<void>;
  status(cluster: string, node: NodeState): Promise<MachineStatus>;
  /** Bytes the node's console has printed since it started. */
  consoleBytes(cluster: string, node: string): Promise<number>;
  /** The last `lines` lines of the node's console, made printable. */
  consoleTail(cluster: string, node: string, lines?: number): Promise<string>;
  /** Where a person reads the node's console log and the hypervisor's own errors. */
  logFiles(cluster: string, node: string): { console: string; stderr: string };
  /** Forget the accelerator chosen for this host, so that the next start probes again. */
  forgetAccel(): Promise<void>;
}
