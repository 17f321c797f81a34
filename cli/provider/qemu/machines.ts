// Local QEMU as a Machines implementation (see provider/machine.ts).
import { imageDirFor, nodeFiles } from "../../state/state.js";
import type { Machines } from "../machine.js";
import { chooseAccel, forgetAccel } from "./accel.js";
import { startNode, stopNode, vmState } from "./provider.js";
import { consoleBytes, consoleTail, vmPaths } from "./vm.js";

export const qemuMachines: Machines = {
  async start(state, node, log) {
    return startNode(state, node, await chooseAccel(imageDirFor(state.name, node.image), log), log);
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
};
