// `resin down`: stop every VM and the switch by pid. Disks, secrets and logs stay;
// only `resin destroy` deletes them.
import type { ClusterHandle } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import type { Log } from "../util/log.js";

export async function down(opts: { cluster: ClusterHandle; log: Log }): Promise<void> {
  const { cluster } = opts;
  const state = await cluster.require();
  opts.log(`cluster ${cluster.name}: stopping ${state.nodes.length} nodes`);
  await localMachines().stopCluster(cluster, state);
  opts.log(`cluster ${cluster.name}: stopped; disks, secrets and logs kept in ${cluster.dir} (\`resin up --name ${cluster.name}\` starts it again)`);
}
