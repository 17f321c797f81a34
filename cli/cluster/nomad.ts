// Nomad's ACL bootstrap, as the host does it through a node's forwarded HTTPS port:
// POST /v1/acl/bootstrap with the BootstrapSecret from the cluster's secrets, so the
// management token is one Resin chose (and kept) before the cluster ever ran.
//
// What Nomad answers (nomad/acl_endpoint.go, ACL.Bootstrap; the HTTP layer writes a
// coded RPC error as its status with the message as a plain-text body):
//   200  the token: {"AccessorID", "SecretID", "Name": "Bootstrap Token", "Type": "management", …}
//   500  "No cluster leader" while the servers have not elected one: wait and retry
//   400  "ACL bootstrap already done (reset index: N)": done before (by us, on an
//        earlier `resin up`, or by someone else: GET /v1/acl/token/self with our secret
//        as X-Nomad-Token tells which)
//   400  "invalid acl token" (a BootstrapSecret that is not a UUID), "ACL support disabled"
import { Agent, request, type Dispatcher } from "undici";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";

export interface TlsClient {
  /** PEM: the cluster CA (to check the agent), and the host's client certificate and key. */
  ca: string;
  clientCert?: string;
  clientKey?: string;
  /** The name to check the server's certificate against when the URL's host is not in it. */
  serverName?: string;
}

export interface NomadBootstrapOptions extends TlsClient {
  timeoutMs: number;
  log?: Log;
  /** Pause between attempts while there is no leader (default 1 s). */
  intervalMs?: number;
}

export interface NomadAclToken {
  AccessorID: string;
  SecretID: string;
  Name: string;
  Type: string;
  Global?: boolean;
}

export interface NomadBootstrapResult {
  /** false when the ACL system was bootstrapped before (with this same secret). */
  created: boolean;
  accessorId: string;
}

export function tlsDispatcher(tls: TlsClient): Agent {
  return new Agent({ connect: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey, servername: tls.serverName } });
}

/** Errors worth waiting out while a VM boots: nothing listens yet, or the agent drops the connection while starting. */
export function isTransient(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? (e as { cause?: { code?: string } }).cause?.code ?? "";
  return ["ECONNREFUSED", "ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"].includes(code);
}

/** A TLS failure (wrong CA, name, missing or refused client certificate) said plainly. */
export function describeFailure(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code ?? err.cause?.code ?? "";
  const message = err.cause?.message ?? err.message ?? String(e);
  if (/^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/.test(code)) return `TLS failed (${code}): ${message}`;
  if (code === "UND_ERR_SOCKET" || code === "ECONNRESET") return `the agent closed the connection (${code}): it is still starting, or it refused our client certificate`;
  return code ? `${message} (${code})` : message;
}

async function call(dispatcher: Dispatcher, url: string, init: { method: "GET" | "POST"; body?: string; token?: string; timeoutMs: number }) {
  const res = await request(url, {
    method: init.method,
    body: init.body,
    headers: { ...(init.body ? { "content-type": "application/json" } : {}), ...(init.token ? { "x-nomad-token": init.token } : {}) },
    dispatcher,
    headersTimeout: init.timeoutMs,
    bodyTimeout: init.timeoutMs,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const seconds = (ms: number) => `${ms < 10_000 ? (ms / 1000).toFixed(1) : Math.round(ms / 1000)}s`;

/** The token our secret is, if Nomad knows it (GET /v1/acl/token/self). */
export async function nomadTokenSelf(baseUrl: string, secret: string, tls: TlsClient, timeoutMs = 5000): Promise<NomadAclToken | undefined> {
  const dispatcher = tlsDispatcher(tls);
  try {
    return await tokenSelf(dispatcher, baseUrl, secret, timeoutMs);
  } finally {
    await dispatcher.close();
  }
}

async function tokenSelf(dispatcher: Dispatcher, baseUrl: string, secret: string, timeoutMs: number): Promise<NomadAclToken | undefined> {
  const { status, text } = await call(dispatcher, `${baseUrl}/v1/acl/token/self`, { method: "GET", token: secret, timeoutMs });
  if (status === 200) return JSON.parse(text) as NomadAclToken;
  if (status === 403 || status === 404) return undefined;
  throw new ResinError(`Nomad at ${baseUrl} answered ${status} to GET /v1/acl/token/self: ${text.trim()}`);
}

/**
 * Bootstrap Nomad's ACL system with `secret` as the management token's SecretID.
 * Waits (until timeoutMs) while the agent is not answering yet or has no cluster leader;
 * "already done" is success only when our secret is a management token.
 */
export async function bootstrapNomadAcl(baseUrl: string, secret: string, opts: NomadBootstrapOptions): Promise<NomadBootstrapResult> {
  const deadline = Date.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 1000;
  const dispatcher = tlsDispatcher(opts);
  let waitingFor = "";
  const wait = async (why: string) => {
    if (why !== waitingFor) opts.log?.(`  Nomad ACL bootstrap: ${why}; waiting`);
    waitingFor = why;
    if (Date.now() + interval > deadline) {
      throw new ResinError(
        `Nomad ACL bootstrap at ${baseUrl} did not succeed within ${seconds(opts.timeoutMs)}: ${why}`,
        "see the Nomad servers' logs with `resin logs NODE --service nomad`",
      );
    }
    await sleep(interval);
  };
  try {
    for (;;) {
      let res: { status: number; text: string };
      try {
        res = await call(dispatcher, `${baseUrl}/v1/acl/bootstrap`, {
          method: "POST",
          body: JSON.stringify({ BootstrapSecret: secret }),
          timeoutMs: Math.max(1000, Math.min(10_000, deadline - Date.now())),
        });
      } catch (e) {
        if (!isTransient(e)) throw new ResinError(`cannot reach Nomad at ${baseUrl}: ${describeFailure(e)}`);
        await wait(`not answering yet (${describeFailure(e)})`);
        continue;
      }
      const body = res.text.trim();
      if (res.status === 200) {
        const token = JSON.parse(body) as NomadAclToken;
        if (token.SecretID !== secret || token.Type !== "management") {
          throw new ResinError(`Nomad at ${baseUrl} made a bootstrap token other than the one asked for`, "this Nomad ignores BootstrapSecret (it needs 1.4 or newer)");
        }
        opts.log?.(`  Nomad ACL: bootstrapped (management token ${token.AccessorID})`);
        return { created: true, accessorId: token.AccessorID };
      }
      if (res.status === 500 && /no cluster leader/i.test(body)) {
        await wait("no cluster leader yet");
        continue;
      }
      if (res.status === 400 && /ACL bootstrap already done/i.test(body)) {
        const token = await tokenSelf(dispatcher, baseUrl, secret, 10_000);
        if (token?.Type === "management") return { created: false, accessorId: token.AccessorID };
        throw new ResinError(
          `Nomad at ${baseUrl} was bootstrapped with a token that is not this cluster's`,
          "its ACL system was bootstrapped by someone else; reset it (Nomad's acl-bootstrap-reset) or recreate the cluster",
        );
      }
      throw new ResinError(`Nomad ACL bootstrap at ${baseUrl} failed: ${res.status} ${body}`);
    }
  } finally {
    await dispatcher.close();
  }
}
