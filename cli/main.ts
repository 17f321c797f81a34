#!/usr/bin/env node
// The resin command line: argument parsing and error reporting only; each command's
// work is in cli/commands/, which wires the pipeline stages together.
import { Command, InvalidArgumentError, Option } from "commander";
import { CHANNELS, type Channel } from "./spec/schema.js";
import { buildRoles, offlineByDefault } from "./image/roles.js";
import { requireUpTools, up } from "./commands/up.js";
import { clusterStatus, formatStatus, formatTimeline } from "./commands/status.js";
import { down } from "./commands/down.js";
import { registerArtifactsCommand } from "./commands/artifacts.js";
import { destroyCommand, listCommand, logsCommand, restartCommand, startNodeCommand, stopNodeCommand } from "./commands/lifecycle.js";
import { withClusterLock } from "./state/lock.js";
import { rollbackCommand, upgradeCommand } from "./commands/upgrade.js";
import { envCommand } from "./commands/env.js";
import { uiCommand } from "./commands/ui.js";
import { defaultJoin } from "./bootstrap/plan.js";
import { clusterForNode, clusterHandle, type Network } from "./state/state.js";
import { planCommand } from "./commands/plan.js";
import { checkSecureBootArches, parseArchSpec, parseRoleCounts } from "./cluster/create.js";
import { bootstrapCommand } from "./commands/bootstrap.js";
import { writeFileAtomic } from "./util/files.js";
import { resolve } from "node:path";
import { requireTools } from "./util/tools.js";
import { formatValidity, validateRoles } from "./commands/validate.js";
import { findImage, formatManifest, verifyCommand } from "./commands/inspect.js";
import { ResinError } from "./util/errors.js";
import { projectRoot } from "./util/paths.js";
import { stderrLog } from "./util/log.js";
import { defaultTestRoles, testCommand } from "./commands/test.js";
import { portCommand } from "./commands/port.js";
import { initCommand } from "./commands/init.js";
import { runBuildChecks } from "./bootstrap/build-checks.js";
import { debianTestKey, loadSigningKey, parseSignOption } from "./image/sign.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ARCHES, DEFAULT_ARCH, type Arch } from "./spec/arch.js";

// RESIN_CLUSTER names the cluster when --name is not given (resin test sets it for its scripts).
const DEFAULT_CLUSTER = process.env.RESIN_CLUSTER || "resin";
// Commands about one node find its cluster by the node's name when --name is not given (nor RESIN_CLUSTER).
const nodeClusterOption = () => new Option("--name <name>", "cluster name (default: $RESIN_CLUSTER, else the one cluster that has a node of that name)").default(process.env.RESIN_CLUSTER || undefined);

const channelOption = () =>
  new Option("--channel <channel>", "where Consul, Nomad and Vault come from: verified official releases, or Debian's packages (Consul 1.8.7 only)")
    .choices(CHANNELS)
    .default("official");
// What a new cluster is made of: up and plan take the same.
const nodesOption = () => new Option("--nodes <n>", "number of nodes for a new cluster (default: 3)").argParser(integer);
const roleOption = () => new Option("--role <role>", "role of every node of a new cluster (default: control-plane)");
const rolesOption = () =>
  new Option("--roles <spec>", "a new cluster of several roles, ROLE=COUNT,…, e.g. consul-server=3,nomad-client=2 (instead of --role and --nodes)");
const offlineOption = () => new Option("--offline", "never download; use only cached artifacts (also RESIN_OFFLINE=1)");
// A new cluster's architectures: one for every node, or per role (a mixed cluster).
const clusterArchOption = () =>
  new Option("--arch <spec>", "architecture of a new cluster's nodes: amd64 (default) or arm64 for all, or per role, ROLE=ARCH,…, e.g. consul-server=arm64,nomad-client=amd64 (roles not named: amd64)");
const buildArchOption = () => new Option("--arch <arch>", "the architecture the images are for (arm64 images are written to out/images/<channel>-arm64)").choices(ARCHES).default(DEFAULT_ARCH);

/** Each node's role for a new cluster, from --roles, or --role and --nodes (three control-plane nodes by default). */
function nodeRoles(opts: { role?: string; nodes?: number; roles?: string }): { roles: string[]; given: boolean; rolesGiven: boolean } {
  if (opts.roles !== undefined) {
    if (opts.role !== undefined || opts.nodes !== undefined) throw new ResinError("--roles says every node's role", "drop --role and --nodes, or drop --roles");
    return { roles: parseRoleCounts(opts.roles), given: true, rolesGiven: true };
  }
  return { roles: Array.from({ length: opts.nodes ?? 3 }, () => opts.role ?? "control-plane"), given: opts.nodes !== undefined, rolesGiven: opts.role !== undefined };
}

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError("must be a whole number");
  return n;
}

