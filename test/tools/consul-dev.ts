// A real Consul 1.8.7 (Debian bullseye's, unpacked by the unit suite's global setup) as
// a single-node dev-mode server on its own loopback address and free ports, serving its
// API over HTTPS only, with verified client certificates and ACLs on (default deny,
// the given management token): what the host's calls meet on a Resin node.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CertifiedKey } from "../../cli/bootstrap/pki.js";

export interface DevConsul {
  /** The loopback address it binds and serves on (127.x.y.z, picked per agent). */
  address: string;
  /** Its HTTPS API port; raft's server port is `serverPort`. */
  httpsPort: number;
  serverPort: number;
  /** Everything the agent printed so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, address, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A loopback address no other agent of this process uses, so ports clash less with other suites. */
export function loopbackAddress(): string {
  const n = 1 + Math.floor(Math.random() * 250);
  return `127.${80 + (process.pid % 40)}.${n}.${1 + Math.floor(Math.random() * 250)}`;
}

/** Start the agent; `served` is its certificate (issued for `address`), signed by `caCert`. */
export async function startDevConsul(bin: string, opts: { address: string; caCert: string; served: CertifiedKey; managementToken: string }): Promise<DevConsul> {
  const dir = mkdtempSync(join(tmpdir(), "resin-consul-dev-"));
  const a = opts.address;
  const [https, serfLan, serfWan, server] = [await freePort(a), await freePort(a), await freePort(a), await freePort(a)];
  writeFileSync(join(dir, "ca.pem"), opts.caCert);
  writeFileSync(join(dir, "cert.pem"), opts.served.cert);
  writeFileSync(join(dir, "key.pem"), opts.served.key, { mode: 0o600 });
  writeFileSync(
    join(dir, "agent.hcl"),
    [
      `bind_addr = "${a}"`,
      `client_addr = "${a}"`,
      `advertise_addr = "${a}"`,
      `ports { http = -1, https = ${https}, dns = -1, grpc = -1, serf_lan = ${serfLan}, serf_wan = ${serfWan}, server = ${server} }`,
      `ca_file = "${join(dir, "ca.pem")}"`,
      `cert_file = "${join(dir, "cert.pem")}"`,
      `key_file = "${join(dir, "key.pem")}"`,
      `verify_incoming = true`,
      `acl { enabled = true, default_policy = "deny", tokens { master = "${opts.managementToken}" } }`,
      "",
    ].join("\n"),
  );
  const output: string[] = [];
  const proc: ChildProcess = spawn(bin, ["agent", "-dev", "-node=consul-1", `-config-file=${join(dir, "agent.hcl")}`], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (b: Buffer) => output.push(b.toString()));
  proc.stderr!.on("data", (b: Buffer) => output.push(b.toString()));
  return {
    address: a,
    httpsPort: https,
    serverPort: server,
    log: () => output.join(""),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
