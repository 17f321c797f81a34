// The one HTTP client for the HashiCorp agents' APIs (Consul, Nomad, Vault), shaped like
// their Go `api.Config{Address, TLS, Token}`. The host speaks to every agent the same
// way: over TLS with the cluster CA and its own client certificate (mTLS), with the
// product's token header, and with a timeout on every request. What a network failure
// means, which failures are worth waiting out while a VM boots, and how long to wait,
// are decided here once; consul.ts, nomad.ts and vault.ts say only what their product's
// endpoints answer.
import { createHash } from "node:crypto";
import { Agent, request, type Dispatcher } from "undici";
import type { Secrets } from "../bootstrap/secrets.js";
import type { Product } from "../bootstrap/pki.js";
import { ResinError } from "../util/errors.js";
import { seconds, sleep } from "../util/time.js";

/** PEM: the CA to check the agent against, and the client certificate and key to present. */
export interface ApiTls {
  ca: string;
  cert?: string;
  key?: string;
  /** The name to check the agent's certificate against when the address's host is not in it. */
  serverName?: string;
}

export interface ApiConfig {
  /** "https://host:port" (or "http://host:port" for an agent without TLS). */
  address: string;
  /** Absent: the system's CAs and no client certificate. */
  tls?: ApiTls;
  /** Sent on every request, e.g. { header: "x-consul-token", value: "…" }. */
  token?: { header: string; value: string };
  /** Per request (headers, then body); default 5 s. */
  timeoutMs?: number;
  /** What to call the agent in messages: "Nomad", "Vault on vault-1". */
  name?: string;
}

export type Method = "GET" | "PUT" | "POST" | "DELETE";

export interface RequestOptions {
  /** A string is sent as it is; anything else as JSON (with its content type). */
  body?: unknown;
  /** This request's token value instead of the configured one; "" sends none. */
  token?: string;
  timeoutMs?: number;
}

export interface ApiResponse {
  status: number;
  text: string;
  /** The body parsed as JSON; a body that is not JSON is an error naming the agent and the request. */
  json<T = unknown>(): T;
}

/**
 * The host's TLS material for one product from the cluster's secrets: that product's CA
 * (the only one its agents are checked against) and the host's certificate from it.
 */
export function hostTls(secrets: Secrets, product: Product, serverName?: string): ApiTls & { cert: string; key: string } {
  return { ca: secrets.cas[product].cert, cert: secrets.cli[product].cert, key: secrets.cli[product].key, ...(serverName ? { serverName } : {}) };
}

// One connection pool per TLS identity, kept for the life of the process (undici lets an
// idle socket not hold the process open), so every client with the same material shares it.
const dispatchers = new Map<string, Dispatcher>();
/** The shared connection pool for one TLS identity (resin ui's proxy forwards through it too). */
export function dispatcherFor(tls: ApiTls): Dispatcher {
  const key = createHash("sha256").update(JSON.stringify([tls.ca, tls.cert ?? "", tls.key ?? "", tls.serverName ?? ""])).digest("hex");
  let agent = dispatchers.get(key);
  if (!agent) {
    agent = new Agent({ connect: { ca: tls.ca, cert: tls.cert, key: tls.key, servername: tls.serverName } });
    dispatchers.set(key, agent);
  }
  return agent;
}

// Failures worth waiting out while a VM boots: nothing listens yet, the agent drops the
// connection while it starts (also mid-handshake), or it does not answer in time.
const TRANSIENT = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);
const TIMEOUTS = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

/** A network error's code (undici puts it on the error or its cause), or "". */
export function errorCode(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string } };
  return err.code ?? err.cause?.code ?? "";
}

/** A request that got no HTTP answer: `detail` says why, `transient` whether waiting may help. */
export class ApiUnreachable extends ResinError {
  constructor(
    readonly address: string,
    readonly detail: string,
    readonly code: string,
    readonly transient: boolean,
    name?: string,
  ) {
    super(`cannot reach ${name ? `${name} at ` : ""}${address}: ${detail}`);
    this.name = "ApiUnreachable";
  }
}

/** A network failure said plainly: TLS refusals by what failed, a cut connection by its likely cause. Pure. */
export function describeFailure(e: unknown, timeoutMs?: number): string {
  const err = e as { message?: string; cause?: { message?: string } };
  const code = errorCode(e);
  const message = err.cause?.message ?? err.message ?? String(e);
  if (/^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/.test(code)) return `TLS failed (${code}): ${message}`;
  if (code === "UND_ERR_SOCKET" || code === "ECONNRESET") return `the agent closed the connection (${code}): it is still starting, or it refused our client certificate`;
  if (TIMEOUTS.has(code) && timeoutMs !== undefined && code !== "UND_ERR_CONNECT_TIMEOUT") return `no answer within ${seconds(timeoutMs)} (${code})`;
  return code ? `${message} (${code})` : message;
}

