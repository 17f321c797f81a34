// Images a cluster's nodes boot are copied into the cluster's state directory, by
// digest: a later build never changes what a running node boots, and the image a node
// ran before an upgrade stays there until the upgrade is complete.
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, rename, rm } from "node:fs/promises";
import { clusterPaths, imageDirFor, type ClusterState } from "./state.js";

export async function installImage(cluster: string, builtDir: string, digest: string): Promise<void> {
  const dir = imageDirFor(cluster, digest);
  if (existsSync(dir)) return;
  await mkdir(clusterPaths(cluster).images, { recursive: true });
  await rm(`${dir}.tmp`, { recursive: true, force: true });
  // What a local VM boots: kernel, initramfs, squashfs root, manifest. The disk images
  // (disk.raw, disk.qcow2) are for other hypervisors and stay in out/.
  await cp(builtDir, `${dir}.tmp`, { recursive: true, filter: (src) => !/\/disk\.(raw|qcow2)$/.test(src) });
  await rename(`${dir}.tmp`, dir);
}

/** Delete images no node boots and no unfinished upgrade may roll back to. */
export async function pruneImages(state: ClusterState): Promise<string[]> {
  const keep = new Set([...state.nodes.map((n) => n.image), ...Object.values(state.upgrade?.previous ?? {})].map((d) => d.replace(/^sha256:/, "")));
  const dir = clusterPaths(state.name).images;
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (keep.has(name)) continue;
    await rm(`${dir}/${name}`, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
