import { describe, it, expect, beforeAll, afterAll } from "vitest";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CA_VALIDITY_DAYS,
  LEAF_VALIDITY_DAYS,
  VAULT_TLS_SERVER_NAME,
  cliCertSpec,
  consulCertSpec,
  createCa,
  issueCertificate,
  nomadCertSpec,
  nomadConsulCertSpec,
  vaultCertSpec,
  PRODUCTS,
  type CertifiedKey,
  type LeafSpec,
} from "../../cli/bootstrap/pki.js";
import { planCluster } from "../../cli/bootstrap/plan.js";
import { generateSecrets } from "../../cli/bootstrap/secrets.js";

// The cluster PKI, read back two ways: parsed with @peculiar/x509, and checked by the
// real `openssl` (verify against the CA for the TLS purpose each certificate serves,
// and its printed extensions). What each agent needs is in cli/bootstrap/pki.ts.

const DAY = 24 * 60 * 60 * 1000;
const node = { name: "demo-2", address: "10.88.0.12" };
let dir: string;
let ca: CertifiedKey;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "resin-pki-"));
  ca = await createCa("demo");
  writeFileSync(join(dir, "ca.pem"), ca.cert);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args: string[]): { status: number; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.error) throw new Error(`openssl is needed for this test (apt-get install openssl): ${r.error.message}`);
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

let counter = 0;
function save(pem: string): string {
  const path = join(dir, `cert-${++counter}.pem`);
  writeFileSync(path, pem);
  return path;
}

/** `openssl x509 -ext …` output, reduced to "name: value" lines. */
function opensslExtensions(pem: string): Record<string, string> {
  const { status, out } = openssl(["x509", "-in", save(pem), "-noout", "-ext", "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName"]);
  expect(status, out).toBe(0);
  const result: Record<string, string> = {};
  let current = "";
  for (const line of out.split("\n")) {
    if (/^X509v3 /.test(line)) current = line.replace(/^X509v3 /, "").trim().replace(/:$/, "");
    else if (line.trim() && current) result[current] = [result[current], line.trim()].filter(Boolean).join(", ");
  }
  return result;
}

function verify(pem: string, purpose: "sslserver" | "sslclient"): { status: number; out: string } {
  return openssl(["verify", "-CAfile", join(dir, "ca.pem"), "-purpose", purpose, save(pem)]);
}

function sans(cert: x509.X509Certificate): { dns: string[]; ip: string[] } {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = ext?.names.toJSON() ?? [];
  return { dns: names.filter((n) => n.type === "dns").map((n) => n.value), ip: names.filter((n) => n.type === "ip").map((n) => n.value) };
}

describe("the cluster CA", () => {
  it("is a P-256 CA for ten years: CA:true (critical), keyCertSign + cRLSign only", async () => {
    const cert = new x509.X509Certificate(ca.cert);
    expect(cert.subject).toContain("Resin cluster demo CA");
    expect(cert.issuer).toBe(cert.subject);
    expect(await cert.verify({ signatureOnly: true })).toBe(true);
    const algorithm = cert.publicKey.algorithm as EcKeyAlgorithm;
    expect(algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.ca, bc.critical, bc.pathLength]).toEqual([true, true, 0]);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const days = (cert.notAfter.getTime() - Date.now()) / DAY;
    expect(days).toBeGreaterThan(CA_VALIDITY_DAYS - 1);
    expect(days).toBeLessThanOrEqual(CA_VALIDITY_DAYS);

    const ext = opensslExtensions(ca.cert);
    expect(ext["Basic Constraints: critical"]).toBe("CA:TRUE, pathlen:0");
    expect(ext["Key Usage: critical"]).toBe("Certificate Sign, CRL Sign");
    expect(openssl(["x509", "-in", save(ca.cert), "-noout", "-text"]).out).toContain("NIST CURVE: P-256");
  });

  it("has a PKCS#8 P-256 key that matches its certificate", () => {
    const key = createPrivateKey(ca.key);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const fromKey = createPublicKey(key).export({ type: "spki", format: "der" });
    const fromCert = new NodeX509(ca.cert).publicKey.export({ type: "spki", format: "der" });
    expect(fromKey.equals(fromCert)).toBe(true);
    expect(ca.key.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
  });

  it("is different for every cluster", async () => {
    const other = await createCa("demo");
    expect(other.key).not.toBe(ca.key);
    expect(new x509.X509Certificate(other.cert).serialNumber).not.toBe(new x509.X509Certificate(ca.cert).serialNumber);
  });
});

interface RoleCase {
  what: string;
  spec: LeafSpec;
  dns: string[];
  ip: string[];
  purposes: { sslserver: boolean; sslclient: boolean };
  eku: string;
}

