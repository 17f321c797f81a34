// `resin ui`: a cluster's web UI in the browser, through the local proxy of
// cluster/ui-proxy.ts. This file checks the input, finds the nodes that serve the
// service, prints the one-time URL, opens a browser, and stops on Ctrl-C.
import { spawn } from "node:child_process";
import { readSecrets, type Secrets } from "../bootstrap/secrets.js";
import { dispatcherFor, hostTls } from "../cluster/api.js";
import { probe, startUiProxy, UI_SERVICES, type UiService, type Upstream } from "../cluster/ui-proxy.js";
import { localMachines } from "../provider/local.js";
import { requireNode, type ClusterHandle } from "../state/state.js";
import { ResinError } from "../util/errors.js";
import { consulServerName } from "../cluster/consul.js";
import { nomadServerName } from "../cluster/bootstrap.js";
import { VAULT_TLS_SERVER_NAME } from "../bootstrap/pki.js";
import type { Log } from "../util/log.js";
import { onPath } from "../util/tools.js";

export interface UiOptions {
  cluster: ClusterHandle;
  service: string;
  node?: string;
  port: number;
  /** Open a browser (false with --no-open). */
  open: boolean;
  printToken?: boolean;
  log: Log;
  /** Resolves when the proxy should stop (default: SIGINT or SIGTERM). */
  until?: Promise<unknown>;
}

const PRODUCT: Record<UiService, string> = { consul: "Consul", nomad: "Nomad", vault: "Vault" };

/** Which token gives full access to the service's UI, if the host has it. */
function managementToken(service: UiService, secrets: Secrets): string | undefined {
  if (service === "consul") return secrets.consul.managementToken;
  if (service === "nomad") return secrets.nomad.bootstrapSecret;
  return secrets.vault?.rootToken;
}

/**
 * Whether the node serves the product's UI as a server: the UI is where one logs in with
 * the management token, so it goes through servers only (a Consul or Nomad client agent
 * runs where workloads run), each checked by the name only its servers carry.
 */
function servesAsServer(service: UiService, secrets: Secrets, node: string): boolean {
  const certs = secrets.nodes[node];
  if (service === "vault") return !!certs?.vault;
  return certs?.[service]?.role === "server";
}

function serverName(service: UiService, datacenter: string): string {
  if (service === "consul") return consulServerName(datacenter);
  if (service === "nomad") return nomadServerName();
  return VAULT_TLS_SERVER_NAME;
}

/** The running servers of the cluster for the service, in the cluster's order (read afresh each time). */
async function runningUpstreams(cluster: ClusterHandle, service: UiService, secrets: Secrets): Promise<Upstream[]> {
  const state = await cluster.require();
  const machines = localMachines();
  const out: Upstream[] = [];
  for (const node of state.nodes) {
    const port = node.ports[`${service}.https`];
    if (port && servesAsServer(service, secrets, node.name) && (await machines.status(cluster, node)).state === "running") out.push({ node: node.name, url: `https://127.0.0.1:${port}` });
  }
  return out;
}

export async function uiCommand(opts: UiOptions): Promise<void> {
  if (!(UI_SERVICES as readonly string[]).includes(opts.service)) {
    throw new ResinError(`unknown service '${opts.service}' for --service`, `resin ui serves the web UI of: ${UI_SERVICES.join(", ")}`);
  }
  const service = opts.service as UiService;
  if (opts.port < 0 || opts.port > 65535) throw new ResinError(`--port ${opts.port} is not a TCP port`, "give 1-65535, or leave --port out to take a free one");
  const { cluster } = opts;
  const state = await cluster.require();
  const secrets = await readSecrets(cluster.secrets);
  const running = state.nodes.filter((n) => n.ports[`${service}.https`]).map((n) => n.name);
  const serving = running.filter((n) => servesAsServer(service, secrets, n));
  if (opts.node !== undefined) {
    requireNode(state, opts.node);
    if (!serving.includes(opts.node)) {
      const why = running.includes(opts.node) ? `node ${opts.node} is a ${PRODUCT[service]} client, not a server` : `node ${opts.node} does not run ${service}`;
      throw new ResinError(why, serving.length ? `the UI goes through servers: ${serving.join(", ")}` : `no node of cluster '${cluster.name}' runs ${service} as a server`);
    }
  }
  if (serving.length === 0) throw new ResinError(`no node of cluster '${cluster.name}' runs ${service} as a server`, `its nodes' roles: ${[...new Set(state.nodes.map((n) => n.role))].join(", ")}`);

  // Each product's UI is checked against that product's CA and the name only its servers
  // carry, with the host's certificate for it.
  const tls = hostTls(secrets, service, serverName(service, state.datacenter));
  const candidates = await runningUpstreams(cluster, service, secrets);
  if (opts.node !== undefined && !candidates.some((u) => u.node === opts.node)) {
    throw new ResinError(`node ${opts.node} is not running`, `start it with: resin start ${opts.node} --name ${cluster.name}, or leave --node out`);
  }
  // The node asked for, else the first running one that answers.
  const dispatcher = dispatcherFor(tls);
  const order = opts.node ? candidates.filter((u) => u.node === opts.node) : candidates;
  let first: Upstream | undefined;
  const failures: string[] = [];
  for (const up of order) {
    const failure = await probe(dispatcher, up, service);
    if (failure === undefined) {
      first = up;
      break;
    }
    failures.push(`${up.node}: ${failure}`);
  }
  if (!first) {
    throw new ResinError(
      candidates.length ? `${PRODUCT[service]} does not answer on ${order.map((u) => u.node).join(", ")} (${failures.join("; ")})` : `no node of cluster '${cluster.name}' that runs ${service} is running`,
      `check the cluster with: resin status --name ${cluster.name}; start it with: resin up --name ${cluster.name}`,
    );
  }

  const proxy = await startUiProxy({ service, port: opts.port, tls, first, candidates: () => runningUpstreams(cluster, service, secrets), log: opts.log });
  try {
    process.stdout.write(`${proxy.url}\n`);
    opts.log(`resin ui: ${PRODUCT[service]}'s UI of cluster '${cluster.name}' through ${first.node}, on 127.0.0.1:${proxy.port} only; the link works once, in one browser; Ctrl-C stops it`);
    if (service === "consul") opts.log(`  log in with the read-only token: resin env --ui --name ${cluster.name}${opts.printToken ? "" : " (full access: --print-token)"}`);
    else opts.log(`  log in with a ${PRODUCT[service]} token${opts.printToken ? "" : " (the management one: --print-token)"}`);
    if (opts.printToken) {
      const token = managementToken(service, secrets);
      opts.log(token ? `  management token (full access): ${token}` : `  the host keeps no ${PRODUCT[service]} management token yet (Vault's root token exists once Vault is initialised)`);
    }
    if (opts.open) openBrowser(proxy.url, opts.log);
    await (opts.until ?? interrupted());
  } finally {
    await proxy.close();
  }
  opts.log("resin ui: stopped");
}

/** xdg-open (the desktop's own choice of browser), when there is one; the URL is printed either way. */
function openBrowser(url: string, log: Log): void {
  if (!onPath("xdg-open")) {
    log("  no browser found (xdg-open): open the URL above yourself");
    return;
  }
  const child = spawn("xdg-open", [url], { stdio: "ignore", detached: true });
  child.on("error", (e) => log(`  could not open a browser (${e.message}): open the URL above yourself`));
  child.unref();
}

function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