const program = new Command()
  .name("resin")
  .description("Immutable images and local clusters for the HashiCorp stack.\nRoles are in machines/*.yml, service images in services/*/: the project's own (the nearest directory with machines/, or RESIN_PROJECT) and Resin's stock ones beneath them.")
  .showHelpAfterError();

program
  .command("build")
  .description("build bootable images (kernel, initramfs, squashfs root, manifest) for roles; all roles when none are named")
  .argument("[roles...]", "role names from machines/*.yml")
  .addOption(channelOption())
  .addOption(offlineOption())
  .addOption(buildArchOption())
  .option("--update-lock", "re-resolve every Debian package to the newest version and rewrite resin.lock.json")
  .option("--sign <key,cert>", "sign each unified kernel image (disk.raw, disk.qcow2, disk.iso) for UEFI Secure Boot with this RSA key (PEM, unencrypted) and its certificate (PEM); the manifest records the certificate's SHA-256 fingerprint")
  .action(async (roles: string[], opts: { updateLock?: boolean; channel: Channel; arch: Arch; offline?: boolean; sign?: string }) => {
    // The key pair is checked before anything is built or written.
    const sign = opts.sign !== undefined ? loadSigningKey(parseSignOption(opts.sign)) : undefined;
    if (sign) requireTools(["sbsign", "faketime"]);
    await buildRoles({ project: projectRoot(), roles, channel: opts.channel, arch: opts.arch, offline: opts.offline || offlineByDefault(), updateLock: opts.updateLock, log: stderrLog, check: runBuildChecks, sign });
  });

program
  .command("up")
  .description("start a local cluster in QEMU (created on first use; afterwards starts every node that is not running, leaves running ones alone, on the same host ports) and wait for quorum")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .addOption(nodesOption())
  .addOption(roleOption())
  .addOption(rolesOption())
  .addOption(clusterArchOption())
  .addOption(channelOption())
  .addOption(offlineOption())
  .option("--timeout <seconds>", "give up waiting for quorum after this long", integer, 300)
  .option("--secure-boot", "a new cluster whose nodes boot their image's signed disk (UKI) under OVMF with Secure Boot enforced; the images are signed with Debian's test key pair, which the firmware's variable store has enrolled (amd64 nodes only)")
  .action(async (opts: { name: string; nodes?: number; role?: string; roles?: string; arch?: string; timeout: number; channel: Channel; offline?: boolean; secureBoot?: boolean }) => {
    // Checked before the lock is taken, so that bad input writes nothing at all.
    const cluster = clusterHandle(opts.name);
    const nodes = nodeRoles(opts);
    const arches = parseArchSpec(opts.arch, nodes.roles);
    if (opts.secureBoot) checkSecureBootArches(arches);
    await requireUpTools({ cluster, roles: nodes.roles, arches }, opts.secureBoot);
    // Debian's test key, decrypted for sbsign into a private directory that goes when up ends.
    const keyDir = opts.secureBoot ? await mkdtemp(join(tmpdir(), "resin-secure-boot-")) : undefined;
    const secureBoot = keyDir ? await debianTestKey(keyDir) : undefined;
    await withClusterLock(cluster, "up", () => up({
      project: projectRoot(),
      cluster,
      roles: nodes.roles,
      arches,
      archGiven: opts.arch !== undefined,
      channel: opts.channel,
      offline: opts.offline || offlineByDefault(),
      nodesGiven: nodes.given,
      rolesGiven: nodes.rolesGiven,
      timeoutMs: opts.timeout * 1000,
      secureBoot,
      log: stderrLog,
    })).finally(() => (keyDir ? rm(keyDir, { recursive: true, force: true }) : undefined));
  });

