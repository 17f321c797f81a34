// TEST DOUBLE — not Nomad. A loopback HTTPS server that answers the two ACL endpoints
// Resin's host code calls the way Nomad documents and implements them
// (nomad/acl_endpoint.go ACL.Bootstrap; coded RPC errors become the HTTP status with
// the message as a plain-text body):
//
//   POST /v1/acl/bootstrap  {"BootstrapSecret": "<uuid>"}
//     500 "No cluster leader"                          for the first `noLeaderFor` requests
//     400 "invalid acl token"                          for a BootstrapSecret that is not a UUID
//     200 {AccessorID, SecretID, Name: "Bootstrap Token", Type: "management", Global: true, …}  once
//     400 "ACL bootstrap already done (reset index: N)" after that
//   GET /v1/acl/token/self  (X-Nomad-Token)
//     200 the token when the header is its SecretID, else 403 "ACL token not found"
//
// Nothing here ran a real Nomad: Nomad 1.11 cannot be obtained on this machine.
import { randomUUID } from "node:crypto";
import { issueCertificate, nomadCertSpec, type CertifiedKey } from "../../cli/bootstrap/pki.js";
import { serveHttps, type RunningDouble } from "./https.js";

export interface NomadDoubleOptions {
  /** The cluster CA: the double serves a `server.global.nomad` certificate it signs (with IP 127.0.0.1). */
  ca: CertifiedKey;
  /** Refuse clients without a certificate the CA signed (real Nomad: tls.verify_https_client). */
  requireClientCert?: boolean;
  /** How many bootstrap requests answer "No cluster leader" first. */
  noLeaderFor?: number;
  /** Start as already bootstrapped, with this SecretID as the management token. */
  bootstrappedWith?: string;
  /** Answer every bootstrap request with this (a broken server). */
  failWith?: { status: number; body: string };
}

export interface NomadDouble extends RunningDouble {
  /** The management token, once bootstrapped. */
  token(): { AccessorID: string; SecretID: string } | undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function startNomadDouble(opts: NomadDoubleOptions): Promise<NomadDouble> {
  let bootstrapRequests = 0;
  let index = 7;
  const makeToken = (secret: string) => ({
    AccessorID: randomUUID(),
    SecretID: secret,
    Name: "Bootstrap Token",
    Type: "management",
    Policies: null,
    Roles: null,
    Global: true,
    CreateTime: new Date().toISOString(),
    ExpirationTime: null,
    CreateIndex: index,
    ModifyIndex: index,
  });
  let token = opts.bootstrappedWith ? makeToken(opts.bootstrappedWith) : undefined;
  const served = await issueCertificate(opts.ca, nomadCertSpec({ name: "nomad-double", address: "127.0.0.1" }, "server"));
  const running = await serveHttps({ ca: opts.ca.cert, ...served, requireClientCert: opts.requireClientCert }, (req) => {
    if (req.method === "POST" && req.path === "/v1/acl/bootstrap") {
      bootstrapRequests++;
      if (opts.failWith) return { status: opts.failWith.status, body: opts.failWith.body };
      if (bootstrapRequests <= (opts.noLeaderFor ?? 0)) return { status: 500, body: "No cluster leader" };
      if (token) return { status: 400, body: `ACL bootstrap already done (reset index: ${token.CreateIndex})` };
      const secret = req.body ? ((JSON.parse(req.body) as { BootstrapSecret?: string }).BootstrapSecret ?? "") : "";
      if (secret !== "" && !UUID.test(secret)) return { status: 400, body: "invalid acl token" };
      index++;
      token = makeToken(secret || randomUUID());
      return { status: 200, body: token };
    }
    if (req.method === "GET" && req.path === "/v1/acl/token/self") {
      const secret = req.headers["x-nomad-token"];
      if (token && secret === token.SecretID) return { status: 200, body: token };
      return { status: 403, body: "ACL token not found" };
    }
    return { status: 404, body: "Invalid URL" };
  });
  return { ...running, token: () => token && { AccessorID: token.AccessorID, SecretID: token.SecretID } };
}