export class ApiClient {
  readonly address: string;
  private readonly dispatcher?: Dispatcher;

  constructor(readonly config: ApiConfig) {
    this.address = config.address.replace(/\/+$/, "");
    if (!/^https?:\/\/[^/]+$/.test(this.address)) throw new ResinError(`API address '${config.address}' is not http(s)://host:port`);
    this.dispatcher = config.tls ? dispatcherFor(config.tls) : undefined;
  }

  /** "Nomad at https://127.0.0.1:4646", for messages. */
  get subject(): string {
    return this.config.name ? `${this.config.name} at ${this.address}` : this.address;
  }

  /** One request. Any HTTP status is an answer; no answer is an ApiUnreachable. */
  async request(method: Method, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const timeoutMs = opts.timeoutMs ?? this.config.timeoutMs ?? 5000;
    const headers: Record<string, string> = {};
    const token = opts.token ?? this.config.token?.value;
    if (token && this.config.token) headers[this.config.token.header] = token;
    let body: string | undefined;
    if (typeof opts.body === "string") body = opts.body;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] = "application/json";
    }
    let status: number;
    let text: string;
    try {
      const res = await request(`${this.address}${path}`, { method, body, headers, dispatcher: this.dispatcher, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      status = res.statusCode;
      text = await res.body.text();
    } catch (e) {
      const code = errorCode(e);
      throw new ApiUnreachable(this.address, describeFailure(e, timeoutMs), code, TRANSIENT.has(code), this.config.name);
    }
    const subject = this.subject;
    return {
      status,
      text,
      json<T>(): T {
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new ResinError(`${subject} answered ${method} ${path} with something other than JSON: ${text.trim().slice(0, 200) || "(empty)"}`);
        }
      },
    };
  }

  get(path: string, opts?: RequestOptions): Promise<ApiResponse> {
    return this.request("GET", path, opts);
  }
  put(path: string, opts?: RequestOptions): Promise<ApiResponse> {
    return this.request("PUT", path, opts);
  }
  post(path: string, opts?: RequestOptions): Promise<ApiResponse> {
    return this.request("POST", path, opts);
  }
  delete(path: string, opts?: RequestOptions): Promise<ApiResponse> {
    return this.request("DELETE", path, opts);
  }
}

/** A server that answers but has not elected a leader yet (Consul and Nomad: 500 "No cluster leader"). */
export function noLeader(res: ApiResponse): boolean {
  return res.status === 500 && /no cluster leader/i.test(res.text);
}

/** Waiting for a cluster that is still starting: one deadline, one pause between attempts. */
export interface Patience {
  /** Pause before the next attempt; throws `expired(why)` when the deadline would pass first. */
  wait(why: string): Promise<void>;
  /** Time left before the deadline (never below 0). */
  remainingMs(): number;
}

export function patience(opts: {
  timeoutMs: number;
  /** Pause between attempts (default 1 s). */
  intervalMs?: number;
  /** Told each new reason for waiting (once, not at every attempt). */
  onWait?: (why: string) => void;
  /** The error to give up with: `why` is the last reason for waiting. */
  expired: (why: string) => Error;
}): Patience {
  const deadline = Date.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 1000;
  let waitingFor: string | undefined;
  return {
    async wait(why) {
      if (why !== waitingFor) opts.onWait?.(why);
      waitingFor = why;
      if (Date.now() + interval > deadline) throw opts.expired(why);
      await sleep(interval);
    },
    remainingMs: () => Math.max(0, deadline - Date.now()),
  };
}

/** What an attempt returns to be tried again after a pause. */
export class Again {
  constructor(readonly why: string) {}
}

/**
 * Run `attempt` until it returns an answer. It is tried again after a pause when it
 * returns `Again` or when a request finds the agent unreachable for a transient reason
 * (said by `unreachable`, default "not answering yet (…)"); anything else is thrown.
 */
export async function retry<T>(wait: Patience, attempt: () => Promise<T | Again>, unreachable = (e: ApiUnreachable) => `not answering yet (${e.detail})`): Promise<T> {
  for (;;) {
    let result: T | Again;
    try {
      result = await attempt();
    } catch (e) {
      if (!(e instanceof ApiUnreachable) || !e.transient) throw e;
      result = new Again(unreachable(e));
    }
    if (!(result instanceof Again)) return result;
    await wait.wait(result.why);
  }
}