program
  .command("plan")
  .description("create a cluster's images, secrets and per-node metadata without booting anything, and write the manifest a provisioner (Terraform) deploys it from")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .addOption(nodesOption())
  .addOption(roleOption())
  .addOption(rolesOption())
  .addOption(clusterArchOption())
  .addOption(channelOption())
  .addOption(offlineOption())
  .addOption(new Option("--network <mode>", "static: addresses from the plan (libvirt, metal); dhcp: the network assigns them and agents find each other by cloud auto-join (clouds)").choices(["static", "dhcp"]))
  .option("--join <spec>", "cloud auto-join for --network dhcp (default: provider=aws tag_key=resin-cluster tag_value=<name>)")
  .option("--upgrade", "move an existing cluster's nodes to their roles' new images (built now, or from --image-set) for its provisioner to roll out")
  .option("--image-set <dir>", "with --upgrade: take the images from DIR/<role>/ instead of building")
  .option("--json", "print the manifest on stdout")
  .option("--out <file>", "also write the manifest to this file")
  .action(async (opts: { name: string; nodes?: number; role?: string; roles?: string; arch?: string; channel: Channel; offline?: boolean; network?: "static" | "dhcp"; join?: string; upgrade?: boolean; imageSet?: string; json?: boolean; out?: string }) => {
    if (opts.imageSet && !opts.upgrade) throw new ResinError("--image-set is for --upgrade", "add --upgrade, or drop --image-set");
    const cluster = clusterHandle(opts.name);
    if (opts.join && opts.network !== "dhcp") throw new ResinError("--join is for --network dhcp", "add --network dhcp, or drop --join: a static cluster joins by the plan's addresses");
    const network: Network = opts.network === "dhcp" ? { mode: "dhcp", join: opts.join ?? defaultJoin(opts.name) } : { mode: "static" };
    const nodes = nodeRoles(opts);
    const arches = parseArchSpec(opts.arch, nodes.roles);
    const manifest = await withClusterLock(cluster, "plan", () => planCommand({
      project: projectRoot(),
      cluster,
      roles: nodes.roles,
      arches,
      archGiven: opts.arch !== undefined,
      channel: opts.channel,
      offline: opts.offline || offlineByDefault(),
      nodesGiven: nodes.given,
      network,
      networkGiven: opts.network !== undefined,
      upgrade: opts.upgrade,
      imageSet: opts.imageSet ? resolve(opts.imageSet) : undefined,
      log: stderrLog,
    }));
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    if (opts.out) await writeFileAtomic(resolve(opts.out), text);
    if (opts.json) process.stdout.write(text);
  });

program
  .command("bootstrap")
  .description("finish a cluster that something else booted (Terraform): Consul agent and Nomad tokens, Nomad ACL bootstrap, Vault init and unseal, through the servers' addresses")
  .option("--name <name>", "cluster name (as planned with resin plan)", DEFAULT_CLUSTER)
  .option("--consul <address>", "a Consul server, host[:port] (default port 8501)")
  .option("--nomad <address>", "a Nomad server, host[:port] (default port 4646)")
  .option("--vault <address>", "a Vault server, host[:port] (default port 8200); repeat for each", (v: string, all: string[]) => [...all, v], [] as string[])
  .action(async (opts: { name: string; consul?: string; nomad?: string; vault: string[] }) => {
    const cluster = clusterHandle(opts.name);
    await withClusterLock(cluster, "bootstrap", () => bootstrapCommand({ cluster, consul: opts.consul, nomad: opts.nomad, vault: opts.vault, log: stderrLog }));
  });

program
  .command("status")
  .description("show each node's VM state, its supervised services, Consul leader, raft peers and failure tolerance")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--json", "print machine-readable JSON on stdout (it includes each node's boot timeline)")
  .option("--timeline", "also show where each node's boot spent its time: the guest's uptime at each step")
  .action(async (opts: { name: string; json?: boolean; timeline?: boolean }) => {
    const status = await clusterStatus(clusterHandle(opts.name));
    const text = opts.timeline ? `${formatStatus(status)}\n\n${formatTimeline(status)}` : formatStatus(status);
    process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : `${text}\n`);
    if (!status.healthy) process.exitCode = 3;
  });

program
  .command("down")
  .description("stop every VM and the network switch of a cluster; its disks, secrets and logs are kept")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .action(async (opts: { name: string }) => {
    const cluster = clusterHandle(opts.name);
    await withClusterLock(cluster, "down", () => down({ cluster, log: stderrLog }));
  });

program
  .command("stop")
  .description("stop one node cleanly (its disk is kept)")
  .argument("<node>", "node name, e.g. resin-2")
  .addOption(nodeClusterOption())
  .action(async (node: string, opts: { name?: string }) => {
    const cluster = await clusterForNode(node, opts.name);
    await withClusterLock(cluster, `stop ${node}`, () => stopNodeCommand(cluster, node, stderrLog));
  });

