// Linux initramfs archive writer: SVR4 "newc" cpio (magic 070701), the format the
// kernel unpacks into rootfs at boot (Documentation/driver-api/early-userspace/
// buffer-format.rst). Pure and deterministic: equal trees give equal bytes.

import { FIXED_MTIME, type TreeEntry } from "./tree.js";

const MAGIC = "070701";
const TRAILER_NAME = "TRAILER!!!";
/** Header = 6-byte magic + 13 fields of 8 ASCII hex digits. */
const HEADER_SIZE = 6 + 13 * 8;
/** Header+name and file data are each padded to a multiple of 4 bytes. */
const ALIGN = 4;
/** Largest value an 8-hex-digit field can hold (also the max file size). */
const MAX_FIELD = 0xffffffff;

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const PERMISSION_BITS = 0o7777;

const ZEROS = Buffer.alloc(ALIGN);

interface HeaderFields {
  ino: number;
  mode: number;
  nlink: number;
  fileSize: number;
  name: Buffer; // without the trailing NUL
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, "0");
}

function padLength(length: number): number {
  return (ALIGN - (length % ALIGN)) % ALIGN;
}

/** Header + NUL-terminated name + padding, as one buffer. */
function headerAndName(h: HeaderFields): Buffer {
  const nameSize = h.name.length + 1; // the count includes the NUL
  const fields = [
    h.ino,
    h.mode,
    0, // uid
    0, // gid
    h.nlink,
    FIXED_MTIME,
    h.fileSize,
    0, // devmajor
    0, // devminor
    0, // rdevmajor
    0, // rdevminor
    nameSize,
    0, // check (only used by the 070702 "crc" variant)
  ];
  const header = Buffer.from(MAGIC + fields.map(hex8).join(""), "ascii");
  const used = HEADER_SIZE + nameSize;
  return Buffer.concat([header, h.name, Buffer.alloc(1 + padLength(used))]);
}

function validatePath(path: string): void {
  const parts = path.split("/");
  if (path === "" || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new Error(
      `cpio: invalid path ${JSON.stringify(path)} (must be relative, without empty, "." or ".." components)`,
    );
  }
  if (path.includes("\0")) throw new Error(`cpio: path ${JSON.stringify(path)} contains a NUL byte`);
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/**
 * Serialises a tree as a newc cpio archive. Entries are written sorted by path
 * (bytewise, so a directory always precedes everything under it), with inode
 * numbers 1, 2, 3... in that order, owner root and a fixed mtime.
 * Throws on duplicate paths, invalid paths/modes, or an entry whose parent
 * directory is not itself an entry (the kernel would fail to create it).
 */
export function writeCpio(entries: TreeEntry[]): Buffer {
  const sorted = entries
    .map((entry) => ({ entry, name: Buffer.from(entry.path, "utf8") }))
    .sort((a, b) => Buffer.compare(a.name, b.name));

  const dirs = new Set<string>([""]); // "" = the archive root, always present
  const chunks: Buffer[] = [];
  let previous: string | undefined;
  let ino = 0;

  for (const { entry, name } of sorted) {
    validatePath(entry.path);
    if (entry.path === previous) throw new Error(`cpio: duplicate path ${JSON.stringify(entry.path)}`);
    previous = entry.path;
    // The parent is a prefix of the path, so it sorts (and was recorded) earlier.
    const parent = parentOf(entry.path);
    if (!dirs.has(parent)) {
      throw new Error(
        `cpio: parent directory ${JSON.stringify(parent)} of ${JSON.stringify(entry.path)} is missing`,
      );
    }

    ino += 1;
    let data: Buffer;
    let mode: number;
    switch (entry.type) {
      case "dir":
        dirs.add(entry.path);
        data = Buffer.alloc(0);
        mode = S_IFDIR | checkMode(entry.path, entry.mode);
        break;
      case "file":
        data = entry.data;
        mode = S_IFREG | checkMode(entry.path, entry.mode);
        break;
      case "symlink":
        if (entry.target === "") throw new Error(`cpio: symlink ${JSON.stringify(entry.path)} has an empty target`);
        data = Buffer.from(entry.target, "utf8"); // a symlink's data is its target
        mode = S_IFLNK | 0o777;
        break;
    }
    if (data.length > MAX_FIELD) {
      throw new Error(`cpio: ${JSON.stringify(entry.path)} is too large for newc (${data.length} bytes)`);
    }

    // nlink 2 for a directory: its own "." plus the entry in its parent.
    const nlink = entry.type === "dir" ? 2 : 1;
    chunks.push(headerAndName({ ino, mode, nlink, fileSize: data.length, name }));
    if (data.length > 0) {
      chunks.push(data);
      chunks.push(ZEROS.subarray(0, padLength(data.length)));
    }
  }

  chunks.push(
    headerAndName({ ino: 0, mode: 0, nlink: 1, fileSize: 0, name: Buffer.from(TRAILER_NAME, "ascii") }),
  );
  return Buffer.concat(chunks);
}

function checkMode(path: string, mode: number): number {
  if (!Number.isInteger(mode) || (mode & ~PERMISSION_BITS) !== 0 || mode < 0) {
    throw new Error(`cpio: ${JSON.stringify(path)} has invalid mode ${mode} (permission bits only, e.g. 0o755)`);
  }
  return mode;
}
