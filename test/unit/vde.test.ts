// The cluster's switch: the real vde_switch started and stopped by its pid, and the order
// a daemonising vde_switch does things in (control socket, fork and exit, pid file
// written by the child) which left startSwitch reading no pid file now and then on a
// loaded machine ("vde_switch did not start: exit 0", seen in an e2e run).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startSwitch, stopSwitch, switchPaths, switchRunning } from "../../cli/provider/qemu/vde.js";

const work = mkdtempSync(join(tmpdir(), "resin-vde-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("startSwitch", () => {
  it("starts the real vde_switch, gives its pid, and stopSwitch ends it", async () => {
    const paths = switchPaths(join(work, "real"));
    const pid = await startSwitch(paths);
    try {
      expect(await switchRunning(paths)).toBe(pid);
      expect(existsSync(paths.socket)).toBe(true);
    } finally {
      await stopSwitch(paths);
    }
    expect(await switchRunning(paths)).toBeUndefined();
  });

  it("waits for the pid file a daemonised switch writes after its parent has exited", async () => {
    // A stand-in for vde_switch -d with the real one's order (its child, detached from the
    // parent's output like daemon(3), writes the pid file 300 ms after the parent exited);
    // the pid it writes is this test's own: nothing is started or left running.
    const bin = join(work, "bin");
    const paths = switchPaths(join(work, "late"));
    mkdirSync(bin);
    writeFileSync(
      join(bin, "vde_switch"),
      `#!/bin/sh\n# -s SOCKET -d -p PIDFILE\n: > "$2"\n( sleep 0.3; echo ${process.pid} > "$5" ) </dev/null >/dev/null 2>&1 &\nexit 0\n`,
      { mode: 0o755 },
    );
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ""}`;
    try {
      expect(await startSwitch(paths)).toBe(process.pid);
    } finally {
      process.env.PATH = path;
    }
  });
});
