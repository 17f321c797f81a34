// `resin env`: export lines that point the stock consul, nomad and vault CLIs at a
// cluster, so that `eval "$(resin env)"` just works. Per product, the host's client
// certificate and that product's CA are written (0600) into the cluster's state
// directory for them to read. The management tokens point only at servers, and each CLI
// checks the server by the name only its servers' certificates carry
// (CONSUL_TLS_SERVER_NAME, NOMAD_TLS_SERVER_NAME, VAULT_TLS_SERVER_NAME).
// `resin env --ui` prints only the read-only Consul token, to log in to the web UI with
// (`resin ui`).
import { writeHostTls } from "../bootstrap/host-tls.js";
import { readSecrets } from "../bootstrap/secrets.js";
import type { ClusterHandle, NodeState } from "../state/state.js";
import { localMachines } from "../provider/local.js";
import type { Machines } from "../provider/machine.js";
import { ResinError } from "../util/errors.js";
import { consulServerName } from "../cluster/consul.js";
import { nomadServerName } from "../cluster/bootstrap.js";
import { VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";

const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

export async function envCommand(cluster: ClusterHandle, opts: { ui?: boolean } = {}, machines: Pick<Machines, "status"> = localMachines()): Promise<string> {
  const state = await cluster.require();
  const secrets = await readSecrets(cluster.secrets);
  if (opts.ui) {
    if (!secrets.consul.uiToken) throw new ResinError(`cluster '${cluster.name}' has no read-only UI token yet`, `\`resin up --name ${cluster.name}\` creates it (the cluster's other secrets stay as they are)`);
    return `${secrets.consul.uiToken}\n`;
  }
  const tls = await writeHostTls(cluster, secrets);

  // A running server of each product will do: each forwards its own API ports to 127.0.0.1.
  const running: NodeState[] = [];
  for (const node of state.nodes) if ((await machines.status(cluster, node)).state === "running") running.push(node);
  const port = (name: string, server: (n: NodeState) => boolean) => running.filter(server).map((n) => n.ports[name]).find(Boolean);
  const consul = port("consul.https", (n) => secrets.nodes[n.name]?.consul?.role === "server");
  const nomad = port("nomad.https", (n) => secrets.nodes[n.name]?.nomad?.role === "server");
  const vault = port("vault.https", (n) => !!secrets.nodes[n.name]?.vault);
  if (!consul && !nomad && !vault) throw new ResinError(`cluster '${cluster.name}' has no running server`, `start it with: resin up --name ${cluster.name}`);

  const lines: [string, string][] = [];
  if (consul) {
    lines.push(["CONSUL_HTTP_ADDR", `https://127.0.0.1:${consul}`], ["CONSUL_HTTP_SSL", "true"], ["CONSUL_TLS_SERVER_NAME", consulServerName(state.datacenter)]);
    lines.push(["CONSUL_HTTP_TOKEN", secrets.consul.managementToken]);
    lines.push(["CONSUL_CACERT", tls.consul.ca], ["CONSUL_CLIENT_CERT", tls.consul.cert], ["CONSUL_CLIENT_KEY", tls.consul.key]);
  }
  if (nomad) {
    lines.push(["NOMAD_ADDR", `https://127.0.0.1:${nomad}`], ["NOMAD_TLS_SERVER_NAME", nomadServerName()], ["NOMAD_TOKEN", secrets.nomad.bootstrapSecret]);
    lines.push(["NOMAD_CACERT", tls.nomad.ca], ["NOMAD_CLIENT_CERT", tls.nomad.cert], ["NOMAD_CLIENT_KEY", tls.nomad.key]);
  }
  if (vault) {
    lines.push(["VAULT_ADDR", `https://127.0.0.1:${vault}`], ["VAULT_TLS_SERVER_NAME", VAULT_TLS_SERVER_NAME]);
    lines.push(["VAULT_CACERT", tls.vault.ca], ["VAULT_CLIENT_CERT", tls.vault.cert], ["VAULT_CLIENT_KEY", tls.vault.key]);
    if (secrets.vault) lines.push(["VAULT_TOKEN", secrets.vault.rootToken]);
  }
  return `${lines.map(([k, v]) => `export ${k}=${quote(v)}`).join("\n")}\n`;
}
