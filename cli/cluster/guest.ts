// The node's own status endpoint (busybox httpd + CGI inside the guest, reached
// through its forwarded port): supervised services, their logs, and runit commands.
import { request } from "undici";

export interface GuestService {
  name: string;
  /** up, down, restarting (runit is between a stop and the next start), unknown */
  state: string;
  pid: number | null;
  uptimeSeconds: number | null;
  /** How often the service exited since boot (runit started it again each time). */
  restarts: number;
}

export interface GuestStatus {
  boot: string;
  services: GuestService[];
}

const base = (port: number) => `http://127.0.0.1:${port}/cgi-bin`;

export async function guestStatus(port: number, timeoutMs = 10_000): Promise<GuestStatus | { error: string }> {
  try {
    const res = await request(`${base(port)}/status`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { error: `status endpoint answered ${res.statusCode}` };
    return JSON.parse(text) as GuestStatus;
  } catch (e) {
    return { error: (e as Error).message || "status endpoint not answering" };
  }
}

/** Ask runit on the node to restart, term or kill one service. */
export async function guestSv(port: number, service: string, command: "restart" | "term" | "kill"): Promise<void> {
  const res = await request(`${base(port)}/sv?service=${encodeURIComponent(service)}&command=${command}`, { method: "POST" });
  const body = JSON.parse(await res.body.text()) as { ok: boolean; error?: string };
  if (!body.ok) throw new Error(body.error ?? "the node refused the command");
}

export async function guestLog(port: number, service: string, lines = 200): Promise<string> {
  const res = await request(`${base(port)}/log?service=${encodeURIComponent(service)}&lines=${lines}`);
  return res.body.text();
}
