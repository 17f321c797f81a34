// Images as layouts, so that no image is ever whole in memory, whatever its payload. A
// layout is a size and pieces at byte offsets; a piece is bytes in memory (headers,
// tables, directory records: small), a whole file (a kernel, an initramfs, the squashfs
// root: large) or another layout (a FAT volume inside a disk). Every byte no piece
// covers is zero. The writers (uki.ts, fat.ts, iso9660.ts, disk.ts, with gpt.ts's
// headers) return layouts; only writeLayout and chunksOf read the files, a fixed 1 MiB
// at a time, in the spirit of gokrazy's streaming writers.
import { createHash } from "node:crypto";
import { open, stat, type FileHandle } from "node:fs/promises";

/** A whole file, by path, and the size it had when the layout was made. */
export interface FileBytes {
  path: string;
  size: number;
}

export interface Piece {
  offset: number;
  data: Bytes;
}

export interface Layout {
  size: number;
  /** In offset order, none overlapping another. */
  pieces: Piece[];
}

export type Bytes = Buffer | FileBytes | Layout;

/** How much of a file is read at once. */
const CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

export const isLayout = (data: Bytes): data is Layout => !Buffer.isBuffer(data) && "pieces" in data;

export const sizeOf = (data: Bytes): number => (Buffer.isBuffer(data) ? data.length : data.size);

export async function fileBytes(path: string): Promise<FileBytes> {
  return { path, size: (await stat(path)).size };
}

/** A layout of `size` bytes from pieces in any order; empty pieces are dropped, overlapping ones refused. */
export function layout(size: number, pieces: Piece[]): Layout {
  const sorted = pieces.filter((p) => sizeOf(p.data) > 0).sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const p of sorted) {
    if (!Number.isSafeInteger(p.offset) || p.offset < end) throw new Error(`layout: the piece at byte ${p.offset} overlaps the one before it, which ends at ${end}`);
    end = p.offset + sizeOf(p.data);
  }
  if (end > size) throw new Error(`layout: its pieces end at byte ${end}, after its size of ${size}`);
  return { size, pieces: sorted };
}

/** The bytes of an in-memory layout (config drives, tests): refuses one that holds a file. */
export function inMemory(data: Bytes): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (!isLayout(data)) throw new Error(`layout: ${data.path} is a file; write the layout with writeLayout`);
  const out = Buffer.alloc(data.size);
  for (const p of data.pieces) inMemory(p.data).copy(out, p.offset);
  return out;
}

async function writeAll(out: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await out.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Read a file's first `size` bytes, `buffer.length` at a time: each chunk is valid until the next is asked for. */
async function* fileChunks(file: FileBytes, buffer: Buffer): AsyncGenerator<Buffer> {
  const handle = await open(file.path, "r");
  try {
    for (let done = 0; done < file.size; ) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, file.size - done), done);
      if (bytesRead === 0) throw new Error(`layout: ${file.path} ends at byte ${done}, but had ${file.size} bytes when the image was laid out`);
      yield buffer.subarray(0, bytesRead);
      done += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

async function writeBytes(out: FileHandle, data: Bytes, position: number, buffer: Buffer): Promise<void> {
  if (Buffer.isBuffer(data)) return writeAll(out, data, position);
  if (isLayout(data)) {
    for (const p of data.pieces) await writeBytes(out, p.data, position + p.offset, buffer);
    return;
  }
  let at = position;
  for await (const chunk of fileChunks(data, buffer)) {
    await writeAll(out, chunk, at);
    at += chunk.length;
  }
}

/** Write a layout to `path`: each piece at its offset, the rest left as holes (sparse where it is zero). */
export async function writeLayout(path: string, image: Layout): Promise<void> {
  const out = await open(path, "w");
  try {
    await writeBytes(out, image, 0, Buffer.allocUnsafe(CHUNK));
    await out.truncate(image.size);
  } finally {
    await out.close();
  }
}

function* zeros(bytes: number): Generator<Buffer> {
  for (let left = bytes; left > 0; left -= CHUNK) yield ZEROS.subarray(0, Math.min(left, CHUNK));
}

/** Every byte of `data` in order, zeros included, a chunk at a time: each chunk is valid until the next is asked for. */
export async function* chunksOf(data: Bytes): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(data)) {
    yield data;
    return;
  }
  if (!isLayout(data)) {
    yield* fileChunks(data, Buffer.allocUnsafe(CHUNK));
    return;
  }
  let at = 0;
  for (const p of data.pieces) {
    yield* zeros(p.offset - at);
    yield* chunksOf(p.data);
    at = p.offset + sizeOf(p.data);
  }
  yield* zeros(data.size - at);
}

export async function sha256Of(data: Bytes): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of chunksOf(data)) hash.update(chunk);
  return hash.digest("hex");
}
