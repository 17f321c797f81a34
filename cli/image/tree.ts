// A root filesystem as plain data: the image stage assembles one of these, and the
// archive writers (cpio, squashfs, iso) turn it into bytes. Paths are relative
// ("etc/passwd"), owner is always root, and there are no timestamps: every archive
// writer stamps the same fixed mtime so that equal trees give equal bytes.

export type TreeEntry =
  | { type: "dir"; path: string; mode: number }
  | { type: "file"; path: string; mode: number; data: Buffer }
  | { type: "symlink"; path: string; target: string };

/** Fixed modification time written into every archive (1970-01-01T00:00:00Z). */
export const FIXED_MTIME = 0;
