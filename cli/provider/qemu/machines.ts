// Local QEMU as a Machines implementation (see provider/machine.ts).
import { imageDirFor, nodeFiles } from "../../state/state.js";
import type { ClusterMachines } from "../machine.js";
import { chooseAccel, forgetAccel } from "./accel.js";
import { anythingRunning, assignClusterPorts, nodeImageArch, startCluster, startNode, stopCluster, stopLeftovers, stopNode, vmState } from "./provider.js";
import { consoleBytes, consoleTail, createPersistDisk, vmPaths } from "./vm.js";

export const qemuMachines: ClusterMachines = {
  async start(state, node, log) {
    return startNode(state, node, await chooseAccel(imageDirFor(state.name, node.image), log, undefined, await nodeImageArch(state, node)), log);
  },
  stop: (state, node, opts) => stopNode(state, node, opts),
  status: (cluster, node) => vmState(cluster, node),
  consoleBytes: (cluster, node) => consoleBytes(nodeFiles(cluster, node).dir),
  consoleTail: (cluster, node, lines) => consoleTail(nodeFiles(cluster, node).dir, lines),
  logFiles(cluster, node) {
    const { console, stderr } = vmPaths(nodeFiles(cluster, node).dir);
    return { console, stderr };
  },
  forgetAccel,
  assignPorts: (state, nodes, log) => assignClusterPorts(state, nodes, log),
  createPersistDisk: (cluster, node, gib) => createPersistDisk(nodeFiles(cluster, node).persistDisk, gib),
  startCluster: (state, log, nodes) => startCluster(state, log, nodes),
  stopCluster: (state, opts) => stopCluster(state, opts),
  stopLeftovers,
  anythingRunning: (state) => anythingRunning(state),
};
