// `resin down`: stop every VM and the switch by pid. State stays unless --purge.
import { rm } from "node:fs/promises";
import { clusterPaths, requireCluster } from "../cluster/state.js";
import { stopCluster } from "../provider/qemu/provider.js";
import type { Log } from "../util/log.js";

export async function down(opts: { name: string; purge: boolean; log: Log }): Promise<void> {
  const state = await requireCluster(opts.name);
  opts.log(`cluster ${opts.name}: stopping ${state.nodes.length} nodes`);
  await stopCluster(state);
  const { dir } = clusterPaths(opts.name);
  if (opts.purge) {
    await rm(dir, { recursive: true, force: true });
    opts.log(`cluster ${opts.name}: stopped and deleted (disks, secrets and logs removed)`);
  } else {
    opts.log(`cluster ${opts.name}: stopped; disks, secrets and logs kept in ${dir} (\`resin up --name ${opts.name}\` starts it again)`);
  }
}
