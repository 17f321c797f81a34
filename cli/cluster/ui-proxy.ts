// `resin ui`'s local reverse proxy: a browser reaches a cluster's web UI (Consul, Nomad,
// Vault) without a client certificate, and without the API giving up mutual TLS.
//
// Downstream it listens on 127.0.0.1 only and lets in one browser: the URL it prints
// holds a one-time secret (32 random bytes); the first request with it gets an HttpOnly,
// SameSite=Strict session cookie and a redirect that drops the secret from the address
// bar; after that the secret is spent, and every request without the cookie gets 403.
// Upstream it speaks mTLS with the host's client certificate, checking the cluster CA
// and the server's name, through the API client's connection pool (api.ts). It passes
// requests through as they are: it never adds or removes an ACL token (the user logs
// in), streams bodies both ways (blocking queries hold for minutes), and forbids caching.
//
// It follows the cluster: when the node it uses stops answering, it moves to another
// running node that serves the service, and says so.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { Dispatcher } from "undici";
import { ResinError } from "../util/errors.js";
import { dispatcherFor, errorCode, type ApiTls } from "./api.js";

export const UI_SERVICES = ["consul", "nomad", "vault"] as const;
export type UiService = (typeof UI_SERVICES)[number];

/** Where the secret is spent; the products' UIs all live under /ui/. */
export const LOGIN_PATH = "/.resin-ui/login";
export const LANDING_PATH = "/ui/";

// Consul's and Nomad's longest blocking query is 10 minutes, plus up to 1/16 of it in
// jitter; a proxy that gave up sooner would cut the UI's long polls.
export const UPSTREAM_TIMEOUT_MS = 11 * 60_000;

/** One node's API as the proxy reaches it. */
export interface Upstream {
  node: string;
  /** https://127.0.0.1:PORT (the node's forwarded port). */
  url: string;
}

// ---- The one-time secret and the session cookie (pure but for the random bytes) ----

/** Who may come in: the secret until it is spent, then the session the cookie carries. */
export interface Gate {
  port: number;
  secret: string;
  session: string;
  spent: boolean;
}

/** 32 random bytes, URL-safe base64. */
export function randomToken(): string {
  return randomBytes(32).toString("base64url");
}

export function newGate(port: number, secret = randomToken(), session = randomToken()): Gate {
  return { port, secret, session, spent: false };
}

/** The URL that lets the first browser in. */
export function loginUrl(gate: Gate): string {
  return `http://127.0.0.1:${gate.port}${LOGIN_PATH}?secret=${gate.secret}`;
}

/** Cookies belong to a host, not a port: each proxy's cookie is named after its port. */
export function cookieName(port: number): string {
  return `resin_ui_${port}`;
}

export function sessionCookie(gate: Gate): string {
  return `${cookieName(gate.port)}=${gate.session}; Path=/; HttpOnly; SameSite=Strict`;
}

