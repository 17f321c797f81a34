// The cluster's private PKI: one CA per product and cluster (Consul, Nomad, Vault;
// ECDSA P-256, 10 years) and the leaf certificates each node presents (ECDSA P-256,
// 2 years), all made with WebCrypto and @peculiar/x509. Pure: every function takes what
// it signs with and returns PEM; no file is read or written here.
//
// A product trusts only its own CA, so no certificate of one product is accepted by
// another: a Nomad client's certificate opens neither Consul nor Vault. Each certificate
// has the extended key usages of its use and no more:
//   Consul  servers `server.<datacenter>.consul` (verify_server_hostname): serverAuth and
//           clientAuth (their own RPC, both ways); client agents `client.<datacenter>.consul`:
//           clientAuth for their RPC to the servers, serverAuth for the HTTPS API they serve
//           on their node. Only a server's certificate names `server.<datacenter>.consul`,
//           which is what the host checks before it sends the management token.
//           Nomad's client certificate for its local Consul agent: clientAuth only.
//   Nomad   `server.<region>.nomad` / `client.<region>.nomad` (region "global"): both
//           usages (RPC both ways, and the HTTPS API every agent serves).
//   Vault   the node's name and VAULT_TLS_SERVER_NAME, which every Vault node's
//           certificate carries so that raft retry_join can check any of them by one name;
//           also clientAuth: a joining node presents it to the leader's API.
//   host    one client certificate per product (clientAuth only, no names to serve).
// Every agent certificate also names the node, its cluster address, `localhost` and
// 127.0.0.1: the host reaches each node through a port forward on 127.0.0.1, and agents
// on a node talk to each other over loopback.
import { isIPv4 } from "node:net";
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

const crypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(crypto);

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start an hour early, so a node whose clock lags a little still accepts them. */
const BACKDATE_MS = 60 * 60 * 1000;

export const CA_VALIDITY_DAYS = 3652;
export const LEAF_VALIDITY_DAYS = 730;
/** Nomad's default region: its agents' certificate names are `<role>.global.nomad`. */
export const NOMAD_REGION = "global";
/** A name every Vault listener certificate carries; raft retry_join checks the leader against it. */
export const VAULT_TLS_SERVER_NAME = "vault.resin.internal";

/** A certificate and its private key (PKCS#8), both PEM. */
export interface CertifiedKey {
  cert: string;
  key: string;
}

export type Usage = "serverAuth" | "clientAuth";

export interface LeafSpec {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  usages: Usage[];
  validityDays?: number;
}

export interface IssueOptions {
  /** The moment the certificate is made (tests); default now. */
  now?: Date;
}

/** The node facts a certificate names. */
export interface NodeNames {
  name: string;
  address: string;
}

