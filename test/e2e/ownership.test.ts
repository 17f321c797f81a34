// A service user cannot take a root-only file by planting a hard link where its run
// script hands files over (#21, finding 4), on one real consul-server node.
//
// Nothing runs commands inside a node (by design: the status endpoint only restarts
// services and shows logs), so the link is planted on the node's persist disk while it
// is stopped: a root-only file and a second name for it in /var/lib/consul, Consul's own
// directory. That is what a `consul` process could have made there on an image without
// fs.protected_hardlinks, and /var/lib outlives image upgrades. Then the node boots (the
// run script runs) and Consul is restarted (it runs again); the file must still be root's.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { keepLogsOnFailure, killLeftovers, processesUnder, resinAsync, resinStatus } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-ownership-"));
const env = { RESIN_STATE_HOME: stateHome, RESIN_ACCEL: "tcg" };
const name = "own";
const node = `${name}-1`;
const persist = join(stateHome, "clusters", name, "nodes", node, "persist.qcow2");
keepLogsOnFailure(stateHome, "ownership");

afterAll(async () => {
  await resinAsync(["destroy", name, "--yes"], env);
  killLeftovers(stateHome);
  expect(processesUnder(stateHome)).toEqual([]);
  rmSync(stateHome, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run debugfs on the stopped node's persist disk (a raw copy of its qcow2), writing the change back when `write`. */
function onPersist(commands: string[], write: boolean): string {
  const raw = join(stateHome, "persist.raw");
  execFileSync("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", persist, raw]);
  if (write) {
    // Replay the journal first, as the node's e2fsck -p would at boot (a stopped node's
    // disk may still need it): a replay after the edit would write the old blocks back.
    const fsck = spawnSync("e2fsck", ["-fy", raw], { encoding: "utf8" });
    expect(fsck.status, `e2fsck -fy: ${fsck.stdout}${fsck.stderr}`).toBeLessThanOrEqual(1);
  }
  const script = join(stateHome, "debugfs.cmds");
  writeFileSync(script, `${commands.join("\n")}\n`);
  const r = spawnSync("debugfs", [...(write ? ["-w"] : []), "-f", script, raw], { encoding: "utf8", env: { ...process.env, DEBUGFS_PAGER: "__none__" } });
  const out = `${r.stdout}${r.stderr}`;
  if (write) {
    // The edit leaves a consistent filesystem (the node's e2fsck -p would say otherwise).
    execFileSync("e2fsck", ["-fn", raw], { stdio: "ignore" });
    execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, persist]);
  }
  rmSync(raw);
  return out;
}

async function consulUp(): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const s = resinStatus(stateHome, name);
    const consul = s.nodes[0]?.services?.find((x) => x.name === "consul");
    if (s.healthy && consul?.state === "up" && (consul.uptimeSeconds ?? 0) >= 2) return;
    if (Date.now() > deadline) throw new Error(`consul on ${node} not up and healthy: ${JSON.stringify(s.nodes[0])}`);
    await sleep(2000);
  }
}

describe("service files owned safely", { timeout: 20 * 60_000 }, () => {
  it("a hard link planted in /var/lib/consul to a root-only file leaves that file root's after a boot and a service restart", async () => {
    const up = await resinAsync(["up", "--name", name, "--nodes", "1", "--role", "consul-server", "--channel", "debian", "--timeout", "420"], env);
    expect(up.status, up.stderr).toBe(0);
    const stop = await resinAsync(["stop", node, "--name", name], env);
    expect(stop.status, stop.stderr).toBe(0);

    const secret = join(stateHome, "secret");
    writeFileSync(secret, "root only\n");
    onPersist(
      [
        "write " + secret + " secret",
        "set_inode_field secret uid 0",
        "set_inode_field secret gid 0",
        "set_inode_field secret mode 0100600",
        "ln secret consul/planted",
        "set_inode_field secret links_count 2",
      ],
      true,
    );
    const before = onPersist(["stat consul/planted"], false);
    expect(before).toMatch(/User:\s+0\s+Group:\s+0/);
    expect(before).toMatch(/Links:\s+2/);

    const start = await resinAsync(["start", node, "--name", name], env);
    expect(start.status, start.stderr).toBe(0);
    await consulUp();
    const restart = await resinAsync(["restart", node, "--name", name, "--service", "consul"], env);
    expect(restart.status, restart.stderr).toBe(0);
    await consulUp();
    const stopped = await resinAsync(["stop", node, "--name", name], env);
    expect(stopped.status, stopped.stderr).toBe(0);

    const after = onPersist(["stat secret"], false);
    expect(after, "the root-only file stays root's, mode 0600").toMatch(/User:\s+0\s+Group:\s+0/);
    expect(after).toMatch(/Mode:\s+0600/);
  });
});