const CASES: RoleCase[] = [
  {
    what: "a Consul server",
    spec: consulCertSpec(node, "dc1", "server"),
    dns: ["server.dc1.consul", "demo-2", "localhost"],
    ip: ["10.88.0.12", "127.0.0.1"],
    purposes: { sslserver: true, sslclient: true },
    eku: "TLS Web Server Authentication, TLS Web Client Authentication",
  },
  {
    what: "a Consul client agent",
    spec: consulCertSpec(node, "dc1", "client"),
    dns: ["client.dc1.consul", "demo-2", "localhost"],
    ip: ["10.88.0.12", "127.0.0.1"],
    purposes: { sslserver: true, sslclient: true },
    eku: "TLS Web Server Authentication, TLS Web Client Authentication",
  },
  {
    what: "a Nomad server",
    spec: nomadCertSpec(node, "server"),
    dns: ["server.global.nomad", "demo-2", "localhost"],
    ip: ["10.88.0.12", "127.0.0.1"],
    purposes: { sslserver: true, sslclient: true },
    eku: "TLS Web Server Authentication, TLS Web Client Authentication",
  },
  {
    what: "a Nomad client",
    spec: nomadCertSpec(node, "client"),
    dns: ["client.global.nomad", "demo-2", "localhost"],
    ip: ["10.88.0.12", "127.0.0.1"],
    purposes: { sslserver: true, sslclient: true },
    eku: "TLS Web Server Authentication, TLS Web Client Authentication",
  },
  {
    what: "a Vault listener",
    spec: vaultCertSpec(node),
    dns: ["demo-2", VAULT_TLS_SERVER_NAME, "localhost"],
    ip: ["10.88.0.12", "127.0.0.1"],
    // A client too: a joining node presents it to the leader's mutual-TLS API.
    purposes: { sslserver: true, sslclient: true },
    eku: "TLS Web Server Authentication, TLS Web Client Authentication",
  },
  {
    what: "Nomad's client certificate for its Consul agent",
    spec: nomadConsulCertSpec(node),
    dns: [],
    ip: [],
    // Presented to Consul's HTTPS API only: it can serve nothing.
    purposes: { sslserver: false, sslclient: true },
    eku: "TLS Web Client Authentication",
  },
  ...(["consul", "nomad", "vault"] as const).map((product) => ({
    what: `the host's CLI for ${product}`,
    spec: cliCertSpec("demo", product),
    dns: [],
    ip: [],
    purposes: { sslserver: false, sslclient: true },
    eku: "TLS Web Client Authentication",
  })),
];

describe.each(CASES)("the certificate of $what", (c) => {
  let leaf: CertifiedKey;
  beforeAll(async () => {
    leaf = await issueCertificate(ca, c.spec);
  });

  it("names what the agents check, parsed back with @peculiar/x509", async () => {
    const cert = new x509.X509Certificate(leaf.cert);
    expect(sans(cert)).toEqual({ dns: c.dns, ip: c.ip });
    expect(cert.subject).toContain(`CN=${c.spec.commonName}`);
    expect(cert.issuer).toBe(new x509.X509Certificate(ca.cert).subject);
    expect(await cert.verify({ publicKey: new x509.X509Certificate(ca.cert).publicKey, signatureOnly: true })).toBe(true);
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.ca, bc.critical]).toEqual([false, true]);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    expect([ku.usages, ku.critical]).toEqual([x509.KeyUsageFlags.digitalSignature, true]);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!;
    expect(eku.usages).toEqual(c.spec.usages.map((u) => x509.ExtendedKeyUsage[u]));
    expect((cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve).toBe("P-256");
    const days = (cert.notAfter.getTime() - Date.now()) / DAY;
    expect(days).toBeGreaterThan(LEAF_VALIDITY_DAYS - 1);
    expect(days).toBeLessThanOrEqual(LEAF_VALIDITY_DAYS);
    expect(cert.notBefore.getTime()).toBeLessThan(Date.now());
  });

  it("says the same to openssl, and chains to the CA for exactly its TLS purposes", () => {
    const ext = opensslExtensions(leaf.cert);
    expect(ext["Basic Constraints: critical"]).toBe("CA:FALSE");
    expect(ext["Key Usage: critical"]).toBe("Digital Signature");
    expect(ext["Extended Key Usage"]).toBe(c.eku);
    const san = [...c.dns.map((d) => `DNS:${d}`), ...c.ip.map((i) => `IP Address:${i}`)].join(", ");
    expect(ext["Subject Alternative Name"]).toBe(san || undefined);
    for (const purpose of ["sslserver", "sslclient"] as const) {
      const { status, out } = verify(leaf.cert, purpose);
      expect(status === 0, `openssl verify -purpose ${purpose}: ${out}`).toBe(c.purposes[purpose]);
      if (c.purposes[purpose]) expect(out).toMatch(/: OK$/m);
    }
  });

  it("has its own key, never the CA's", () => {
    expect(leaf.key).not.toBe(ca.key);
    expect(leaf.cert).not.toContain(ca.key.split("\n")[1]);
    const { status, out } = openssl(["x509", "-in", save(leaf.cert), "-noout", "-pubkey"]);
    expect(status).toBe(0);
    expect(out.trim()).toBe(createPublicKey(createPrivateKey(leaf.key)).export({ type: "spki", format: "pem" }).toString().trim());
  });

  it("does not chain to another cluster's CA", async () => {
    const other = await createCa("other");
    const otherPath = save(other.cert);
    const { status } = openssl(["verify", "-CAfile", otherPath, save(leaf.cert)]);
    expect(status).not.toBe(0);
  });
});