function serialNumber(): string {
  // 16 random bytes, positive and minimally encoded (first byte 0x01..0x7f): Go and OpenSSL
  // both reject negative or zero-padded serials.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString("hex");
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function importSigningKey(pem: string): Promise<CryptoKey> {
  const [der] = x509.PemConverter.decode(pem);
  if (!der) throw new Error("the CA key is not PEM");
  return crypto.subtle.importKey("pkcs8", der, EC, false, ["sign"]);
}

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString("pem").replace(/\r\n/g, "\n").trimEnd()}\n`;
}

function pemKey(text: string): string {
  return `${text.replace(/\r\n/g, "\n").trimEnd()}\n`;
}

/** The products that each have a CA of their own. */
export const PRODUCTS = ["consul", "nomad", "vault"] as const;
export type Product = (typeof PRODUCTS)[number];
const PRODUCT_NAME: Record<Product, string> = { consul: "Consul", nomad: "Nomad", vault: "Vault" };

/**
 * A new CA: ECDSA P-256, CA:true (critical, no intermediates), keyCertSign + cRLSign.
 * With a product, the CA of that product's certificates in the cluster ("Resin cluster
 * demo Consul CA"); without, a CA of the one-CA bundles made before (kept for tests).
 */
export async function createCa(clusterName: string, opts: IssueOptions & { product?: Product } = {}): Promise<CertifiedKey> {
  const now = opts.now ?? new Date();
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [`Resin cluster ${clusterName} ${opts.product ? `${PRODUCT_NAME[opts.product]} ` : ""}CA`] }, { O: ["Resin"] }],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_VALIDITY_DAYS * DAY_MS),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: pem(cert), key: pemKey(await exportKey(keys.privateKey)) };
}

/** A leaf certificate signed by `ca`: CA:false, digitalSignature, the given extended usages and names. */
export async function issueCertificate(ca: CertifiedKey, spec: LeafSpec, opts: IssueOptions = {}): Promise<CertifiedKey> {
  if (spec.usages.length === 0) throw new Error(`certificate ${spec.commonName}: give at least one usage`);
  const now = opts.now ?? new Date();
  const caCert = new x509.X509Certificate(ca.cert);
  const signingKey = await importSigningKey(ca.key);
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const notAfter = Math.min(now.getTime() + (spec.validityDays ?? LEAF_VALIDITY_DAYS) * DAY_MS, caCert.notAfter.getTime());
  const names: x509.JsonGeneralNames = [
    ...unique(spec.dnsNames).map((value) => ({ type: "dns" as const, value })),
    ...unique(spec.ipAddresses).map((value) => ({ type: "ip" as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(spec.usages.map((u) => x509.ExtendedKeyUsage[u]), false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [spec.commonName] }, { O: ["Resin"] }],
    issuer: caCert.subjectName,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(notAfter),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return { cert: pem(cert), key: pemKey(await exportKey(keys.privateKey)) };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** RPC both ways (an agent dials and is dialled) and an HTTPS API of its own. */
const AGENT_USAGES: Usage[] = ["serverAuth", "clientAuth"];
const nodeDns = (node: NodeNames, name: string) => [name, node.name, "localhost"];
// A node whose address comes from DHCP is named by its DNS names only.
const nodeIps = (node: NodeNames) => [node.address, "127.0.0.1"].filter((a) => isIPv4(a));

/** What a Consul agent's certificate says: `server.<dc>.consul` for a server, `client.<dc>.consul` for a client agent. */
export function consulCertSpec(node: NodeNames, datacenter: string, role: "server" | "client"): LeafSpec {
  const name = `${role}.${datacenter}.consul`;
  return { commonName: name, dnsNames: nodeDns(node, name), ipAddresses: nodeIps(node), usages: AGENT_USAGES };
}

/** What a Nomad agent's certificate says: `server.global.nomad` (a server, also when it runs a client) or `client.global.nomad`. */
export function nomadCertSpec(node: NodeNames, role: "server" | "client", region = NOMAD_REGION): LeafSpec {
  const name = `${role}.${region}.nomad`;
  return { commonName: name, dnsNames: nodeDns(node, name), ipAddresses: nodeIps(node), usages: AGENT_USAGES };
}

/**
 * What a Vault listener's certificate says: the node, the shared VAULT_TLS_SERVER_NAME,
 * loopback. Also a client certificate: a joining node presents it to the leader's API,
 * which requires one.
 */
export function vaultCertSpec(node: NodeNames): LeafSpec {
  return {
    commonName: node.name,
    dnsNames: [node.name, VAULT_TLS_SERVER_NAME, "localhost"],
    ipAddresses: nodeIps(node),
    usages: ["serverAuth", "clientAuth"],
  };
}

/**
 * The certificate Nomad presents to its node's Consul agent (Consul's verify_incoming
 * wants one from Consul's CA): client authentication only, no names to serve.
 */
export function nomadConsulCertSpec(node: NodeNames): LeafSpec {
  return { commonName: `nomad.${node.name}`, dnsNames: [], ipAddresses: [], usages: ["clientAuth"] };
}

/**
 * The host's certificate for one product's HTTPS APIs (one per product, each from that
 * product's CA): client authentication only, no names to serve. Without a product, the
 * one certificate of the bundles made before (kept for tests).
 */
export function cliCertSpec(clusterName: string, product?: Product): LeafSpec {
  return { commonName: `resin-cli${product ? `-${product}` : ""}.${clusterName}`, dnsNames: [], ipAddresses: [], usages: ["clientAuth"] };
}
