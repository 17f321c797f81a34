// The signed boot chain under real firmware: Debian's OVMF Secure Boot build
// (OVMF_CODE_4M.secboot.fd, SMM) with its variable store that has Debian's test
// certificate (PkKek-1-snakeoil) enrolled as PK, KEK and db.
//
// `resin build --sign` signs the consul-server image in a project of its own (so the
// suite's shared unsigned images stay as they are), twice from scratch: the same bytes.
// `resin up --secure-boot` boots a node from that signed disk.qcow2 to a ready Consul.
// The same disk with one byte of the kernel changed inside the UKI's .linux section on
// the ESP, and the suite's unsigned disk.qcow2, are refused by the firmware itself: its
// console says "Access Denied" for the boot entry and no kernel ever prints.
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readManifest, type ImageManifest } from "../../cli/image/manifest.js";
import { debianTestKey } from "../../cli/image/sign.js";
import { peSections } from "../../cli/image/uki.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { QEMU } from "../../cli/provider/qemu/accel.js";
import { readPid } from "../../cli/provider/qemu/process.js";
import { startSwitch, stopSwitch, switchPaths } from "../../cli/provider/qemu/vde.js";
import { createPersistDisk, OVMF_SECURE_BOOT, qemuArgs, stopVm, vmPaths, vmPid, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { keepLogsOnFailure, killLeftovers, overrideStock, processesUnder, repoRoot, resinAsync, resinStatus } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "resin-e2e-secureboot-"));
const stateHome = join(work, "state");
keepLogsOnFailure(stateHome, "secure-boot");
const env = { RESIN_STATE_HOME: stateHome, RESIN_OFFLINE: "1" };
const unsignedDir = join(repoRoot, "out", "images", "debian", "consul-server");
const timings: string[] = [];
let key = "";
let cert = "";
let signed: ImageManifest;
let signedDir = "";

function report(line: string): void {
  timings.push(line);
  process.stderr.write(`secure-boot: ${line}\n`);
}

/** A project with no roles of its own: `resin build` there builds the stock consul-server into its own out/. */
function project(name: string): string {
  const dir = join(work, name);
  mkdirSync(join(dir, "machines"), { recursive: true });
  return dir;
}

async function signedBuild(dir: string): Promise<number> {
  const started = Date.now();
  const r = await resinAsync(["build", "consul-server", "--channel", "debian", "--sign", `${key},${cert}`], env, 15 * 60_000, dir);
  expect(r.status, r.stderr).toBe(0);
  return (Date.now() - started) / 1000;
}

/**
 * Boot `disk` (qcow2) as Resin boots a Secure Boot node (qemuArgs with its UEFI boot),
 * with a fresh copy of the enrolled variable store, until the firmware gives up on the
 * disk's boot entry; then stop it by its pid and give the console.
 */
