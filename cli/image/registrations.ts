// What a role's services ask of the node beyond their files, rendered at build time:
// the Consul service definitions its agent registers (with their health checks), and
// the kernel parameters stage 1 sets. Pure: specs in, file contents out.
import type { Role, Service } from "../spec/load.js";
import type { OptionValue } from "../spec/schema.js";
import { canonicalJson } from "../util/hash.js";

/**
 * Where the definitions go. Consul's run script copies them to /run/consul/50-services.json
 * with the node's own agent token in place of AGENT_TOKEN_PLACEHOLDER: Consul registers a
 * service from a config file with the service's `token`, else the anonymous token (never
 * acl.tokens.agent), and the image cannot know the node's token.
 */
export const CONSUL_SERVICES_FILE = "usr/lib/resin/consul/services.json";
export const AGENT_TOKEN_PLACEHOLDER = "@resin-agent-token@";
/** "key value" lines for services/base/sysctl. */
export const SYSCTL_FILE = "etc/resin/sysctl";

/**
 * Consul service definitions (JSON, read alike by Consul 1.8 and current Consul) for
 * every `consul.services` entry of the role's services, or undefined when there are none.
 * Checks run on the node itself, against the service's port on 127.0.0.1; each
 * definition carries the placeholder for the node's own token (see CONSUL_SERVICES_FILE).
 */
export function consulServiceDefinitions(services: Service[]): string | undefined {
  const defs = services.flatMap((s) =>
    (s.consul?.services ?? []).map((c) => ({
      name: c.name,
      id: c.name,
      port: s.ports[c.port]!,
      tags: c.tags,
      meta: { "resin-service": s.name },
      token: AGENT_TOKEN_PLACEHOLDER,
      checks: c.checks.map((check) => {
        if ("tcp" in check) return { name: `${c.name}: tcp ${s.ports[check.tcp]}`, tcp: `127.0.0.1:${s.ports[check.tcp]}`, interval: check.interval, timeout: "2s" };
        if ("http" in check) return { name: `${c.name}: http ${s.ports[check.http]}${check.path}`, http: `http://127.0.0.1:${s.ports[check.http]}${check.path}`, interval: check.interval, timeout: "2s" };
        return { name: `${c.name}: https ${s.ports[check.https]}${check.path}`, http: `https://127.0.0.1:${s.ports[check.https]}${check.path}`, tls_skip_verify: check.tls_skip_verify, interval: check.interval, timeout: "2s" };
      }),
    })),
  );
  return defs.length ? `${canonicalJson({ services: defs })}\n` : undefined;
}

/** The names the role's agent registers: what its token may write, and nothing more. */
export function consulServiceNames(services: Pick<Service, "consul">[]): string[] {
  return services.flatMap((s) => (s.consul?.services ?? []).map((c) => c.name)).sort();
}

/** The role's kernel parameters: its services' in their order, the role's own over them; sorted by key. */
export function sysctlLines(role: Pick<Role, "services"> & { spec: { sysctl: Record<string, OptionValue> } }): string | undefined {
  const merged: Record<string, string> = {};
  for (const s of role.services) for (const [k, v] of Object.entries(s.sysctl)) merged[k] = String(v);
  for (const [k, v] of Object.entries(role.spec.sysctl)) merged[k] = String(v);
  const keys = Object.keys(merged).sort();
  return keys.length ? keys.map((k) => `${k} ${merged[k]}\n`).join("") : undefined;
}
