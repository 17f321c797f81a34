// The node's own status endpoint (busybox httpd + CGI inside the guest, reached
// through its forwarded port): supervised services, their logs, and runit commands.
import { request } from "undici";
import { z } from "zod";
import { fromOutside, parseOutsideJson, printable } from "../util/text.js";
import { ResinError } from "../util/errors.js";

/** One supervised service as the node's status endpoint reports it (services/base/www/cgi-bin/status). */
export const GuestServiceSchema = z.object({
  name: z.string(),
  /** up, down, restarting (runit is between a stop and the next start), unknown */
  state: z.enum(["up", "down", "restarting", "unknown"]),
  pid: z.number().int().nonnegative().nullable(),
  uptimeSeconds: z.number().int().nonnegative().nullable(),
  /** How often the service exited since boot (runit started it again each time). */
  restarts: z.number().int().nonnegative(),
});
export type GuestService = z.infer<typeof GuestServiceSchema>;

/** One step of the node's boot timeline: the guest's uptime when boot first reached it. */
const TimelineStepSchema = z.object({ step: z.string(), uptimeSeconds: z.number().finite().nonnegative() });
export type TimelineStep = z.infer<typeof TimelineStepSchema>;

/** The status endpoint's answer. Images from before the timeline send neither uptime nor timeline. */
const GuestStatusSchema = z.object({
  boot: z.string(),
  uptimeSeconds: z.number().finite().nonnegative().nullable().default(null),
  timeline: z.array(TimelineStepSchema).default([]),
  services: z.array(GuestServiceSchema).nullable().default([]),
});

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
    // What a guest says reaches the terminal: parsed, and its strings made printable.
    const status = fromOutside(GuestStatusSchema, parseOutsideJson(text, "the node's status"), "the node's status");
    return { ...status, services: status.services ?? [] };
  } catch (e) {
    return { error: printable((e as Error).message) || "status endpoint not answering" };
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