/** A Cookie header's pairs (the first value of a repeated name wins, as browsers send it). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name && !out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/** The Cookie header without the proxy's own cookie, for the agent (undefined when nothing is left). */
export function withoutSessionCookie(header: string | undefined, port: number): string | undefined {
  const name = cookieName(port);
  const rest = (header ?? "")
    .split(";")
    .map((p) => p.trim())
    .filter((p) => p && p.split("=", 1)[0]!.trim() !== name);
  return rest.length ? rest.join("; ") : undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export type Admission =
  | { kind: "pass" }
  | { kind: "login"; location: string; setCookie?: string }
  | { kind: "deny"; why: string };

/**
 * What to do with a request: pass it to the agent, let the browser in (and spend the
 * secret), or refuse it. Spending the secret changes `gate`.
 */
export function admit(gate: Gate, req: { url: string; host?: string; cookie?: string }): Admission {
  // A page on another site that resolves its name to 127.0.0.1 (DNS rebinding) names its own host.
  if (req.host !== `127.0.0.1:${gate.port}` && req.host !== `localhost:${gate.port}`) return { kind: "deny", why: "the request is not addressed to this proxy" };
  const url = new URL(req.url, "http://proxy.invalid");
  const cookie = parseCookies(req.cookie).get(cookieName(gate.port));
  const hasSession = cookie !== undefined && sameSecret(cookie, gate.session);
  if (url.pathname === LOGIN_PATH) {
    if (hasSession) return { kind: "login", location: LANDING_PATH };
    const secret = url.searchParams.get("secret") ?? "";
    if (gate.spent || !sameSecret(secret, gate.secret)) return { kind: "deny", why: "this login link is wrong or was used already" };
    gate.spent = true;
    return { kind: "login", location: LANDING_PATH, setCookie: sessionCookie(gate) };
  }
  return hasSession ? { kind: "pass" } : { kind: "deny", why: "no session: open the URL resin ui printed" };
}

// ---- Choosing the upstream ----

/**
 * The node to use: the current one while it is a candidate and has not failed; else
 * the next candidate after it, in the cluster's order, that has not failed (so a move
 * spreads over the nodes instead of always landing on the first). Undefined: none left.
 */
export function pickUpstream(candidates: Upstream[], current: string | undefined, failed: ReadonlySet<string>): Upstream | undefined {
  const usable = (u: Upstream) => !failed.has(u.node);
  const at = candidates.findIndex((u) => u.node === current);
  if (at >= 0 && usable(candidates[at]!)) return candidates[at];
  const rotated = at >= 0 ? [...candidates.slice(at + 1), ...candidates.slice(0, at)] : candidates;
  return rotated.find(usable);
}

/** A cheap request every agent answers without a token: any HTTP status means it is up. */
export function probePath(service: UiService): string {
  return service === "vault" ? "/v1/sys/health" : "/v1/status/leader";
}

// ---- The proxy itself (I/O) ----

export interface UiProxyOptions {
  service: UiService;
  /** 0: a free port. */
  port: number;
  tls: ApiTls;
  /** The running nodes that serve the service, in the cluster's order; asked again at each move. */
  candidates: () => Promise<Upstream[]>;
  /** The first upstream (already checked to answer). */
  first: Upstream;
  /** How often to check that the current node still answers. */
  probeIntervalMs?: number;
  /** Moves between nodes, and requests no node could answer. */
  log: (line: string) => void;
}

export interface UiProxy {
  /** The one-time login URL. */
  url: string;
  port: number;
  current(): Upstream;
  close(): Promise<void>;
}

// Headers about one connection, not the request (RFC 9110 7.6.1), and the ones undici sets.
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate", "host"]);

const CONNECT_FAILURES = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_SOCKET", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_CLOSED"]);

