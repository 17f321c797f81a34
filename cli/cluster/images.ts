// Images a cluster's nodes boot are copied into the cluster's state directory, by
// digest: a later build never changes what a running node boots, and the image a node
// ran before an upgrade stays there until the upgrade is complete.
import { existsSync } from "node:fs";
import { copyFile, cp, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { clusterPaths, imageDirFor, type ClusterState } from "./state.js";

const DISK_FILES = ["disk.raw", "disk.qcow2", "disk.iso"];

/** Disk image files (disk.raw, disk.qcow2, disk.iso) the cluster's copy of an image lacks. */
export function missingDiskImages(cluster: string, digest: string): string[] {
  return DISK_FILES.filter((f) => !existsSync(join(imageDirFor(cluster, digest), f)));
}

/**
 * Copy a built image into the cluster, by digest. What a local VM boots: kernel,
 * initramfs, squashfs root, manifest. The disk images (disk.raw, disk.qcow2, disk.iso)
 * are for other hypervisors and clouds: copied only when asked (`resin plan`), never
 * replaced.
 */
export async function installImage(cluster: string, builtDir: string, digest: string, opts: { disks?: boolean } = {}): Promise<void> {
  const dir = imageDirFor(cluster, digest);
  if (!existsSync(dir)) {
    await mkdir(clusterPaths(cluster).images, { recursive: true });
    await rm(`${dir}.tmp`, { recursive: true, force: true });
    await cp(builtDir, `${dir}.tmp`, { recursive: true, filter: (src) => !DISK_FILES.some((f) => src.endsWith(`/${f}`)) });
    await rename(`${dir}.tmp`, dir);
  }
  if (!opts.disks) return;
  for (const file of missingDiskImages(cluster, digest)) {
    await copyFile(join(builtDir, file), join(dir, `${file}.tmp`));
    await rename(join(dir, `${file}.tmp`), join(dir, file));
  }
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
