// `resin down`: stop every VM and the switch by pid. Disks, secrets and logs stay;
// only `resin destroy` deletes them.
import { clusterPaths, requireCluster } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import type { Log } from "../util/log.js";

export async function down(opts: { name: string; log: Log }): Promise<void> {
  const state = await requireCluster(opts.name);
  opts.log(`cluster ${opts.name}: stopping ${state.nodes.length} nodes`);
  await localMachines().stopCluster(state);
  opts.log(`cluster ${opts.name}: stopped; disks, secrets and logs kept in ${clusterPaths(opts.name).dir} (\`resin up --name ${opts.name}\` starts it again)`);
}
