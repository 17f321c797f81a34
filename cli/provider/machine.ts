// What the cluster stage needs of the machines a cluster's nodes run on, in the spirit
// of Flatcar mantle's platform.Machine: start, stop, ask how it is, read its console.
// Commands need a little more, for a whole cluster at once (ClusterMachines, like
// mantle's platform.Cluster): host ports and persist disks before anything boots,
// starting and stopping every node with the network they share, and whether anything
// of a cluster runs. Local QEMU (provider/qemu/machines.ts) is one implementation;
// `localMachines()` in provider/local.ts is how cluster/ and commands obtain it. Every
// method is given the cluster's handle (state/state.ts): where its nodes' files are.
import type { ClusterHandle, ClusterState, NodeState } from "../state/state.js";
import type { Log } from "../util/log.js";

export type MachineState = "running" | "stopped" | "crashed";

export interface MachineStatus {
  state: MachineState;
  pid?: number;
  /** When a running machine was launched (ms since the epoch), where the provider knows. */
  startedAt?: number;
  /** Why a machine nobody stopped has ended. */
  reason?: string;
}

/** How the machines of a cluster run: "kvm" or "tcg" for local QEMU. */
export type Accel = "kvm" | "tcg";

export interface Machines {
  /** Boot a node on the image its state records, on the host ports recorded for it. Returns its pid. */
  start(cluster: ClusterHandle, state: ClusterState, node: NodeState, log: Log): Promise<number>;
  /** Stop a node on purpose: cleanly when graceMs > 0. */
  stop(cluster: ClusterHandle, node: NodeState, opts?: { graceMs?: number }): Promise<void>;
  status(cluster: ClusterHandle, node: NodeState): Promise<MachineStatus>;
  /** Bytes the node's console has printed since it started. */
  consoleBytes(cluster: ClusterHandle, node: string): Promise<number>;
  /** The last `lines` lines of the node's console, made printable. */
  consoleTail(cluster: ClusterHandle, node: string, lines?: number): Promise<string>;
  /** Where a person reads the node's console log and the hypervisor's own errors. */
  logFiles(cluster: ClusterHandle, node: string): { console: string; stderr: string };
  /** Forget the accelerator chosen for this host, so that the next start probes again. */
  forgetAccel(): Promise<void>;
}

export interface ClusterMachines extends Machines {
  /**
   * Give each of `nodes` that lacks one a host port for each forward its image has, keep
   * the ports nodes have, and move (and say) a port another program holds now. The
   * caller saves the state.
   */
  assignPorts(cluster: ClusterHandle, state: ClusterState, nodes: NodeState[], log: Log): Promise<void>;
  /** Create the node's persist disk of `gib` GiB unless it has one (a node's data is never replaced). True when created. */
  createPersistDisk(cluster: ClusterHandle, node: string, gib: number): Promise<boolean>;
  /**
   * Start the nodes that are not running (all of the cluster's by default), in order, and
   * leave running ones alone; on a failure, stop the ones this call started. Says which
   * accelerator it uses; returns it and the nodes started.
   */
  startCluster(cluster: ClusterHandle, state: ClusterState, log: Log, nodes?: NodeState[]): Promise<{ accel: Accel; started: NodeState[] }>;
  /** Stop every node (cleanly when graceMs > 0), then the network they share. */
  stopCluster(cluster: ClusterHandle, state: ClusterState, opts?: { graceMs?: number }): Promise<void>;
  /** Stop whatever still runs of a cluster whose state cannot be read, found by what its directory holds. */
  stopLeftovers(cluster: ClusterHandle): Promise<void>;
  /** Whether a node of the cluster runs, or the network they share. */
  anythingRunning(cluster: ClusterHandle, state: ClusterState): Promise<boolean>;
}