program
  .command("start")
  .description("boot one stopped or crashed node again, with its disk and metadata")
  .argument("<node>", "node name")
  .addOption(nodeClusterOption())
  .action(async (node: string, opts: { name?: string }) => {
    const cluster = await clusterForNode(node, opts.name);
    await withClusterLock(cluster, `start ${node}`, () => startNodeCommand(cluster, node, stderrLog));
  });

program
  .command("restart")
  .description("reboot one node's VM, or with --service restart one supervised service inside it")
  .argument("<node>", "node name")
  .addOption(nodeClusterOption())
  .option("--service <service>", "restart only this service (runit restarts it inside the running node)")
  .action(async (node: string, opts: { name?: string; service?: string }) => {
    const cluster = await clusterForNode(node, opts.name);
    await withClusterLock(cluster, `restart ${node}`, () => restartCommand(cluster, node, opts.service, stderrLog));
  });

program
  .command("logs")
  .description("print a node's console log, or with --service that service's log from the node")
  .argument("<node>", "node name")
  .addOption(nodeClusterOption())
  .option("--service <service>", "a supervised service's own log, read from the running node (with the node's status token)")
  .option("-f, --follow", "keep printing the console log as it grows")
  .option("-n, --lines <n>", "how many lines", integer, 200)
  .action(async (node: string, opts: { name?: string; service?: string; follow?: boolean; lines: number }) => {
    await logsCommand(await clusterForNode(node, opts.name), node, opts);
  });

program
  .command("env")
  .description("print export lines for the consul, nomad and vault CLIs, pointed at a running server of each with its CA and server name: eval \"$(resin env)\"")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--ui", "print only Consul's read-only token, to log in to the web UI with (resin ui)")
  .action(async (opts: { name: string; ui?: boolean }) => {
    process.stdout.write(await envCommand(clusterHandle(opts.name), { ui: opts.ui }));
  });

program
  .command("ui")
  .description("open a cluster's web UI (Consul, Nomad or Vault) through a local proxy that speaks mutual TLS to the node: it prints a one-time login URL, follows the cluster across stopped nodes, and runs until Ctrl-C")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--service <service>", "whose UI: consul, nomad or vault", "consul")
  .option("--node <node>", "the node to start with (default: the first running node that serves the service)")
  .option("--port <port>", "the local port on 127.0.0.1 (default: a free one)", integer)
  .option("--no-open", "do not open a browser; only print the URL")
  .option("--print-token", "also print the management token (full access; the read-only one is `resin env --ui`)")
  .action(async (opts: { name: string; service: string; node?: string; port?: number; open: boolean; printToken?: boolean }) => {
    const cluster = clusterHandle(opts.name);
    await uiCommand({ cluster, service: opts.service, node: opts.node, port: opts.port ?? 0, open: opts.open, printToken: opts.printToken, log: stderrLog });
  });

program
  .command("ls")
  .description("list clusters with how many of their nodes run")
  .action(async () => {
    process.stdout.write(`${await listCommand()}\n`);
  });

program
  .command("destroy")
  .description("stop a cluster and delete its state: persist disks, secrets, logs (asks first); only a directory of the clusters directory that holds a cluster")
  .argument("<name>", "cluster name")
  .option("--yes", "do not ask")
  .action(async (name: string, opts: { yes?: boolean }) => {
    const cluster = clusterHandle(name);
    await withClusterLock(cluster, "destroy", () => destroyCommand(cluster, !!opts.yes, stderrLog));
  });

program
  .command("upgrade")
  .description("replace every node with its role's new image, one at a time, gated on cluster health")
  .option("--name <name>", "cluster name", DEFAULT_CLUSTER)
  .option("--image-set <dir>", "take images from DIR/<role>/ (e.g. another checkout's out/images/<channel>) instead of building")
  .option("--dry-run", "show the plan and change nothing")
  .option("--resume", "continue an upgrade that stopped (a failed gate or an interruption): first finish the node it was replacing and start nodes that are not running")
  .option("--gate-timeout <seconds>", "how long one node may take to become healthy", integer, 300)
  .addOption(offlineOption())
  .action(async (opts: { name: string; imageSet?: string; dryRun?: boolean; resume?: boolean; gateTimeout: number; offline?: boolean }) => {
    const cluster = clusterHandle(opts.name);
    const run = () =>
      upgradeCommand({
        project: projectRoot(),
        cluster,
        imageSet: opts.imageSet,
        dryRun: opts.dryRun,
        resume: opts.resume,
        gateTimeoutMs: opts.gateTimeout * 1000,
        offline: opts.offline || offlineByDefault(),
        log: stderrLog,
      });
    await withClusterLock(cluster, "upgrade", run);
  });