/** Does the upstream answer at all (any HTTP status)? Its failure in words, or undefined. */
export async function probe(dispatcher: Dispatcher, up: Upstream, service: UiService, timeoutMs = 5000): Promise<string | undefined> {
  try {
    const res = await dispatcher.request({ origin: up.url, path: probePath(service), method: "GET", headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    await res.body.dump();
    return undefined;
  } catch (e) {
    const c = errorCode(e);
    return c ? `${(e as Error).message} (${c})` : (e as Error).message;
  }
}

export async function startUiProxy(opts: UiProxyOptions): Promise<UiProxy> {
  const dispatcher = dispatcherFor(opts.tls);
  let current = opts.first;
  let moving: Promise<void> | undefined;
  let closed = false;
  // Made once the port is known (the cookie is named after it).
  let gate: Gate | undefined;

  // Move off `from` (which failed): the next running node that answers. One move at a time.
  const moveFrom = (from: Upstream, why: string): Promise<void> => {
    if (current.node !== from.node) return Promise.resolve();
    moving ??= (async () => {
      const started = Date.now();
      const failed = new Set([from.node]);
      const candidates = await opts.candidates().catch(() => [] as Upstream[]);
      for (;;) {
        const next = pickUpstream(candidates, from.node, failed);
        if (!next) {
          opts.log(`resin ui: ${opts.service} on ${from.node} stopped answering (${why}); no other running node answers: still trying ${from.node}`);
          return;
        }
        if ((await probe(dispatcher, next, opts.service)) === undefined) {
          current = next;
          opts.log(`resin ui: ${opts.service} on ${from.node} stopped answering (${why}); now through ${next.node} (moved in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
          return;
        }
        failed.add(next.node);
      }
    })().finally(() => {
      moving = undefined;
    });
    return moving;
  };

  // Between requests too, so that the move happens before the user clicks.
  const interval = opts.probeIntervalMs ?? 2000;
  let timer: NodeJS.Timeout | undefined;
  const watch = async () => {
    if (closed) return;
    const up = current;
    const failure = await probe(dispatcher, up, opts.service);
    if (failure && !closed) await moveFrom(up, failure);
    if (!closed) timer = setTimeout(watch, interval);
  };
  timer = setTimeout(watch, interval);

  const forward = async (req: IncomingMessage, res: ServerResponse, up: Upstream, retry: boolean): Promise<void> => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || name === "cookie") continue;
      headers[name] = value;
    }
    const cookie = withoutSessionCookie(req.headers.cookie, gate!.port);
    if (cookie) headers.cookie = cookie;
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    let upstream: Dispatcher.ResponseData;
    try {
      upstream = await dispatcher.request({
        origin: up.url,
        path: req.url ?? "/",
        method: (req.method ?? "GET") as Dispatcher.HttpMethod,
        headers,
        body: hasBody ? req : undefined,
        signal: abort.signal,
        headersTimeout: UPSTREAM_TIMEOUT_MS,
        bodyTimeout: UPSTREAM_TIMEOUT_MS,
      });
    } catch (e) {
      if (abort.signal.aborted) return; // the browser went away first
      const c = errorCode(e);
      if (CONNECT_FAILURES.has(c)) {
        await moveFrom(up, `${c}`);
        // A request without a body can be sent again as it was, to the node now in use.
        if (retry && !hasBody && current.node !== up.node) return forward(req, res, current, false);
      }
      opts.log(`resin ui: ${req.method} ${req.url?.split("?")[0]} through ${up.node} failed: ${(e as Error).message}${c ? ` (${c})` : ""}`);
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(`resin ui: ${opts.service} on ${up.node} did not answer\n`);
      return;
    }
    const out: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(upstream.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      out[name] = value;
    }
    out["cache-control"] = "no-store";
    res.writeHead(upstream.statusCode, out);
    // Headers go out at once; the body streams as the agent sends it.
    res.flushHeaders();
    try {
      await pipeline(upstream.body, res);
    } catch {
      // the browser closed the connection (a long poll it no longer needs), or the node went away mid-body
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const decision: Admission = gate ? admit(gate, { url: req.url ?? "/", host: req.headers.host, cookie: req.headers.cookie }) : { kind: "deny", why: "not ready" };
    if (decision.kind === "deny") {
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.end(`resin ui: forbidden: ${decision.why}\n`);
      req.resume();
      return;
    }
    if (decision.kind === "login") {
      res.writeHead(303, { location: decision.location, "cache-control": "no-store", ...(decision.setCookie ? { "set-cookie": decision.setCookie } : {}) });
      res.end();
      req.resume();
      return;
    }
    void forward(req, res, current, true);
  };

  const server: Server = createServer(handle);
  // No limit on how long a request may take: blocking queries are long by design.
  server.requestTimeout = 0;
  server.timeout = 0;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EADDRINUSE") reject(new ResinError(`127.0.0.1:${opts.port} is in use`, "choose another --port, or leave --port out to take a free one"));
      else if (e.code === "EACCES") reject(new ResinError(`127.0.0.1:${opts.port} may not be listened on by this user`, "choose a --port above 1023, or leave --port out"));
      else reject(e);
    });
    server.listen(opts.port, "127.0.0.1", () => {
      const addr = server.address();
      resolve(typeof addr === "object" && addr ? addr.port : opts.port);
    });
  }).catch((e: unknown) => {
    closed = true;
    clearTimeout(timer);
    throw e;
  });
  gate = newGate(port);

  return {
    url: loginUrl(gate),
    port,
    current: () => current,
    async close() {
      closed = true;
      clearTimeout(timer);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
