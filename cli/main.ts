#!/usr/bin/env node
// The resin command line: argument parsing and error reporting only; each command's
// work is in cli/commands/, which wires the pipeline stages together.
import { Command, InvalidArgumentError, Option } from "commander";
import { CHANNELS, type Channel } from "./spec/schema.js";
import { offlineByDefault } from "./commands/build.js";
import { buildRoles } from "./commands/build.js";
import { up } from "./commands/up.js";
import { clusterStatus, formatStatus } from "./commands/status.js";
import { down } from "./commands/down.js";
import { registerArtifactsCommand } from "./commands/artifacts.js";
import { ResinError } from "./util/errors.js";
import { projectRoot } from "./util/paths.js";
import { stderrLog } from "./util/log.js";

const DEFAULT_CLUSTER = "resin";

const channelOption = () =>
  new Option("--channel <channel>", "where Consul, Nomad and Vault come from: verified official releases, or Debian's packages (Consul 1.8.7 only)")
    .choices(CHANNELS)
    .default("official");
const offlineOption = () => new Option("--offline", "never download; use only cached artifacts (also RESIN_OFFLINE=1)");

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("must be a whole number");
  return n;
}

const program = new Command()
  .name("resin")
  .description("Immutable images and local clusters for the HashiCorp stack.\nRoles are in machines/*.yml, service images in services/*/.")
  .showHelpAfterError();

program
  .command("build")
  .description("build bootable images (kernel + initramfs + manifest) for roles; all roles when none are named")
  .argument("[roles...]", "role names from machines/*.yml")
  .addOption(channelOption())
  .addOption(offlineOption())
  .option("--update-lock", "re-resolve every Debian package to the newest version and rewrite resin.lock.json")
  .action(async (roles: string[], opts: { updateLock?: boolean; channel: Channel; offline?: boolean }) => {
    await buildRoles({ project: projectRoot(), roles, channel: opts.channel, offline: opts.offline || offlineByDefault(), updateLock: opts.updateLock, log: stderrLog });
  });

program
  .command("up")
  .description("start a local cluster in QEMU (created on first use, restarted as it was afterwards) and wait for quorum")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--nodes <n>", "number of nodes for a new cluster", integer)
  .option("--role <role>", "role of every node of a new cluster", "consul-server")
  .addOption(channelOption())
  .addOption(offlineOption())
  .option("--timeout <seconds>", "give up waiting for quorum after this long", integer, 300)
  .action(async (opts: { name: string; nodes?: number; role: string; timeout: number; channel: Channel; offline?: boolean }) => {
    await up({
      project: projectRoot(),
      name: opts.name,
      role: opts.role,
      channel: opts.channel,
      offline: opts.offline || offlineByDefault(),
      nodes: opts.nodes ?? 3,
      nodesGiven: opts.nodes !== undefined,
      timeoutMs: opts.timeout * 1000,
      log: stderrLog,
    });
  });

program
  .command("status")
  .description("show each node's VM state and Consul leader and raft peers")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--json", "print machine-readable JSON on stdout")
  .action(async (opts: { name: string; json?: boolean }) => {
    const status = await clusterStatus(opts.name);
    process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`);
    if (!status.healthy) process.exitCode = 3;
  });

program
  .command("down")
  .description("stop every VM and the network switch of a cluster; its disks and secrets are kept")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--purge", "also delete the cluster's state: persist disks, secrets, logs")
  .action(async (opts: { name: string; purge?: boolean }) => {
    await down({ name: opts.name, purge: !!opts.purge, log: stderrLog });
  });

registerArtifactsCommand(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof ResinError) {
    process.stderr.write(`resin: ${e.message}\n${e.hint ? `  ${e.hint.replace(/\n/g, "\n  ")}\n` : ""}`);
    process.exit(1);
  }
  process.stderr.write(`resin: internal error: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(2);
});
