// `resin env`: export lines that point the stock consul, nomad and vault CLIs at a
// cluster, so that `eval "$(resin env)"` just works. The host's client certificate and
// the CA are written (0600) into the cluster's state directory for them to read.
// `resin env --ui` prints only the read-only Consul token, to log in to the web UI with
// (`resin ui`).
import { writeHostTls } from "../bootstrap/host-tls.js";
import { readSecrets } from "../bootstrap/secrets.js";
import { clusterPaths, requireCluster, type NodeState } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import { ResinError } from "../util/errors.js";

const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

export async function envCommand(cluster: string, opts: { ui?: boolean } = {}): Promise<string> {
  const state = await requireCluster(cluster);
  const secrets = await readSecrets(clusterPaths(cluster).secrets);
  if (opts.ui) {
    if (!secrets.consul.uiToken) throw new ResinError(`cluster '${cluster}' has no read-only UI token yet`, `\`resin up --name ${cluster}\` creates it (the cluster's other secrets stay as they are)`);
    return `${secrets.consul.uiToken}\n`;
  }
  const { ca, cert, key } = await writeHostTls(cluster, secrets);

  // Any running node will do: each forwards its own API ports to 127.0.0.1.
  const machines = localMachines();
  const running: NodeState[] = [];
  for (const node of state.nodes) if ((await machines.status(cluster, node)).state === "running") running.push(node);
  const port = (name: string) => running.map((n) => n.ports[name]).find(Boolean);
  const consul = port("consul.https");
  const nomad = port("nomad.https");
  const vault = port("vault.https");
  if (!consul && !nomad && !vault) throw new ResinError(`cluster '${cluster}' has no running node`, `start it with: resin up --name ${cluster}`);

  const lines: [string, string][] = [];
  if (consul) {
    lines.push(["CONSUL_HTTP_ADDR", `https://127.0.0.1:${consul}`], ["CONSUL_HTTP_SSL", "true"], ["CONSUL_HTTP_TOKEN", secrets.consul.managementToken]);
    lines.push(["CONSUL_CACERT", ca], ["CONSUL_CLIENT_CERT", cert], ["CONSUL_CLIENT_KEY", key]);
  }
  if (nomad) {
    lines.push(["NOMAD_ADDR", `https://127.0.0.1:${nomad}`], ["NOMAD_TOKEN", secrets.nomad.bootstrapSecret]);
    lines.push(["NOMAD_CACERT", ca], ["NOMAD_CLIENT_CERT", cert], ["NOMAD_CLIENT_KEY", key]);
  }
  if (vault) {
    lines.push(["VAULT_ADDR", `https://127.0.0.1:${vault}`], ["VAULT_CACERT", ca], ["VAULT_CLIENT_CERT", cert], ["VAULT_CLIENT_KEY", key]);
    if (secrets.vault) lines.push(["VAULT_TOKEN", secrets.vault.rootToken]);
  }
  return `${lines.map(([k, v]) => `export ${k}=${quote(v)}`).join("\n")}\n`;
}
