// Collect a root filesystem in memory, remembering where each file came from (the
// image manifest is made from that), and refusing two sources for one path.
import type { TreeEntry } from "./tree.js";
import { sha256 } from "../util/hash.js";

export interface Provenance {
  /** "deb", "service", "template", "generated" or "kernel" */
  kind: string;
  /** Package and version, or service/file name. */
  source: string;
}

export interface ManifestFile {
  path: string;
  type: TreeEntry["type"];
  mode?: string;
  size?: number;
  sha256?: string;
  target?: string;
  from: string;
}

export class Rootfs {
  private readonly entries = new Map<string, { entry: TreeEntry; from: Provenance }>();

  dir(path: string, mode = 0o755, from: Provenance = { kind: "generated", source: "resin" }): void {
    this.parents(path);
    const existing = this.entries.get(path);
    if (existing && existing.entry.type !== "dir") throw new Error(`${path}: wanted a directory, but ${describe(existing.from)} put a ${existing.entry.type} there`);
    if (!existing) this.entries.set(path, { entry: { type: "dir", path, mode }, from });
  }

  file(path: string, data: Buffer, mode: number, from: Provenance): void {
    this.claim(path, { type: "file", path, data, mode }, from);
  }

  symlink(path: string, target: string, from: Provenance, ifFree = false): void {
    if (ifFree && this.entries.has(path)) return;
    this.claim(path, { type: "symlink", path, target }, from);
  }

  has(path: string): boolean {
    return this.entries.has(path);
  }

  get(path: string): TreeEntry | undefined {
    return this.entries.get(path)?.entry;
  }

  list(): TreeEntry[] {
    return [...this.entries.values()].map((e) => e.entry);
  }

  manifest(): ManifestFile[] {
    return [...this.entries.keys()].sort().map((path) => {
      const { entry, from } = this.entries.get(path)!;
      const base = { path, type: entry.type, from: describe(from) };
      if (entry.type === "file") return { ...base, mode: modeString(entry.mode), size: entry.data.length, sha256: sha256(entry.data) };
      if (entry.type === "dir") return { ...base, mode: modeString(entry.mode) };
      return { ...base, target: entry.target };
    });
  }

  private claim(path: string, entry: TreeEntry, from: Provenance): void {
    this.parents(path);
    const existing = this.entries.get(path);
    if (existing && !sameContent(existing.entry, entry)) {
      throw new Error(`${path} is provided by both ${describe(existing.from)} and ${describe(from)}: keep it in one service`);
    }
    this.entries.set(path, { entry, from: existing?.from ?? from });
  }

  private parents(path: string): void {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const existing = this.entries.get(parent);
      if (existing && existing.entry.type !== "dir") {
        throw new Error(`${path}: its parent ${parent} is a ${existing.entry.type} from ${describe(existing.from)}`);
      }
      if (!existing) this.entries.set(parent, { entry: { type: "dir", path: parent, mode: 0o755 }, from: { kind: "generated", source: "resin" } });
    }
  }
}

function describe(p: Provenance): string {
  return `${p.kind}:${p.source}`;
}

function modeString(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

function sameContent(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type === "file" && b.type === "file") return a.mode === b.mode && a.data.equals(b.data);
  if (a.type === "symlink" && b.type === "symlink") return a.target === b.target;
  return false;
}