program
  .command("rollback")
  .description("boot a node an unfinished upgrade replaced on the image it ran before")
  .argument("<node>", "node name")
  .addOption(nodeClusterOption())
  .option("--gate-timeout <seconds>", "how long the node may take to become healthy", integer, 300)
  .action(async (node: string, opts: { name?: string; gateTimeout: number }) => {
    const cluster = await clusterForNode(node, opts.name);
    await withClusterLock(cluster, `rollback ${node}`, () =>
      rollbackCommand({ project: projectRoot(), cluster, node, gateTimeoutMs: opts.gateTimeout * 1000, log: stderrLog }),
    );
  });

program
  .command("validate")
  .description("check role and service specs; every mistake is reported with file, line, field and fix; for each role, where it and each of its services come from (project or stock)")
  .argument("[roles...]", "role names (default: all of the project's own)")
  .action(async (roles: string[]) => {
    const results = await validateRoles(projectRoot(), roles);
    process.stdout.write(`${formatValidity(results)}\n`);
    if (results.some((r) => r.errors.length)) process.exitCode = 1;
  });

program
  .command("inspect")
  .description("print an image's manifest: digests, packages, releases and every file with its origin")
  .argument("<image>", "a role name (its latest build) or an image directory")
  .addOption(channelOption())
  .addOption(buildArchOption())
  .option("--json", "print the manifest as JSON")
  .option("--verify", "instead, recompute the image's file hashes, digest and dm-verity root hash, and check a signed image's UKI signatures against its certificate (sbverify); name every part that differs and exit 1")
  .action(async (image: string, opts: { channel: Channel; arch: Arch; json?: boolean; verify?: boolean }) => {
    const { dir, manifest } = await findImage(projectRoot(), image, opts.channel, opts.arch);
    if (opts.verify) {
      process.stdout.write(`${await verifyCommand(dir, manifest)}\n`);
      return;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(manifest, null, 2)}\n` : `${formatManifest(dir, manifest)}\n`);
  });

program
  .command("port")
  .description("print where a node's forwarded port is on this host (127.0.0.1:PORT), e.g. resin port web-1 hello.http")
  .argument("<node>", "node name")
  .argument("<service.port>", "a port a service of the node's image declares, e.g. consul.https")
  .addOption(nodeClusterOption())
  .action(async (node: string, key: string, opts: { name?: string }) => {
    process.stdout.write(`${await portCommand(await clusterForNode(node, opts.name), node, key)}\n`);
  });

program
  .command("test")
  .description("build the project's roles, boot a scratch cluster, and test it: healthy, every Consul check passing, every executable in tests/ exiting 0; then tear it down")
  .addOption(rolesOption())
  .addOption(clusterArchOption())
  .addOption(channelOption())
  .addOption(offlineOption())
  .option("--junit <file>", "also write the results as JUnit XML")
  .option("--keep", "leave the cluster running afterwards (it says how to reach and remove it)")
  .option("--timeout <seconds>", "how long the cluster may take to come up", integer, 600)
  .option("--checks-timeout <seconds>", "how long every Consul check may take to pass", integer, 120)
  .option("--script-timeout <seconds>", "how long one tests/ script may run", integer, 300)
  .action(async (opts: { roles?: string; arch?: string; channel: Channel; offline?: boolean; junit?: string; keep?: boolean; timeout: number; checksTimeout: number; scriptTimeout: number }) => {
    const project = projectRoot();
    const roles = opts.roles !== undefined ? parseRoleCounts(opts.roles) : await defaultTestRoles(project);
    const passed = await testCommand({
      project,
      roles,
      arch: opts.arch,
      channel: opts.channel,
      offline: opts.offline || offlineByDefault(),
      junit: opts.junit ? resolve(opts.junit) : undefined,
      keep: !!opts.keep,
      upTimeoutSeconds: opts.timeout,
      checksTimeoutSeconds: opts.checksTimeout,
      scriptTimeoutSeconds: opts.scriptTimeout,
      log: stderrLog,
    });
    if (!passed) process.exitCode = 1;
  });

program
  .command("init")
  .description("write a small working project: a role on stock services plus a service of its own, a test script, a CI workflow and a README")
  .argument("[dir]", "where (a new or empty directory)", ".")
  .action(async (dir: string) => {
    const target = await initCommand(dir);
    process.stdout.write(`a new Resin project in ${target}: see its README.md; then: cd ${dir} && resin test --channel debian\n`);
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
