// The dm-verity hash tree Resin writes (cli/image/verity.ts), checked against the real
// tool: veritysetup (cryptsetup-bin) must accept it, and must write the same root hash and
// the same hash device bytes for the same data, salt and UUID. Then what is built on it:
// the salt derived from the content, the manifest's verity field, `resin inspect --verify`
// and the check before an image is installed into a cluster.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { verifyCommand } from "../../cli/commands/inspect.js";
import { installImage } from "../../cli/cluster/images.js";
import { digestParts, imageDigest, parseManifest, type ImageManifest } from "../../cli/image/manifest.js";
import { writeSquashfs } from "../../cli/image/squashfs.js";
import { verityCmdline, veritySalt, verityTable, verityUuid, writeVerity } from "../../cli/image/verity.js";
import { clusterHandle } from "../../cli/state/state.js";
import { PackageSchema } from "../../cli/spec/schema.js";
import { ResinError } from "../../cli/util/errors.js";
import { canonicalJson, sha256, sha256File } from "../../cli/util/hash.js";

const work = mkdtempSync(join(tmpdir(), "resin-verity-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Bytes that differ in every 64-byte piece, so a hash of the wrong block would be noticed. */
function distinctBytes(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let at = 0, i = 0; at < size; at += 64, i++) createHash("sha512").update(`${seed} ${i}`).digest().copy(out, at);
  return out;
}

/** Run a tool; `said` is everything it printed, the assertion message when it is not what a test expects. */
function run(args: string[]) {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, said: `${args.join(" ")}\nexit ${r.status}\n${r.stdout}${r.stderr}${r.error ? String(r.error) : ""}` };
}
const said = (r: ReturnType<typeof run>) => r.said;

/** Resin's tree for `data`, and veritysetup's for the same data, salt and UUID. */
async function bothTrees(name: string, data: Buffer) {
  const path = join(work, `${name}.data`);
  writeFileSync(path, data);
  const ours = join(work, `${name}.verity`);
  const params = await writeVerity(path, sha256(data), ours);
  const theirs = join(work, `${name}.veritysetup`);
  rmSync(theirs, { force: true });
  const format = run(["veritysetup", "format", path, theirs, "--salt", params.salt, "--uuid", params.uuid]);
  expect(format.status, said(format)).toBe(0);
  return { path, ours, theirs, params, format };
}

describe("the hash tree Resin writes, against veritysetup", () => {
  // 1 block: no hash level, the root is the block's hash; 128: one full hash block;
  // 129: two levels; 16385 (128·128+1): three levels.
  for (const blocks of [1, 128, 129, 16385]) {
    it(`${blocks} data block(s): the same root hash and hash device bytes as veritysetup format, and veritysetup verify accepts it`, async () => {
      const { path, ours, theirs, params, format } = await bothTrees(`b${blocks}`, distinctBytes(blocks * 4096, `b${blocks}`));
      expect(params.dataBlocks).toBe(blocks);
      expect(format.stdout, said(format)).toMatch(new RegExp(`Root hash:\\s+${params.rootHash}\\n`));
      expect(format.stdout, said(format)).toMatch(/Hash type:\s+1\n[\s\S]*Data block size:\s+4096\n[\s\S]*Hash block size:\s+4096\n[\s\S]*Hash algorithm:\s+sha256\n/);
      expect(readFileSync(ours).equals(readFileSync(theirs)), `hash devices differ: ours ${statSync(ours).size} bytes, veritysetup's ${statSync(theirs).size}`).toBe(true);
      const verify = run(["veritysetup", "verify", path, ours, params.rootHash]);
      expect(verify.status, said(verify)).toBe(0);
    });
  }

  it("a squashfs from mksquashfs is whole 4 KiB blocks (however odd its files), and veritysetup accepts its tree", async () => {
    const out = join(work, "odd.squashfs");
    const entries = [
      { type: "dir" as const, path: "etc", mode: 0o755 },
      { type: "file" as const, path: "etc/odd", data: distinctBytes(12345, "odd"), mode: 0o644 },
      { type: "file" as const, path: "etc/one", data: Buffer.from("x"), mode: 0o644 },
    ];
    await writeSquashfs(entries, out);
    expect(statSync(out).size % 4096).toBe(0);
    const params = await writeVerity(out, await sha256File(out), join(work, "odd.verity"));
    const verify = run(["veritysetup", "verify", out, join(work, "odd.verity"), params.rootHash]);
    expect(verify.status, said(verify)).toBe(0);
  });

  it("refuses data that is not whole 4096-byte blocks (mksquashfs -nopad), which veritysetup would cover only in part", async () => {
    const path = join(work, "partial.data");
    writeFileSync(path, distinctBytes(4096 + 100, "partial"));
    const e = await writeVerity(path, sha256(readFileSync(path)), join(work, "partial.verity")).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ResinError);
    expect((e as Error).message).toBe(`${path}: 4196 bytes is not a whole number of 4096-byte blocks, so dm-verity cannot cover all of it`);
    expect(existsSync(join(work, "partial.verity"))).toBe(false);
  });

  it("a flipped byte in the data makes veritysetup verify fail", async () => {
    const data = distinctBytes(300 * 4096, "flip");
    const { path, ours, params } = await bothTrees("flip", data);
    data[200 * 4096 + 17]! ^= 0x01;
    writeFileSync(path, data);
    const verify = run(["veritysetup", "verify", path, ours, params.rootHash]);
    expect(verify.status, said(verify)).not.toBe(0);
    expect(verify.stderr, said(verify)).toMatch(/Verification of data in area 0x[0-9a-f]+ failed|Verification failed/);
  });
});

