// `resin bootstrap`: what `resin up` does after quorum, for a cluster that something
// else booted (Terraform on AWS or libvirt): create the Consul agent and Nomad tokens
// the nodes' metadata already names, bootstrap Nomad's ACLs with the cluster's secret,
// initialise and unseal Vault (its keys kept in the cluster's secrets). Reached at the
// servers' addresses; each certificate is checked against the name every server of its
// kind carries, since a DHCP node's certificate cannot name its address.
import { NOMAD_REGION, VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";
import { withUiToken } from "../bootstrap/secrets.js";
import { finishCluster, type ApiTargets } from "../cluster/bootstrap.js";
import { consulAccess } from "../cluster/consul.js";
import type { ClusterHandle } from "../state/state.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";

export interface BootstrapOptions {
  cluster: ClusterHandle;
  /** host or host:port of a Consul server (port 8501), a Nomad server (4646), each Vault server (8200). */
  consul?: string;
  nomad?: string;
  vault: string[];
  log: Log;
}

/** "10.0.1.5" or "10.0.1.5:8501" or "[fd00::5]:8501" → host and port. */
export function parseAddress(value: string, defaultPort: number, flag: string): { host: string; port: number } {
  const m = value.match(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/);
  const port = m?.[2] ? Number(m[2]) : defaultPort;
  if (!m || port < 1 || port > 65535) throw new ResinError(`${flag} ${value} is not an address`, `give host or host:port, e.g. ${flag} 10.0.1.5:${defaultPort}`);
  return { host: m[1]!, port };
}

export async function bootstrapCommand(opts: BootstrapOptions): Promise<void> {
  if (!opts.consul && !opts.nomad && opts.vault.length === 0) {
    throw new ResinError("nothing to bootstrap", "name at least one server: --consul ADDRESS, --nomad ADDRESS or --vault ADDRESS (repeat --vault for each Vault server)");
  }
  const { cluster } = opts;
  const state = await cluster.require();
  const secrets = await withUiToken(cluster.secrets);
  const targets: ApiTargets = { vault: { nodes: [], serverName: VAULT_TLS_SERVER_NAME } };
  if (opts.consul) {
    const { host, port } = parseAddress(opts.consul, 8501, "--consul");
    targets.consul = { host, port, access: consulAccess(secrets, state.datacenter), server: true };
  }
  if (opts.nomad) {
    const { host, port } = parseAddress(opts.nomad, 4646, "--nomad");
    targets.nomad = { url: `https://${host}:${port}`, serverName: `server.${NOMAD_REGION}.nomad` };
  }
  targets.vault.nodes = opts.vault.map((v) => {
    const { host, port } = parseAddress(v, 8200, "--vault");
    return { name: host, url: `https://${host}:${port}` };
  });
  opts.log(`cluster ${cluster.name}: bootstrapping through ${[opts.consul && `Consul ${opts.consul}`, opts.nomad && `Nomad ${opts.nomad}`, ...opts.vault.map((v) => `Vault ${v}`)].filter(Boolean).join(", ")}`);
  await finishCluster(state, secrets, targets, opts.log, cluster);
  opts.log(`cluster ${cluster.name}: bootstrapped`);
}