describe("issueCertificate", () => {
  it("never outlives the CA", async () => {
    const now = new Date(Date.now() - (CA_VALIDITY_DAYS - 10) * DAY);
    const oldCa = await createCa("old", { now });
    const leaf = new x509.X509Certificate((await issueCertificate(oldCa, vaultCertSpec(node))).cert);
    expect(leaf.notAfter.getTime()).toBeLessThanOrEqual(new x509.X509Certificate(oldCa.cert).notAfter.getTime());
  });

  it("makes positive serial numbers that differ", async () => {
    const serials = await Promise.all([1, 2, 3].map(async () => new x509.X509Certificate((await issueCertificate(ca, cliCertSpec("demo"))).cert).serialNumber));
    expect(new Set(serials).size).toBe(3);
    for (const s of serials) expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
  });
});

describe("a cluster's bundle", () => {
  it("has a CA per product; each node's certificate for a service chains to that product's CA and to no other, none holding a CA key", async () => {
    const plan = planCluster("demo", ["control-plane", "nomad-client", "vault-server"]);
    const secrets = await generateSecrets(plan, (n) =>
      n.role === "control-plane" ? { consul: "server", nomad: "server", vault: true } : n.role === "nomad-client" ? { consul: "client", nomad: "client" } : { consul: "client", vault: true },
    );
    const caFile: Record<string, string> = {};
    for (const product of PRODUCTS) {
      caFile[product] = join(dir, `bundle-${product}-ca.pem`);
      writeFileSync(caFile[product]!, secrets.cas[product].cert);
      expect(new x509.X509Certificate(secrets.cas[product].cert).subject).toContain(`Resin cluster demo ${product[0]!.toUpperCase()}${product.slice(1)} CA`);
    }
    expect(new Set(PRODUCTS.map((p) => secrets.cas[p].key)).size).toBe(3);
    expect(Object.keys(secrets.nodes)).toEqual(["demo-1", "demo-2", "demo-3"]);
    expect(Object.keys(secrets.nodes["demo-1"]!).sort()).toEqual(["consul", "nomad", "nomadConsul", "vault"]);
    expect(Object.keys(secrets.nodes["demo-2"]!).sort()).toEqual(["consul", "nomad", "nomadConsul"]);
    expect(Object.keys(secrets.nodes["demo-3"]!).sort()).toEqual(["consul", "vault"]);
    const caKeyBodies = PRODUCTS.map((p) => secrets.cas[p].key.split("\n").slice(1, -2).join(""));
    // Which CA signs what: a service's certificates its product's; Nomad's certificate for Consul, Consul's.
    const issuer: Record<string, string> = { consul: "consul", nomad: "nomad", vault: "vault", nomadConsul: "consul" };
    for (const [name, certs] of Object.entries(secrets.nodes)) {
      const address = plan.nodes.find((n) => n.name === name)!.address;
      for (const [service, pair] of Object.entries(certs)) {
        for (const body of caKeyBodies) expect(JSON.stringify(pair).replace(/\\n/g, ""), `${name} ${service}`).not.toContain(body);
        const purpose = service === "nomadConsul" ? "sslclient" : "sslserver";
        for (const product of PRODUCTS) {
          const { status, out } = openssl(["verify", "-CAfile", caFile[product]!, "-purpose", purpose, save(pair.cert)]);
          expect(status === 0, `${name} ${service} against ${product}'s CA: ${out}`).toBe(product === issuer[service]);
        }
        if (service !== "nomadConsul") expect(sans(new x509.X509Certificate(pair.cert)).ip).toEqual([address, "127.0.0.1"]);
      }
    }
    expect(sans(new x509.X509Certificate(secrets.nodes["demo-1"]!.consul!.cert)).dns[0]).toBe("server.dc1.consul");
    expect(sans(new x509.X509Certificate(secrets.nodes["demo-2"]!.consul!.cert)).dns[0]).toBe("client.dc1.consul");
    expect(sans(new x509.X509Certificate(secrets.nodes["demo-2"]!.nomad!.cert)).dns[0]).toBe("client.global.nomad");
    // Only a Consul server's certificate names server.<dc>.consul.
    const naming = Object.entries(secrets.nodes).flatMap(([name, certs]) => Object.entries(certs).filter(([, pair]) => sans(new x509.X509Certificate(pair.cert)).dns.includes("server.dc1.consul")).map(([s]) => `${name}/${s}`));
    expect(naming).toEqual(["demo-1/consul"]);
    // The host's certificate per product: a client of that product's CA only.
    for (const product of PRODUCTS) {
      for (const other of PRODUCTS) {
        const { status } = openssl(["verify", "-CAfile", caFile[other]!, "-purpose", "sslclient", save(secrets.cli[product].cert)]);
        expect(status === 0, `the host's ${product} certificate against ${other}'s CA`).toBe(product === other);
      }
    }
  });
});
