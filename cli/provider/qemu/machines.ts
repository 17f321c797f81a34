// Local QEMU as a Machines implementation (see provider/machine.ts).
import type { ClusterMachines } from "../machine.js";
import { chooseAccel, forgetAccel } from "./accel.js";
import { anythingRunning, assignClusterPorts, nodeImageArch, startCluster, startNode, stopCluster, stopLeftovers, stopNode, vmState } from "./provider.js";
import { consoleBytes, consoleTail, createPersistDisk, vmPaths } from "./vm.js";

export const qemuMachines: ClusterMachines = {
  async start(cluster, state, node, log) {
    return startNode(cluster, state, node, await chooseAccel(cluster.imageDir(node.image), log, undefined, await nodeImageArch(cluster, node)), log);
  },
  stop: (cluster, node, opts) => stopNode(cluster, node, opts),
  status: (cluster, node) => vmState(cluster, node),
  consoleBytes: (cluster, node) => consoleBytes(cluster.node(node).dir),
  consoleTail: (cluster, node, lines) => consoleTail(cluster.node(node).dir, lines),
  logFiles(cluster, node) {
    const { console, stderr } = vmPaths(cluster.node(node).dir);
    return { console, stderr };
  },
  forgetAccel,
  assignPorts: (cluster, state, nodes, log) => assignClusterPorts(cluster, state, nodes, log),
  createPersistDisk: (cluster, node, gib) => createPersistDisk(cluster.node(node).persistDisk, gib),
  startCluster: (cluster, state, log, nodes) => startCluster(cluster, state, log, nodes),
  stopCluster: (cluster, state, opts) => stopCluster(cluster, state, opts),
  stopLeftovers,
  anythingRunning: (cluster, state) => anythingRunning(cluster, state),
};