async function firmwareRefuses(label: string, disk: string): Promise<{ console: string; seconds: number }> {
  const dir = join(work, label);
  mkdirSync(dir, { recursive: true });
  const sw = switchPaths(dir);
  await startSwitch(sw);
  try {
    const vars = join(dir, "OVMF_VARS.fd");
    copyFileSync(OVMF_SECURE_BOOT.vars, vars);
    const persistDisk = join(dir, "persist.qcow2");
    await createPersistDisk(persistDisk, 1);
    const plan = planCluster(`sb-${label}`, ["consul-server"]).nodes[0]!;
    const spec: VmSpec = {
      name: plan.name, dir, kernel: "unused", initrd: "unused", rootDisk: "unused", append: "unused",
      memoryMib: 1024, cpus: 1, accel: "tcg", switchSocket: sw.socket, clusterMac: plan.clusterMac, hostMac: plan.hostMac,
      forwards: [], persistDisk,
      uefi: { code: OVMF_SECURE_BOOT.code, vars, disk, secureBoot: true },
    };
    const args = qemuArgs(spec);
    // The firmware, not a kernel, is what boots: no -kernel, and SMM-protected variables.
    expect(args).not.toContain("-kernel");
    expect(args).toContain("driver=cfi.pflash01,property=secure,value=on");
    const started = Date.now();
    const result = await execa(QEMU, args, { reject: false, stdin: "ignore" });
    const pid = await readPid(vmPaths(dir).pidFile);
    if (result.exitCode !== 0 || !pid) throw new Error(`QEMU did not start: ${result.stderr || result.stdout}`);
    const read = () => (existsSync(vmPaths(dir).console) ? readFileSync(vmPaths(dir).console, "latin1") : "");
    const deadline = Date.now() + 180_000;
    // After the disk's entry fails the firmware tries its shell (refused too) and then waits for a key.
    while (!/No bootable option or device was found/.test(read())) {
      if (Date.now() > deadline || !(await vmPid(dir))) throw new Error(`the firmware neither booted nor refused ${label} within 180s; console:\n${read().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    return { console: read(), seconds: (Date.now() - started) / 1000 };
  } finally {
    await stopVm(dir, { graceMs: 0 });
    await stopSwitch(sw);
  }
}

/** What the firmware printed about the disk's boot entry: refused for its signature, and nothing after it started. */
function expectRefusedForSignature(console: string): void {
  expect(console).toMatch(/BdsDxe: failed to load Boot\d+ "UEFI Misc Device" from PciRoot\([^)]*\)\/Pci\([^)]*\): Access Denied/);
  expect(console).not.toMatch(/BdsDxe: starting Boot\d+ "UEFI Misc Device"/);
  expect(console).not.toContain("resin:");
}

describe("Secure Boot: a signed UKI boots under enforcing firmware, a changed or unsigned one does not", () => {
  beforeAll(async () => {
    for (const f of [OVMF_SECURE_BOOT.code, OVMF_SECURE_BOOT.vars, OVMF_SECURE_BOOT.cert]) {
      if (!existsSync(f)) throw new Error(`no ${f}: install the ovmf package (apt-get install ovmf)`);
    }
    // Debian's test pair, its key decrypted as resin up --secure-boot does.
    const pair = await debianTestKey(work);
    [key, cert] = [pair.key, pair.cert];
  });

  afterAll(() => {
    killLeftovers(work);
    process.stderr.write(`secure-boot timings:\n  ${timings.join("\n  ")}\n`);
    rmSync(work, { recursive: true, force: true });
  });

  it("resin build --sign with a key that is missing or not the certificate's: one line naming the file, exit 1, nothing written", async () => {
    const dir = project("bad-key");
    const stranger = join(work, "stranger");
    await execa("openssl", ["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30", "-subj", "/CN=stranger/", "-keyout", `${stranger}.key`, "-out", `${stranger}.pem`]);
    const cases: [string, RegExp][] = [
      [`${join(work, "missing.key")},${cert}`, new RegExp(`^resin: cannot read the signing key ${join(work, "missing.key")}: ENOENT\n  give an existing`)],
      [`${stranger}.key,${cert}`, new RegExp(`^resin: the signing key ${stranger}.key does not belong to the certificate ${cert}\n  give the key`)],
    ];
    for (const [sign, error] of cases) {
      const r = await resinAsync(["build", "consul-server", "--channel", "debian", "--sign", sign], env, 60_000, dir);
      expect(r.status, sign).toBe(1);
      expect(r.stderr).toMatch(error);
      expect(r.stderr.split("\n").filter((l) => l.startsWith("resin:"))).toHaveLength(1);
    }
    // Checked before anything: no lock file, no image directory.
    expect(readdirSync(dir)).toEqual(["machines"]);
  });

  it("resin build --sign twice from scratch gives the same signed disks, and records the certificate", async () => {
    const [a, b] = [project("build-a"), project("build-b")];
    report(`resin build --sign (from scratch, cached packages): ${(await signedBuild(a)).toFixed(1)}s`);
    report(`resin build --sign again, another project: ${(await signedBuild(b)).toFixed(1)}s`);
    signedDir = join(a, "out", "images", "debian", "consul-server");
    signed = (await readManifest(signedDir))!;
    const other = (await readManifest(join(b, "out", "images", "debian", "consul-server")))!;
    for (const f of ["raw", "qcow2", "iso"] as const) expect(other.disk[f].sha256, f).toBe(signed.disk[f].sha256);
    expect(signed.disk.signature!.certSha256).toBe((await execa("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"])).stdout.split("=")[1]!.replaceAll(":", "").toLowerCase());
    expect(signed.disk.signature!.signed.map((s) => s.file)).toEqual(["disk.raw", "disk.iso"]);
    // Signing changes the disks, not the image: the digest is what Resin's VMs boot.
    const unsigned = (await readManifest(unsignedDir))!;
    expect(signed.digest).toBe(unsigned.digest);
    expect(signed.disk.qcow2.sha256).not.toBe(unsigned.disk.qcow2.sha256);
    expect(unsigned.disk.signature).toBeUndefined();
    const verified = await resinAsync(["inspect", "--verify", signedDir], env);
    expect(verified.status, verified.stderr).toBe(0);
    expect(verified.stdout).toContain(`Secure Boot signature of the unified kernel image in disk.raw, disk.iso, for the certificate ${signed.disk.signature!.certSha256}`);
  });

  it("resin up --secure-boot: a node boots the signed disk.qcow2 under enforcing firmware to a ready Consul", async () => {
    expect(signed, "the signed build above").toBeDefined();
    const started = Date.now();
    const up = await resinAsync(["up", "--name", "sb", "--secure-boot", "--role", "consul-server", "--nodes", "1", "--channel", "debian", "--timeout", "400"], env, 15 * 60_000, join(work, "build-a"));
    try {
      expect(up.status, up.stderr).toBe(0);
      report(`resin up --secure-boot, 1 node, to ready: ${((Date.now() - started) / 1000).toFixed(1)}s (${/quorum in [\d.]+s/.exec(up.stderr)?.[0] ?? "?"})`);
      const state = JSON.parse(readFileSync(join(stateHome, "clusters", "sb", "cluster.json"), "utf8"));
      expect(state.secureBoot).toEqual({ certSha256: signed.disk.signature!.certSha256 });
      expect(resinStatus(stateHome, "sb").healthy).toBe(true);
      const console = readFileSync(join(stateHome, "clusters", "sb", "nodes", "sb-1", "console.log"), "latin1");
      // The firmware started the disk's entry (the UKI), whose command line carries the root hash.
      expect(console).toMatch(/BdsDxe: starting Boot\d+ "UEFI Misc Device"/);
      expect(console).toContain(`resin: root filesystem verified by dm-verity (root hash ${signed.verity!.rootHash})`);
      expect(console).toMatch(/resin: root filesystem \/dev\/vd[a-z]2 \(PARTLABEL=resin-root\)/);
      const qemuLine = readFileSync(`/proc/${readFileSync(join(stateHome, "clusters", "sb", "nodes", "sb-1", "qemu.pid"), "utf8").trim()}/cmdline`, "latin1").split("\0");
      expect(qemuLine).toContain(`if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_SECURE_BOOT.code}`);
      expect(qemuLine).not.toContain("-kernel");
    } finally {
      const down = await resinAsync(["down", "--name", "sb"], env);
      expect(down.status, down.stderr).toBe(0);
    }
    expect(processesUnder(stateHome)).toEqual([]);
  });

  it("the same disk with one byte of the kernel changed inside the UKI is refused by the firmware (Access Denied), and inspect --verify names the signature", async () => {
    expect(signed, "the signed build above").toBeDefined();
    const uki = signed.disk.signature!.signed.find((s) => s.file === "disk.raw")!;
    const raw = join(work, "changed.raw");
    copyFileSync(join(signedDir, "disk.raw"), raw);
    const fd = openSync(raw, "r+");
    const head = Buffer.alloc(4096);
    readSync(fd, head, 0, head.length, uki.offset);
    const linux = peSections(head).find((s) => s.name === ".linux")!;
    const at = uki.offset + linux.rawOffset + Math.floor(linux.virtualSize / 2);
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x01;
    writeSync(fd, byte, 0, 1, at);
    closeSync(fd);
    const qcow2 = join(work, "changed.qcow2");
    await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2]);
    const { console, seconds } = await firmwareRefuses("changed", qcow2);
    report(`changed kernel byte: firmware refused after ${seconds.toFixed(1)}s`);
    expectRefusedForSignature(console);

    // resin inspect --verify says which part differs: the disk's hash and its UKI's signature.
    const copy = join(work, "changed-image");
    cpSync(signedDir, copy, { recursive: true });
    copyFileSync(raw, join(copy, "disk.raw"));
    const verify = await resinAsync(["inspect", "--verify", copy], env);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toMatch(/disk\.raw \(its unified kernel image at byte \d+\): Secure Boot signature is not valid \(sbverify: .*Image fails hash check/);
    expect(verify.stderr).not.toMatch(/disk\.iso.*Secure Boot signature/);
    expect(processesUnder(work)).toEqual([]);
  });

  it("a cluster node whose image disk was changed that way is ended and shown crashed, naming the firmware's refusal", async () => {
    expect(existsSync(join(work, "changed.qcow2")), "the changed disk above").toBe(true);
    // The cluster's own copy of the image (as someone with write access to the host's state directory would change it).
    const installed = join(stateHome, "clusters", "sb", "images", signed.digest.replace(/^sha256:/, ""), "disk.qcow2");
    expect(existsSync(installed), installed).toBe(true);
    copyFileSync(join(work, "changed.qcow2"), installed);
    const start = await resinAsync(["start", "sb-1", "--name", "sb"], env);
    try {
      // QEMU starts; the firmware then refuses the UKI, and status sees it.
      expect(start.status, start.stderr).toBe(0);
      const deadline = Date.now() + 120_000;
      let vm = resinStatus(stateHome, "sb").nodes[0]!.vm;
      while (vm.state === "running" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1000));
        vm = resinStatus(stateHome, "sb").nodes[0]!.vm;
      }
      expect(vm.state).toBe("crashed");
      expect(vm.reason).toMatch(/^the firmware refused the disk's unified kernel image under Secure Boot \(Access Denied/);
    } finally {
      await resinAsync(["down", "--name", "sb"], env);
    }
    expect(processesUnder(stateHome)).toEqual([]);
  });

  it("the suite's unsigned disk.qcow2 is refused by the firmware too (Access Denied)", async () => {
    const { console, seconds } = await firmwareRefuses("unsigned", join(unsignedDir, "disk.qcow2"));
    report(`unsigned disk: firmware refused after ${seconds.toFixed(1)}s`);
    expectRefusedForSignature(console);
    expect(processesUnder(work)).toEqual([]);
  });

  it("resin upgrade of a --secure-boot cluster refuses an unsigned image set with nothing installed, and a build it signs with the enrolled key boots under Secure Boot", async () => {
    const dir = project("upgrade");
    const up = await resinAsync(["up", "--name", "sbu", "--secure-boot", "--role", "consul-server", "--nodes", "1", "--channel", "debian", "--timeout", "400"], env, 15 * 60_000, dir);
    try {
      expect(up.status, up.stderr).toBe(0);
      const stateFile = join(stateHome, "clusters", "sbu", "cluster.json");
      const images = join(stateHome, "clusters", "sbu", "images");
      const before = { state: readFileSync(stateFile, "utf8"), images: readdirSync(images).sort() };
      const trusted = JSON.parse(before.state).secureBoot.certSha256 as string;

      // The suite's unsigned image set (same digest: signing changes only the disks): refused before anything is copied.
      const refused = await resinAsync(["upgrade", "--name", "sbu", "--image-set", join(repoRoot, "out", "images", "debian")], env, 5 * 60_000, dir);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain(`resin: image ${unsignedDir} is not signed; cluster 'sbu' boots under Secure Boot and its firmware trusts only ${trusted}`);
      expect(refused.stderr).toContain("nothing was installed");
      expect(readFileSync(stateFile, "utf8")).toBe(before.state);
      expect(readdirSync(images).sort()).toEqual(before.images);

      // A changed role: resin upgrade builds it, signs it with the key the firmware has enrolled, and the node boots it.
      overrideStock(dir, "machines/consul-server.yml");
      const role = join(dir, "machines", "consul-server.yml");
      writeFileSync(role, readFileSync(role, "utf8").replace("    ui: true\n", "    ui: true\n    log_level: DEBUG\n"));
      const started = Date.now();
      const upgrade = await resinAsync(["upgrade", "--name", "sbu"], env, 15 * 60_000, dir);
      expect(upgrade.status, upgrade.stderr).toBe(0);
      expect(upgrade.stderr).toContain("upgrade of sbu complete: 1 node(s) replaced");
      report(`resin upgrade of a Secure Boot node (signed build, replacement, gate): ${((Date.now() - started) / 1000).toFixed(1)}s`);
      const after = JSON.parse(readFileSync(stateFile, "utf8"));
      expect(after.nodes[0].image).not.toBe(JSON.parse(before.state).nodes[0].image);
      const installed = (await readManifest(join(images, after.nodes[0].image.replace(/^sha256:/, ""))))!;
      expect(installed.disk.signature?.certSha256).toBe(trusted);
      expect(resinStatus(stateHome, "sbu").healthy).toBe(true);
      const qemuLine = readFileSync(`/proc/${readFileSync(join(stateHome, "clusters", "sbu", "nodes", "sbu-1", "qemu.pid"), "utf8").trim()}/cmdline`, "latin1").split("\0");
      expect(qemuLine).toContain(`if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_SECURE_BOOT.code}`);
      const console = readFileSync(join(stateHome, "clusters", "sbu", "nodes", "sbu-1", "console.log"), "latin1");
      expect(console).toContain(`resin: root filesystem verified by dm-verity (root hash ${installed.verity!.rootHash})`);
    } finally {
      const down = await resinAsync(["down", "--name", "sbu"], env);
      expect(down.status, down.stderr).toBe(0);
    }
    expect(processesUnder(stateHome)).toEqual([]);
  });
});
