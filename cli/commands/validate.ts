// `resin validate`: load every role on every channel it can be built on, and report
// every mistake (file, line, field, fix) instead of stopping at the first; for a role
// that loads, say where it and each of its services come from (the project or stock).
import { listRoles, loadRole, shownPath, type Origin, type Role } from "../spec/load.js";
import { CHANNELS, type Channel } from "../spec/schema.js";
import { ResinError } from "../util/errors.js";
import { formatTable } from "../util/table.js";

export interface SpecOrigin {
  name: string;
  origin: Origin;
  file: string;
}

export interface RoleValidity {
  role: string;
  channels: Channel[];
  errors: string[];
  /** Where the role's file is, and each of its services', as the first channel it builds on loads them. */
  from?: SpecOrigin;
  services: SpecOrigin[];
}

export async function validateRoles(project: string, names?: string[], stock?: string): Promise<RoleValidity[]> {
  const roles = names?.length ? names : await listRoles(project, stock);
  const results: RoleValidity[] = [];
  for (const role of roles) {
    const result: RoleValidity = { role, channels: [], errors: [], services: [] };
    const channelErrors: string[] = [];
    for (const channel of CHANNELS) {
      try {
        const loaded: Role = await loadRole(project, role, channel, stock);
        result.channels.push(channel);
        result.from ??= { name: role, origin: loaded.origin, file: loaded.file };
        for (const s of loaded.services) if (!result.services.some((x) => x.name === s.name)) result.services.push({ name: s.name, origin: s.origin, file: s.file });
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
    .map((r) => {
      if (r.errors.length) return r.errors.join("\n");
      const rows = r.services.map((s) => [`  ${s.name}`, s.origin, shownPath(s.file)]);
      return `ok: ${r.role} (channels: ${r.channels.join(", ")}; ${r.from!.origin} ${shownPath(r.from!.file)})\n${formatTable(rows)}`;
    })
    .join("\n");
}
