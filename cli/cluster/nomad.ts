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
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { seconds } from "../util/time.js";
import { Again, ApiClient, noLeader, patience, retry, type ApiTls } from "./api.js";

export interface NomadBootstrapOptions extends ApiTls {
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

/** Nomad's API at `baseUrl` (https://host:port), with X-Nomad-Token when a secret is given. */
export function nomadClient(baseUrl: string, tls: ApiTls, secret?: string): ApiClient {
  return new ApiClient({ address: baseUrl, tls, name: "Nomad", token: { header: "x-nomad-token", value: secret ?? "" } });
}

/** The token our secret is, if Nomad knows it (GET /v1/acl/token/self). */
export async function nomadTokenSelf(baseUrl: string, secret: string, tls: ApiTls, timeoutMs = 5000): Promise<NomadAclToken | undefined> {
  return tokenSelf(nomadClient(baseUrl, tls, secret), timeoutMs);
}

async function tokenSelf(nomad: ApiClient, timeoutMs: number): Promise<NomadAclToken | undefined> {
  const res = await nomad.get("/v1/acl/token/self", { timeoutMs });
  if (res.status === 200) return res.json<NomadAclToken>();
  if (res.status === 403 || res.status === 404) return undefined;
  throw new ResinError(`Nomad at ${nomad.address} answered ${res.status} to GET /v1/acl/token/self: ${res.text.trim()}`);
}

/**
 * Bootstrap Nomad's ACL system with `secret` as the management token's SecretID.
 * Waits (until timeoutMs) while the agent is not answering yet or has no cluster leader;
 * "already done" is success only when our secret is a management token.
 */
export async function bootstrapNomadAcl(baseUrl: string, secret: string, opts: NomadBootstrapOptions): Promise<NomadBootstrapResult> {
  // The bootstrap request itself carries no token; token/self is asked with our secret.
  const nomad = nomadClient(baseUrl, opts, secret);
  const wait = patience({
    timeoutMs: opts.timeoutMs,
    intervalMs: opts.intervalMs,
    onWait: (why) => opts.log?.(`  Nomad ACL bootstrap: ${why}; waiting`),
    expired: (why) =>
      new ResinError(`Nomad ACL bootstrap at ${baseUrl} did not succeed within ${seconds(opts.timeoutMs)}: ${why}`, "see the Nomad servers' logs with `resin logs NODE --service nomad`"),
  });
  const res = await retry(wait, async () => {
    const res = await nomad.post("/v1/acl/bootstrap", {
      body: { BootstrapSecret: secret },
      token: "",
      timeoutMs: Math.max(1000, Math.min(10_000, wait.remainingMs())),
    });
    return noLeader(res) ? new Again("no cluster leader yet") : res;
  });
  const body = res.text.trim();
  if (res.status === 200) {
    const token = res.json<NomadAclToken>();
    if (token.SecretID !== secret || token.Type !== "management") {
      throw new ResinError(`Nomad at ${baseUrl} made a bootstrap token other than the one asked for`, "this Nomad ignores BootstrapSecret (it needs 1.4 or newer)");
    }
    opts.log?.(`  Nomad ACL: bootstrapped (management token ${token.AccessorID})`);
    return { created: true, accessorId: token.AccessorID };
  }
  if (res.status === 400 && /ACL bootstrap already done/i.test(body)) {
    const token = await tokenSelf(nomad, 10_000);
    if (token?.Type === "management") return { created: false, accessorId: token.AccessorID };
    throw new ResinError(
      `Nomad at ${baseUrl} was bootstrapped with a token that is not this cluster's`,
      "its ACL system was bootstrapped by someone else; reset it (Nomad's acl-bootstrap-reset) or recreate the cluster",
    );
  }
  throw new ResinError(`Nomad ACL bootstrap at ${baseUrl} failed: ${res.status} ${body}`);
}
