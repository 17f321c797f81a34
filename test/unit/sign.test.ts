// The signed boot chain's pure parts and its real tools: --sign parsing, the key pair
// check, the certificate fingerprint (against openssl's), sbsign's reproducibility
// under a frozen clock (and that it is not reproducible without one), sbverify's
// verdicts, the manifest's signature schema and a Secure Boot node's QEMU arguments.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildUki } from "../../cli/image/uki.js";
import { layout } from "../../cli/image/layout.js";
import { offsetIn } from "../../cli/image/disk.js";
import { parseManifest, type ImageManifest } from "../../cli/image/manifest.js";
import { secureBootRefusal } from "../../cli/cluster/images.js";
import type { ClusterState } from "../../cli/state/state.js";
import { certFingerprint, certPem, debianTestKey, loadSigningKey, parseSignOption, sbsignCommand, SIGNING_TIME, signUki, verifySignature, type SigningKey } from "../../cli/image/sign.js";
import { OVMF_SECURE_BOOT, qemuArgs, uefiArgs, type VmSpec } from "../../cli/provider/qemu/vm.js";
import { ResinError } from "../../cli/util/errors.js";
import { firmwareRefusal } from "../../cli/provider/qemu/provider.js";
import { tinyStub } from "./tiny-pe.js";

