// Text from outside reaches the terminal inert (#21, finding 6): a guest's status
// endpoint, Consul's answers and an image manifest go through fromOutside (parsed by a
// schema, every string made printable), and what resin prints from them holds no escape
// sequence or control character. The status endpoint here is a loopback HTTP double of
// the node's busybox CGI, and Consul a loopback HTTPS double (test/doubles/https.ts):
// neither is the real thing, both speak the same JSON over real HTTP.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { guestStatus } from "../../cli/cluster/guest.js";
import { consulView, type ConsulAccess } from "../../cli/cluster/consul.js";
import { createCa, issueCertificate, cliCertSpec, consulCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { formatStatus, formatTimeline, type ClusterStatus } from "../../cli/commands/status.js";
import { formatManifest } from "../../cli/commands/inspect.js";
import { imageDigest, readManifest } from "../../cli/image/manifest.js";
import { fromOutside } from "../../cli/util/text.js";
import { ResinError } from "../../cli/util/errors.js";
import { sha256 } from "../../cli/util/hash.js";
import { serveHttps } from "../doubles/https.js";

/** What a terminal would act on: ESC, BEL, CR and every other control character but newline (C0, DEL, C1). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;
const EVIL = "\u001b]0;owned\u0007\u001b[2J\u001b[31m\r";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** The node's status endpoint, as a loopback HTTP double answering `body` as its JSON. */
async function statusDouble(body: string): Promise<number> {
  const server: Server = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(body));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

function clusterWith(node: Partial<ClusterStatus["nodes"][number]>): ClusterStatus {
  return {
    name: "c",
    channel: "debian",
    healthy: false,
    leader: null,
    failureTolerance: null,
    vault: null,
    nodes: [
      {
        name: "c-1", role: "consul-server", address: "10.0.0.11", image: "sha256:" + "a".repeat(64),
        vm: { state: "running", pid: 1, reason: null }, ports: {}, boot: null, services: null, timeline: null,
        launchToKernelSeconds: null, consul: null, vault: null, registered: null, ...node,
      },
    ],
  };
}

describe("fromOutside, the one way structured text from outside enters", () => {
  const schema = z.object({ name: z.string(), state: z.enum(["up", "down"]), pid: z.number().int().nullable(), ports: z.record(z.string(), z.number()) });

  it("makes every string and key one printable line, and keeps numbers", () => {
    const value = fromOutside(schema, { name: `consul${EVIL}\nforged row`, state: "up", pid: 7, ports: { [`https${EVIL}`]: 8501 } }, "the answer");
    expect(value).toEqual({ name: "consul forged row", state: "up", pid: 7, ports: { https: 8501 } });
  });

  it.each([
    ["a pid that is text", { name: "x", state: "up", pid: `1${EVIL}`, ports: {} }, "pid"],
    ["a state not in its list", { name: "x", state: `up${EVIL}`, ports: {}, pid: null }, "state"],
    ["a fractional pid", { name: "x", state: "up", pid: 1.5, ports: {} }, "pid"],
  ])("refuses %s, in a printable one-line message naming the field", (_what, data, field) => {
    let error: unknown;
    try {
      fromOutside(schema, data, "the answer");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ResinError);
    const message = (error as ResinError).message;
    expect(message).toMatch(new RegExp(`^the answer is not valid: ${field}: `));
    expect(message).not.toMatch(CONTROL);
    expect(message).not.toContain("\n");
  });
});

describe("a node's status endpoint", () => {
  it("prints a hostile guest's strings inert in resin status and its timeline", async () => {
    const port = await statusDouble(
      JSON.stringify({
        boot: `ready${EVIL}`,
        uptimeSeconds: 12.5,
        timeline: [{ step: `kernel${EVIL}`, uptimeSeconds: 1.5 }],
        services: [{ name: `consul${EVIL}`, state: "up", pid: 545, uptimeSeconds: 12, restarts: 1 }],
      }),
    );
    const guest = await guestStatus(port);
    expect(guest).toEqual({
      boot: "ready",
      uptimeSeconds: 12.5,
      timeline: [{ step: "kernel", uptimeSeconds: 1.5 }],
      services: [{ name: "consul", state: "up", pid: 545, uptimeSeconds: 12, restarts: 1 }],
    });
    if ("error" in guest) throw new Error(guest.error);
    const status = clusterWith({ boot: guest.boot, services: guest.services, timeline: guest.timeline });
    for (const text of [formatStatus(status), formatTimeline(status)]) expect(text).not.toMatch(CONTROL);
  });

  it.each([
    ["a pid that is text", { name: "consul", state: "up", pid: `545${EVIL}`, uptimeSeconds: 12, restarts: 0 }],
    ["a negative uptime", { name: "consul", state: "up", pid: 545, uptimeSeconds: -3, restarts: 0 }],
    ["restarts that are not a count", { name: "consul", state: "up", pid: 545, uptimeSeconds: 1, restarts: `2${EVIL}` }],
    ["a state with an escape sequence", { name: "consul", state: `up${EVIL}`, pid: 545, uptimeSeconds: 1, restarts: 0 }],
  ])("refuses %s: an error, itself printable, instead of the value", async (_what, service) => {
    const port = await statusDouble(JSON.stringify({ boot: "ready", uptimeSeconds: 1, timeline: [], services: [service] }));
    const guest = await guestStatus(port);
    expect(guest).toHaveProperty("error");
    const error = (guest as { error: string }).error;
    expect(error).toMatch(/^the node's status is not valid: services\.0\./);
    expect(error).not.toMatch(CONTROL);
  });

  it("says a body that is not JSON is not, without echoing control characters", async () => {
    const port = await statusDouble(`${EVIL}not json`);
    const guest = await guestStatus(port);
    expect((guest as { error: string }).error).toMatch(/^the node's status is not valid JSON: /);
    expect((guest as { error: string }).error).not.toMatch(CONTROL);
  });

  it("reads an image from before the timeline (no uptime, no timeline)", async () => {
    const port = await statusDouble(JSON.stringify({ boot: "ready", services: [] }));
    expect(await guestStatus(port)).toEqual({ boot: "ready", uptimeSeconds: null, timeline: [], services: [] });
  });
});

describe("Consul's leader and peers", () => {
  let ca: CertifiedKey;
  let served: CertifiedKey;
  let access: ConsulAccess;
  beforeAll(async () => {
    ca = await createCa("outside-text");
    served = await issueCertificate(ca, consulCertSpec({ name: "consul-1", address: "127.0.0.1" }, "dc1", "server"));
    const cli = await issueCertificate(ca, cliCertSpec("outside-text"));
    access = { ca: ca.cert, cert: cli.cert, key: cli.key, token: "management-token" };
  });

  async function consulAnswering(leader: unknown, peers: unknown) {
    const double = await serveHttps({ ca: ca.cert, cert: served.cert, key: served.key, requireClientCert: true }, (r) =>
      // JSON text as Consul sends it (the double sends a string body as it is).
      r.path === "/v1/status/leader"
        ? { status: 200, body: JSON.stringify(leader), contentType: "application/json" }
        : r.path === "/v1/status/peers"
          ? { status: 200, body: JSON.stringify(peers), contentType: "application/json" }
          : { status: 404, body: "no" },
    );
    cleanup.push(() => double.close());
    return { port: Number(new URL(double.url).port), access };
  }

  it("prints a hostile leader and peers inert", async () => {
    const view = await consulView(await consulAnswering(`10.0.0.11:8300${EVIL}`, [`10.0.0.11:8300${EVIL}`, "10.0.0.12:8300"]));
    expect(view).toEqual({ leader: "10.0.0.11:8300", peers: ["10.0.0.11:8300", "10.0.0.12:8300"] });
    const text = formatStatus(clusterWith({ consul: { leader: view.leader!, peers: view.peers!, error: null } }));
    expect(text).toContain("leader 10.0.0.11, 2 peers");
    expect(text).not.toMatch(CONTROL);
  });

  it("refuses a leader that is not text, in a printable error", async () => {
    const view = await consulView(await consulAnswering({ evil: EVIL }, []));
    expect(view.error).toMatch(/^Consul's leader is not valid: /);
    expect(view.error).not.toMatch(CONTROL);
  });
});

describe("resin inspect", () => {
  it("prints a crafted manifest's strings inert", async () => {
    const dir = mkdtempSync(join(tmpdir(), "resin-outside-manifest-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(dir, { recursive: true });
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return { file: name, sha256: sha256(text), size: Buffer.byteLength(text) };
    };
    const [kernel, initrd, rootfs] = [file("vmlinuz", "k"), file("initrd.img", "i"), file("rootfs.squashfs", "r")];
    const manifest = {
      role: "consul-server",
      channel: "debian",
      inputDigest: "x",
      digest: imageDigest([kernel, initrd, rootfs]),
      kernel: { ...kernel, version: `6.1${EVIL}`, modules: [] },
      initrd,
      rootfs,
      disk: {
        raw: file("disk.raw", "raw"), qcow2: file("disk.qcow2", "q"), iso: { ...file("disk.iso", "iso"), volumeId: `RESIN${EVIL}` },
        cmdline: `console=ttyS0${EVIL}`, partitions: [{ name: `esp${EVIL}` }],
      },
      services: [{ name: "consul", version: `1.8.7${EVIL}`, ports: { https: 8501 } }],
      packages: [{ package: `consul${EVIL}`, version: `1.8.7${EVIL}`, suite: "bullseye", sha256: "a".repeat(64) }],
      releases: [{ product: "nomad", version: "1.6.5", file: "n.zip", sha256: "b".repeat(64), signer: `someone${EVIL}` }],
      files: [{ path: `/etc/motd${EVIL}`, type: "symlink", target: `/x${EVIL}`, from: `base${EVIL}`, mode: "0777" }],
      initramfsFiles: [],
    };
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
    const text = formatManifest(dir, (await readManifest(dir))!);
    expect(text).toContain("/etc/motd -> /x");
    expect(text).toContain("consul 1.8.7");
    expect(text).not.toMatch(CONTROL);
  });
});
