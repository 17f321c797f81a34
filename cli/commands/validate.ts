// `resin validate`: load every role on every channel it can be built on, and report
// every mistake (file, line, field, fix) instead of stopping at the first.
import { listRoles, loadRole } from "../spec/load.js";
import { CHANNELS, type Channel } from "../spec/schema.js";
import { ResinError } from "../util/errors.js";

export interface RoleValidity {
  role: string;
  channels: Channel[];
  errors: string[];
}

export async function validateRoles(project: string, names?: string[]): Promise<RoleValidity[]> {
  const roles = names?.length ? names : await listRoles(project);
  const results: RoleValidity[] = [];
  for (const role of roles) {
    const result: RoleValidity = { role, channels: [], errors: [] };
    const channelErrors: string[] = [];
    for (const channel of CHANNELS) {
      try {
        await loadRole(project, role, channel);
        result.channels.push(channel);
      } catch (e) {
        if (!(e instanceof ResinError)) throw e;
        // A service without this channel only narrows where the role builds; anything else is a mistake.
        if (/has no '\w+' channel/.test(e.message)) channelErrors.push(e.message);
        else if (!result.errors.includes(e.message)) result.errors.push(e.message);
      }
    }
    if (result.channels.length === 0 && result.errors.length === 0) result.errors.push(...channelErrors);
    results.push(result);
  }
  return results;
}

export function formatValidity(results: RoleValidity[]): string {
  return results
    .map((r) => (r.errors.length ? r.errors.join("\n") : `ok: ${r.role} (channels: ${r.channels.join(", ")})`))
    .join("\n");
}