describe("salt and UUID come from the content", () => {
  it("are the same for the same content, differ for different content, and are not the content's own hash", () => {
    const [a, b] = [sha256("one squashfs"), sha256("another squashfs")];
    expect(veritySalt(a)).toBe(veritySalt(a));
    expect(veritySalt(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(veritySalt(a)).not.toBe(veritySalt(b));
    expect(veritySalt(a)).not.toBe(a);
    expect(verityUuid(a)).toBe(verityUuid(a));
    expect(verityUuid(a)).not.toBe(verityUuid(b));
    // An RFC 9562 UUID, version 8 (custom), which veritysetup --uuid accepts.
    expect(verityUuid(a)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("writing the tree twice gives the same bytes", async () => {
    const path = join(work, "twice.data");
    writeFileSync(path, distinctBytes(140 * 4096, "twice"));
    const hash = sha256(readFileSync(path));
    const first = await writeVerity(path, hash, join(work, "twice.1"));
    const second = await writeVerity(path, hash, join(work, "twice.2"));
    expect(second).toEqual(first);
    expect(readFileSync(join(work, "twice.1")).equals(readFileSync(join(work, "twice.2")))).toBe(true);
  });
});

/** A small image directory with a real squashfs and its tree, and a manifest that tells the truth. */
async function realImage(name: string): Promise<{ dir: string; manifest: ImageManifest }> {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const described = async (file: string) => ({ file, sha256: await sha256File(join(dir, file)), size: statSync(join(dir, file)).size });
  const plain = (file: string, text: string) => (writeFileSync(join(dir, file), text), described(file));
  await writeSquashfs([{ type: "file", path: "big", data: distinctBytes(600_000, name), mode: 0o644 }], join(dir, "rootfs.squashfs"));
  const [kernel, initrd, rootfs] = [await plain("vmlinuz", "kernel"), await plain("initrd.img", "initrd"), await described("rootfs.squashfs")];
  const verity = { ...(await writeVerity(join(dir, "rootfs.squashfs"), rootfs.sha256, join(dir, "rootfs.verity"))), ...(await described("rootfs.verity")) };
  const manifest = {
    role: "consul-server",
    channel: "debian",
    inputDigest: "x",
    digest: imageDigest(digestParts({ kernel, initrd, rootfs, verity })),
    kernel: { ...kernel, version: "6.1", modules: [] },
    initrd,
    rootfs,
    verity,
    disk: { raw: await plain("disk.raw", "raw"), qcow2: await plain("disk.qcow2", "qcow2"), iso: { ...(await plain("disk.iso", "iso")), volumeId: "RESIN-x" }, cmdline: "x", partitions: [] },
    services: [],
    packages: [],
    releases: [],
    files: [],
    initramfsFiles: [],
  } as unknown as ImageManifest;
  writeFileSync(join(dir, "manifest.json"), `${canonicalJson(manifest)}\n`);
  return { dir, manifest };
}

describe("the manifest's verity field", () => {
  it("round-trips through the manifest schema", async () => {
    const { dir, manifest } = await realImage("roundtrip");
    const text = readFileSync(join(dir, "manifest.json"), "utf8");
    const parsed = parseManifest(text, "manifest.json");
    expect(parsed.verity).toEqual(manifest.verity);
    expect(canonicalJson(parsed)).toBe(canonicalJson(manifest));
    expect(Object.keys(parsed.verity!).sort()).toEqual(["dataBlockSize", "dataBlocks", "file", "hashAlgorithm", "hashBlockSize", "hashOffset", "hashType", "rootHash", "salt", "sha256", "size", "uuid"]);
  });

  it("is refused when a field is not what veritysetup's default format says", async () => {
    const { manifest } = await realImage("schema");
    const cases: [string, (v: Record<string, unknown>) => void, RegExp][] = [
      ["a root hash that is not hex", (v) => (v.rootHash = "../etc"), /verity\.rootHash: must be 64 lower-case hex digits/],
      ["another hash type", (v) => (v.hashType = 0), /verity\.hashType/],
      ["another block size", (v) => (v.dataBlockSize = 512), /verity\.dataBlockSize/],
      ["another file name", (v) => (v.file = "../rootfs.verity"), /verity\.file: must be a plain file name/],
    ];
    for (const [what, change, error] of cases) {
      const bad = JSON.parse(JSON.stringify(manifest));
      change(bad.verity);
      expect(() => parseManifest(JSON.stringify(bad), "m.json"), what).toThrow(error);
    }
  });

  it("the image digest covers rootfs.verity", async () => {
    const { manifest } = await realImage("digest");
    const other = { ...manifest.verity!, sha256: sha256("another tree") };
    expect(imageDigest(digestParts({ ...manifest, verity: other }))).not.toBe(manifest.digest);
    expect(imageDigest(digestParts(manifest))).toBe(manifest.digest);
  });
});

describe("resin inspect --verify", () => {
  it("says what it checked when nothing differs", async () => {
    const { dir, manifest } = await realImage("intact");
    const report = await verifyCommand(dir, manifest);
    expect(report).toContain(`verity root hash ${manifest.verity!.rootHash}, recomputed from rootfs.squashfs`);
    expect(report).toContain("rootfs.squashfs, rootfs.verity, disk.raw");
  });

  it("names the root hash mismatch when a byte of the squashfs flipped (and veritysetup verify fails too)", async () => {
    const { dir, manifest } = await realImage("flipped");
    const data = readFileSync(join(dir, "rootfs.squashfs"));
    data[data.length - 4096 - 3]! ^= 0x80;
    writeFileSync(join(dir, "rootfs.squashfs"), data);
    const verify = run(["veritysetup", "verify", join(dir, "rootfs.squashfs"), join(dir, "rootfs.verity"), manifest.verity!.rootHash]);
    expect(verify.status, said(verify)).not.toBe(0);
    const e = await verifyCommand(dir, manifest).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ResinError);
    const lines = (e as Error).message.split("\nresin: ");
    expect(lines).toContain(`image ${dir}: rootfs.squashfs: sha256 is ${sha256(data)}, the manifest says ${manifest.rootfs.sha256}`);
    expect(lines.find((l) => l.includes("verity root hash"))).toMatch(new RegExp(`^image ${dir}: rootfs.squashfs: verity root hash is [0-9a-f]{64}, the manifest says ${manifest.verity!.rootHash}$`));
    expect(lines.every((l) => !l.startsWith(`image ${dir}: vmlinuz`))).toBe(true);
    // And the tree rebuilt from it differs from rootfs.verity; nothing else does.
    expect(lines[2]).toMatch(new RegExp(`^image ${dir}: rootfs.verity: sha256 of the hash tree recomputed from rootfs.squashfs is [0-9a-f]{64}, the manifest says ${manifest.verity!.sha256}$`));
    expect(lines).toHaveLength(3);
  });

  it("names a hash tree changed on disk, and a manifest without one", async () => {
    const { dir, manifest } = await realImage("tree");
    const tree = readFileSync(join(dir, "rootfs.verity"));
    tree[tree.length - 1]! ^= 0x01;
    writeFileSync(join(dir, "rootfs.verity"), tree);
    const e = await verifyCommand(dir, manifest).catch((x: unknown) => x as Error);
    expect((e as Error).message).toBe(`image ${dir}: rootfs.verity: sha256 is ${sha256(tree)}, the manifest says ${manifest.verity!.sha256}`);
    const old = { ...manifest, verity: undefined };
    const none = await verifyCommand(dir, old).catch((x: unknown) => x as Error);
    expect((none as Error).message).toContain("rootfs.verity: the verity hash tree is none in the manifest (built before Resin wrote one)");
  });
});

describe("a salt not derived from the content", () => {
  it("is named, even when the tree and root hash agree with it", async () => {
    const { dir, manifest } = await realImage("salted");
    // A tree and manifest made with a random-looking salt, every hash consistent.
    const salt = sha256("not from the content");
    const { verityHashDevice } = await import("../../cli/image/verity.js");
    const { params, bytes } = await verityHashDevice(join(dir, "rootfs.squashfs"), { salt, uuid: manifest.verity!.uuid });
    writeFileSync(join(dir, "rootfs.verity"), Buffer.concat(bytes));
    const verity = { ...manifest.verity!, ...params, sha256: sha256(Buffer.concat(bytes)) };
    const m = { ...manifest, verity, digest: imageDigest(digestParts({ ...manifest, verity })) };
    const e = await verifyCommand(dir, m).catch((x: unknown) => x as Error);
    expect((e as Error).message).toBe(`image ${dir}: rootfs.verity: verity salt derived from rootfs.squashfs's sha256 in the manifest is ${manifest.verity!.salt}, the manifest says ${salt}`);
  });
});

describe("installing an image into a cluster", () => {
  const saved = process.env.RESIN_STATE_HOME;
  afterEach(() => {
    if (saved === undefined) delete process.env.RESIN_STATE_HOME;
    else process.env.RESIN_STATE_HOME = saved;
  });

  it("copies rootfs.verity, and refuses a squashfs whose verity root is not the manifest's even when every sha256 and the digest agree", async () => {
    process.env.RESIN_STATE_HOME = join(work, "state");
    const cluster = clusterHandle("verity");
    const good = await realImage("install-good");
    await installImage(cluster, good.dir, good.manifest.digest);
    const installed = cluster.imageDir(good.manifest.digest);
    expect(readFileSync(join(installed, "rootfs.verity")).equals(readFileSync(join(good.dir, "rootfs.verity")))).toBe(true);

    // Another squashfs under the old tree and root hash, its sha256 and the digest made to agree.
    const bad = await realImage("install-bad");
    copyFileSync(join(good.dir, "rootfs.verity"), join(bad.dir, "rootfs.verity"));
    const verity = { ...bad.manifest.verity!, ...good.manifest.verity!, salt: veritySalt(bad.manifest.rootfs.sha256) };
    const lie = { ...bad.manifest, verity, digest: imageDigest(digestParts({ ...bad.manifest, verity })) };
    writeFileSync(join(bad.dir, "manifest.json"), canonicalJson(lie));
    const e = await installImage(cluster, bad.dir, lie.digest).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ResinError);
    expect((e as Error).message).toMatch(new RegExp(`^image ${bad.dir}: its root filesystem does not match its dm-verity hash tree: .*rootfs.squashfs: verity root hash is [0-9a-f]{64}, the manifest says ${good.manifest.verity!.rootHash}`));
    expect(existsSync(cluster.imageDir(lie.digest))).toBe(false);
    expect(existsSync(`${cluster.imageDir(lie.digest)}.tmp`)).toBe(false);
  });
});

describe("what a local boot hands the initramfs", () => {
  const p = { rootHash: "ab".repeat(32), salt: "cd".repeat(32), dataBlocks: 5101 };

  it("the command line names the root hash, salt and block count, and the hash disk only when it is not the default", () => {
    expect(verityCmdline(p)).toBe(`resin.verity.roothash=${"ab".repeat(32)} resin.verity.salt=${"cd".repeat(32)} resin.verity.blocks=5101`);
    expect(verityCmdline(p, "PARTLABEL=resin-verity").split(" ").at(-1)).toBe("resin.verity.hash=PARTLABEL=resin-verity");
  });

  it("the command line refuses values that would not be one word of the right form", () => {
    expect(() => verityCmdline({ ...p, rootHash: "AB".repeat(32) })).toThrow(/root hash/);
    expect(() => verityCmdline({ ...p, rootHash: "ab".repeat(31) })).toThrow(/root hash/);
    expect(() => verityCmdline({ ...p, salt: "abc" })).toThrow(/salt/);
    expect(() => verityCmdline({ ...p, salt: "ab cd" })).toThrow(/salt/);
    expect(() => verityCmdline({ ...p, dataBlocks: 0 })).toThrow(/block count/);
    expect(() => verityCmdline({ ...p, dataBlocks: 1.5 })).toThrow(/block count/);
    expect(() => verityCmdline(p, "a b")).toThrow(/one command line word/);
  });

  it("the table covers every data block in 512-byte sectors, starts the tree after the superblock, and adds the error mode when asked", () => {
    expect(verityTable(p, "/dev/vda", "/dev/vdb")).toBe(`0 40808 verity 1 /dev/vda /dev/vdb 4096 4096 5101 1 sha256 ${"ab".repeat(32)} ${"cd".repeat(32)}`);
    expect(verityTable(p, "/dev/vda", "/dev/vdb", "panic_on_corruption")).toMatch(/ 1 panic_on_corruption$/);
  });

  // The real tool reads the same table: veritysetup open --debug would need device-mapper
  // here; what it can do without is check the offsets the table names against the tree
  // Resin writes, which veritysetup verify does with --hash-offset (block 1 = 4096 bytes).
  it("the tree starts where the table says: veritysetup verify without the superblock, at hash offset 4096, accepts it", async () => {
    const data = join(work, "table.img");
    writeFileSync(data, distinctBytes(300 * 4096, "table"));
    const params = await writeVerity(data, await sha256File(data), join(work, "table.verity"));
    const table = verityTable(params, "DATA", "HASH").split(" ");
    const [hashStart, algorithm, rootHash, salt] = table.slice(9, 13);
    const r = spawnSync("veritysetup", ["verify", "--no-superblock", `--hash-offset=${Number(hashStart) * 4096}`, `--hash=${algorithm}`, `--data-blocks=${table[8]}`, `--salt=${salt}`, data, join(work, "table.verity"), rootHash!], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(Number(table[1])).toBe(statSync(data).size / 512);
  });
});

describe("a package file for the initramfs only (dmsetup)", () => {
  it("is marked initramfs: true, and cannot also be build_only, install_to or applets", () => {
    expect(PackageSchema.parse({ name: "dmsetup", paths: ["sbin/dmsetup"], initramfs: true }).initramfs).toBe(true);
    expect(PackageSchema.parse({ name: "dmsetup", paths: ["sbin/dmsetup"] }).initramfs).toBe(false);
    for (const extra of [{ build_only: true }, { install_to: "usr/bin" }, { applets: true }]) {
      const r = PackageSchema.safeParse({ name: "dmsetup", paths: ["sbin/dmsetup"], initramfs: true, ...extra });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.message).toMatch(/initramfs: true cannot be combined/);
    }
  });
});
