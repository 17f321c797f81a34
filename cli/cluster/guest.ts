// The node's own status endpoint (busybox httpd + CGI inside the guest, reached
// through its forwarded port): supervised services, their logs, and runit commands.
import { request } from "undici";
import { printable } from "../util/text.js";
import { ResinError } from "../util/errors.js";

export interface GuestService {
  name: string;
  /** up, down, restarting (runit is between a stop and the next start), unknown */
  state: string;
  pid: number | null;
  uptimeSeconds: number | null;
  /** How often the service exited since boot (runit started it again each time). */
  restarts: number;
}

/** One step of the node's boot timeline: the guest's uptime when boot first reached it. */
export interface TimelineStep {
  step: string;
  uptimeSeconds: number;
}

export interface GuestStatus {
  boot: string;
  /** The guest's uptime when it answered. */
  uptimeSeconds: number | null;
  /** kernel → /init, modules, root, stage 1's steps, service starts, first leader (services/base/timeline.sh). */
  timeline: TimelineStep[];
  services: GuestService[];
}

const base = (port: number) => `http://127.0.0.1:${port}/cgi-bin`;

export async function guestStatus(port: number, timeoutMs = 10_000): Promise<GuestStatus | { error: string }> {
  try {
    const res = await request(`${base(port)}/status`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { error: `status endpoint answered ${res.statusCode}` };
    // What a guest says reaches the terminal: keep only printable text.
    const status = JSON.parse(text) as Partial<GuestStatus>;
    // Images from before the timeline send neither uptime nor timeline.
    const timeline = (status.timeline ?? [])
      .filter((t) => typeof t.uptimeSeconds === "number" && Number.isFinite(t.uptimeSeconds))
      .map((t) => ({ step: printable(String(t.step)), uptimeSeconds: t.uptimeSeconds }));
    return {
      boot: printable(String(status.boot)),
      uptimeSeconds: typeof status.uptimeSeconds === "number" ? status.uptimeSeconds : null,
      timeline,
      services: (status.services ?? []).map((s) => ({ ...s, name: printable(String(s.name)), state: printable(String(s.state)) })),
    };
  } catch (e) {
    return { error: (e as Error).message || "status endpoint not answering" };
  }
}

/**
 * Ask runit on the node to restart, term or kill one service. Control and logs need the
 * node's status token (statusToken in cli/bootstrap/node-secrets.ts), sent as a bearer token.
 */
export async function guestSv(port: number, token: string, service: string, command: "restart" | "term" | "kill"): Promise<void> {
  const res = await request(`${base(port)}/sv?service=${encodeURIComponent(service)}&command=${command}`, { method: "POST", headers: auth(token) });
  const text = await res.body.text();
  let body: { ok?: boolean; error?: string } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: reported below
  }
  if (res.statusCode !== 200 || !body.ok) throw new ResinError(`the node refused to ${command} ${service}: ${printable(body.error ?? `HTTP ${res.statusCode}`)}`);
}

export async function guestLog(port: number, token: string, service: string, lines = 200): Promise<string> {
  const res = await request(`${base(port)}/log?service=${encodeURIComponent(service)}&lines=${lines}`, { headers: auth(token) });
  const text = printable(await res.body.text());
  if (res.statusCode !== 200) throw new ResinError(`the node refused to show the log of ${service}: HTTP ${res.statusCode} ${text.trim()}`);
  return text === "" || text.endsWith("\n") ? text : `${text}\n`;
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` });