const work = mkdtempSync(join(tmpdir(), "resin-sign-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const openssl = (...args: string[]) => execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
/** A fresh self-signed RSA pair, as a user makes a db key. */
function keyPair(name: string, type = "rsa:2048"): { key: string; cert: string } {
  const [key, cert] = [join(work, `${name}.key`), join(work, `${name}.pem`)];
  openssl("req", "-new", "-x509", "-newkey", type, "-nodes", "-sha256", "-days", "30", "-subj", `/CN=${name}/`, "-keyout", key, "-out", cert);
  return { key, cert };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uki = () => buildUki({ stub: tinyStub(), kernel: Buffer.alloc(5000, 0x4b), initrd: Buffer.alloc(3001, 0x49), cmdline: "console=ttyS0 resin.verity.roothash=ab", osRelease: "ID=resin\n" });

let db: SigningKey;
beforeAll(() => {
  db = loadSigningKey(keyPair("db"));
});

describe("--sign KEY,CERT", () => {
  it("is two paths, resolved against the working directory", () => {
    expect(parseSignOption("k.pem,c.pem", "/p")).toEqual({ key: "/p/k.pem", cert: "/p/c.pem" });
    expect(parseSignOption("/a/k,/b/c", "/p")).toEqual({ key: "/a/k", cert: "/b/c" });
    for (const bad of ["k.pem", "k.pem,", ",c.pem", "a,b,c", ""]) expect(() => parseSignOption(bad), bad).toThrow(/--sign .* is not KEY,CERT/);
  });

  it("records the certificate's SHA-256 fingerprint as openssl computes it (PEM or base64 DER alike)", () => {
    const fromOpenssl = openssl("x509", "-in", db.cert, "-noout", "-fingerprint", "-sha256").trim().split("=")[1]!.replaceAll(":", "").toLowerCase();
    expect(db.certSha256).toBe(fromOpenssl);
    expect(certFingerprint(readFileSync(db.cert, "utf8"))).toBe(fromOpenssl);
    expect(certFingerprint(db.certBase64)).toBe(fromOpenssl);
    expect(certFingerprint(certPem(db.certBase64))).toBe(fromOpenssl);
  });

  it("refuses a missing file, a key of another certificate, an encrypted key, a non-certificate and a non-RSA key, naming the file", () => {
    const other = keyPair("other");
    const ec = join(work, "ec.key");
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec);
    const ecCert = join(work, "ec.pem");
    openssl("req", "-new", "-x509", "-key", ec, "-sha256", "-days", "30", "-subj", "/CN=ec/", "-out", ecCert);
    const encrypted = join(work, "encrypted.key");
    openssl("pkey", "-in", db.key, "-aes256", "-passout", "pass:secret", "-out", encrypted);
    const cases: [{ key: string; cert: string }, RegExp][] = [
      [{ key: join(work, "nope.key"), cert: db.cert }, new RegExp(`^cannot read the signing key ${join(work, "nope.key")}: ENOENT$`)],
      [{ key: db.key, cert: join(work, "nope.pem") }, new RegExp(`^cannot read the certificate ${join(work, "nope.pem")}: ENOENT$`)],
      [{ key: other.key, cert: db.cert }, new RegExp(`^the signing key ${other.key} does not belong to the certificate ${db.cert}$`)],
      [{ key: encrypted, cert: db.cert }, new RegExp(`^the signing key ${encrypted} is encrypted$`)],
      [{ key: db.key, cert: db.key }, new RegExp(`^the certificate ${db.key} is not an X.509 certificate in PEM$`)],
      [{ key: ec, cert: ecCert }, new RegExp(`^the certificate ${ecCert} has a ec key; UEFI Secure Boot verifies RSA signatures only$`)],
    ];
    for (const [pair, message] of cases) {
      const error = (() => {
        try {
          loadSigningKey(pair);
        } catch (e) {
          return e;
        }
      })();
      expect(error, JSON.stringify(pair)).toBeInstanceOf(ResinError);
      expect((error as ResinError).message).toMatch(message);
      expect((error as ResinError).hint).toBeTruthy();
    }
  });

  it("Debian's test pair decrypts with its published passphrase and is the certificate the snakeoil variable store enrolls", async () => {
    const pair = await debianTestKey(work);
    expect(pair.cert).toBe(OVMF_SECURE_BOOT.cert);
    expect(readFileSync(pair.key, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // The variable store holds the certificate's DER (in its PK, KEK and db EFI_SIGNATURE_LISTs).
    const der = Buffer.from(pair.certBase64, "base64");
    expect(readFileSync(OVMF_SECURE_BOOT.vars).indexOf(der)).toBeGreaterThan(0);
  });
});

describe("signing a unified kernel image", () => {
  it("runs sbsign under faketime with the clock frozen at a fixed UTC time", () => {
    const { command, args, env } = sbsignCommand({ key: "/k", cert: "/c" }, "/in.efi", "/out.efi");
    expect([command, ...args]).toEqual(["faketime", "-f", SIGNING_TIME, "sbsign", "--key", "/k", "--cert", "/c", "--output", "/out.efi", "/in.efi"]);
    expect(env).toEqual({ TZ: "UTC" });
  });

  it("gives the same bytes a second apart, which plain sbsign does not (its signingTime attribute)", async () => {
    const dir = (n: string) => mkdtempSync(join(work, n));
    const first = await signUki(await uki(), db, dir("a-"), "uki");
    await sleep(1100);
    const second = await signUki(await uki(), db, dir("b-"), "uki");
    expect(readFileSync(first.path).equals(readFileSync(second.path))).toBe(true);
    // Without the frozen clock: the same key and image, a second apart, differ.
    const unsigned = join(work, "plain.efi");
    writeFileSync(unsigned, readFileSync(first.path).subarray(0, (await uki()).size));
    const plain = (out: string) => execFileSync("sbsign", ["--key", db.key, "--cert", db.cert, "--output", out, unsigned], { stdio: "ignore" });
    plain(join(work, "plain-1.efi"));
    await sleep(1100);
    plain(join(work, "plain-2.efi"));
    expect(readFileSync(join(work, "plain-1.efi")).equals(readFileSync(join(work, "plain-2.efi")))).toBe(false);
  });

  it("sbverify accepts it for its certificate, and refuses another certificate and a changed byte of .linux", async () => {
    const signed = await signUki(await uki(), db, mkdtempSync(join(work, "v-")), "uki");
    expect((await verifySignature(signed.path, readFileSync(db.cert, "utf8"))).ok).toBe(true);
    const other = keyPair("stranger");
    expect((await verifySignature(signed.path, readFileSync(other.cert, "utf8"))).ok).toBe(false);
    const bytes = readFileSync(signed.path);
    const at = bytes.indexOf(Buffer.alloc(5000, 0x4b)) + 2500;
    bytes[at] = bytes[at]! ^ 1;
    const changed = join(work, "changed.efi");
    writeFileSync(changed, bytes);
    const verdict = await verifySignature(changed, readFileSync(db.cert, "utf8"));
    expect(verdict.ok).toBe(false);
    expect(verdict.said).toMatch(/Image fails hash check/);
    expect(verdict.said).not.toMatch(/gap in section table/);
  });

  it("finds where a piece lies in nested layouts (a signed UKI in its FAT volume in the disk)", () => {
    const target = Buffer.from("uki");
    const fat = layout(100, [{ offset: 0, data: Buffer.alloc(10) }, { offset: 40, data: target }]);
    const disk = layout(1000, [{ offset: 0, data: Buffer.alloc(5) }, { offset: 512, data: fat }]);
    expect(offsetIn(disk, target)).toBe(552);
    expect(offsetIn(disk, Buffer.from("uki"))).toBeUndefined();
  });
});

describe("the manifest's signature", () => {
  const file = (name: string) => ({ file: name, sha256: "a".repeat(64), size: 1 });
  const manifest = (signature: unknown) =>
    JSON.stringify({
      role: "consul-server", channel: "debian", inputDigest: "x", digest: `sha256:${"b".repeat(64)}`,
      kernel: { ...file("vmlinuz"), version: "6.1", modules: [] }, initrd: file("initrd.img"), rootfs: file("rootfs.squashfs"),
      disk: { raw: file("disk.raw"), qcow2: file("disk.qcow2"), iso: file("disk.iso"), ...(signature ? { signature } : {}) },
      services: [], packages: [], releases: [], files: [], initramfsFiles: [],
    });
  const good = () => ({ certSha256: db.certSha256, cert: db.certBase64, signed: [{ file: "disk.raw", offset: 1048576, size: 4096, sha256: "c".repeat(64) }] });

  it("is accepted with the certificate whose fingerprint it records, and is optional", () => {
    expect(parseManifest(manifest(good()), "m.json").disk.signature).toEqual(good());
    expect(parseManifest(manifest(undefined), "m.json").disk.signature).toBeUndefined();
  });

  it("is refused with another fingerprint, a certificate that is not one, another file or a stray field", () => {
    const cases: [string, (s: Record<string, unknown>) => void, RegExp][] = [
      ["another fingerprint", (s) => (s.certSha256 = "d".repeat(64)), /disk\.signature\.certSha256: certSha256 must be the fingerprint/],
      ["not base64", (s) => (s.cert = "-----BEGIN CERTIFICATE-----"), /disk\.signature\.cert: must be a certificate's DER in base64/],
      ["base64 of no certificate", (s) => (s.cert = "AAAA"), /disk\.signature\.certSha256/],
      ["another file", (s) => ((s.signed as { file: string }[])[0]!.file = "../disk.raw"), /disk\.signature\.signed\.0\.file/],
      ["no signed UKI", (s) => (s.signed = []), /disk\.signature\.signed/],
      ["a stray field", (s) => (s.extra = 1), /disk\.signature/],
    ];
    for (const [what, change, error] of cases) {
      const s = good() as Record<string, unknown>;
      change(s);
      expect(() => parseManifest(manifest(s), "m.json"), what).toThrow(error);
    }
  });
});

describe("an upgrade of a cluster that boots under Secure Boot", () => {
  const file = (name: string) => ({ file: name, sha256: "a".repeat(64), size: 1 });
  const image = (signature?: { certSha256: string }) =>
    ({ role: "consul-server", channel: "debian", digest: `sha256:${"b".repeat(64)}`, disk: { raw: file("disk.raw"), qcow2: file("disk.qcow2"), iso: file("disk.iso"), ...(signature ? { signature } : {}) } }) as unknown as ImageManifest;
  const cluster = (certSha256?: string) => ({ name: "sb", ...(certSha256 ? { secureBoot: { certSha256 } } : {}) }) as unknown as ClusterState;

  it("takes only images signed for the certificate its firmware trusts, and says which it got, with nothing installed", () => {
    expect(secureBootRefusal(cluster(db.certSha256), image({ certSha256: db.certSha256 }), "/set/consul-server")).toBeUndefined();
    const unsigned = secureBootRefusal(cluster(db.certSha256), image(), "/set/consul-server");
    expect(unsigned).toBeInstanceOf(ResinError);
    expect(unsigned!.message).toBe(`image /set/consul-server is not signed; cluster 'sb' boots under Secure Boot and its firmware trusts only ${db.certSha256}`);
    expect(unsigned!.hint).toContain("resin build --sign KEY,CERT");
    expect(unsigned!.hint).toContain("nothing was installed");
    const other = secureBootRefusal(cluster(db.certSha256), image({ certSha256: "e".repeat(64) }), "/set/consul-server");
    expect(other!.message).toBe(`image /set/consul-server is signed for the certificate ${"e".repeat(64)}; cluster 'sb' boots under Secure Boot and its firmware trusts only ${db.certSha256}`);
  });

  it("a cluster without Secure Boot takes signed and unsigned images alike", () => {
    expect(secureBootRefusal(cluster(), image(), "/set/r")).toBeUndefined();
    expect(secureBootRefusal(cluster(), image({ certSha256: db.certSha256 }), "/set/r")).toBeUndefined();
  });
});

describe("a Secure Boot node's QEMU arguments", () => {
  const spec: VmSpec = {
    name: "sb-1", dir: "/state/sb-1", kernel: "/i/vmlinuz", initrd: "/i/initrd.img", rootDisk: "/i/rootfs.squashfs", hashDisk: "/i/rootfs.verity",
    append: "console=ttyS0", memoryMib: 1024, cpus: 1, accel: "tcg", switchSocket: "/state/switch.ctl",
    clusterMac: "52:54:2a:97:01:01", hostMac: "52:54:2a:97:02:01", forwards: [{ hostPort: 41001, guestPort: 8501 }],
    configDrive: "/state/sb-1/cidata.iso", persistDisk: "/state/sb-1/persist.qcow2",
    uefi: { code: OVMF_SECURE_BOOT.code, vars: "/state/sb-1/OVMF_VARS.fd", disk: "/i/disk.qcow2", secureBoot: true },
  };

  it("boots the firmware with SMM and SMM-only variables, the node's own variable store and the disk; no kernel, no squashfs disk", () => {
    const args = qemuArgs(spec);
    expect(args[args.indexOf("-machine") + 1]).toBe("q35,smm=on");
    expect(args).toEqual(expect.arrayContaining(uefiArgs(spec.uefi!)));
    expect(uefiArgs(spec.uefi!)).toEqual([
      "-global", "driver=cfi.pflash01,property=secure,value=on",
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_SECURE_BOOT.code}`,
      "-drive", "if=pflash,format=raw,unit=1,file=/state/sb-1/OVMF_VARS.fd",
      "-drive", "if=none,id=disk,file=/i/disk.qcow2,format=qcow2,readonly=on",
      "-device", "virtio-blk-pci,drive=disk,bootindex=0",
    ]);
    for (const gone of ["-kernel", "-initrd", "-append"]) expect(args).not.toContain(gone);
    expect(args.join(" ")).not.toMatch(/id=root|id=verity/);
    // Still a full cluster member: config drive, persist disk, both NICs and the forward.
    expect(args.join(" ")).toContain("serial=cidata");
    expect(args.join(" ")).toContain("serial=persist");
    expect(args.join(" ")).toContain("hostfwd=tcp:127.0.0.1:41001-:8501");
  });

  it("a firmware console that refused the disk's entry is a crash reason; one that started it is not", () => {
    const refused = [
      'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)',
      'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Access Denied',
      "BdsDxe: No bootable option or device was found.",
    ].join("\n");
    expect(firmwareRefusal(refused)).toBe("the firmware refused the disk's unified kernel image under Secure Boot (Access Denied: not signed for an enrolled certificate, or changed since it was signed)");
    expect(firmwareRefusal('BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)\nBdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)\nresin: root filesystem verified')).toBeUndefined();
  });

  it("plain UEFI (no Secure Boot) has neither SMM nor the secure flash", () => {
    const args = qemuArgs({ ...spec, uefi: { ...spec.uefi!, secureBoot: false } });
    expect(args[args.indexOf("-machine") + 1]).toBe("q35");
    expect(args).not.toContain("driver=cfi.pflash01,property=secure,value=on");
  });
});
