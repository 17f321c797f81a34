// Build checks' pure part: the sample node a check sees is a one-node cluster of the role
// with fresh secrets of its own, rendered by the same code that renders real nodes; and
// the namespace a check runs in has no network and keeps its mounts to itself (real
// unshare, on a throwaway root made of the host's busybox).
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadRole } from "../../cli/spec/load.js";
import { inImage, sampleUserData } from "../../cli/bootstrap/build-checks.js";
import { busybox } from "../tools/busybox.js";

const repo = join(import.meta.dirname, "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "resin-unit-build-checks-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("sampleUserData", () => {
  it("is a one-node cluster of the role: its own node config and certificates, nothing of a real cluster", async () => {
    const role = await loadRole(repo, "consul-server", "debian");
    const tree = JSON.parse((await sampleUserData(role, { consul: "1.8.7" })).toString()) as { hostname: { content: string }; consul: { entries: Record<string, { content: string }> } };
    expect(tree.hostname.content).toBe("build-check-1\n");
    expect(Object.keys(tree.consul.entries).sort()).toEqual(["10-node.hcl", "ca.pem", "cert.pem", "key.pem"]);
    expect(tree.consul.entries["10-node.hcl"]!.content).toMatch(/node_name\s+= "build-check-1"/);
    // Fresh secrets each time: a sample never carries a key twice.
    const again = JSON.parse((await sampleUserData(role, { consul: "1.8.7" })).toString()) as typeof tree;
    expect(again.consul.entries["key.pem"]!.content).not.toBe(tree.consul.entries["key.pem"]!.content);
  });
});

describe("inImage: where a check runs", () => {
  // A root holding only the host's busybox and the libraries it loads: a shell and its applets.
  const root = join(scratch, "root");
  mkdirSync(join(root, "bin"), { recursive: true });
  for (const d of ["dev", "proc", "mnt"]) mkdirSync(join(root, d));
  cpSync(busybox, join(root, "bin", "busybox"));
  for (const lib of execFileSync("ldd", [busybox], { encoding: "utf8" }).match(/\/\S+/g) ?? []) {
    mkdirSync(join(root, dirname(lib)), { recursive: true });
    cpSync(lib, join(root, lib), { dereference: true });
  }
  for (const applet of ["sh", "cat", "mount", "awk", "nc", "ip", "echo"]) symlinkSync("busybox", join(root, "bin", applet));

  it("has only a loopback interface, and it is down: nothing can be reached", async () => {
    const r = await inImage(root, "awk 'NR > 2 { print $1 }' /proc/net/dev; ip link; nc -w 2 127.0.0.1 1 </dev/null; echo nc=$?");
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all!.split("\n")[0], r.all).toBe("lo:");
    expect(r.all, r.all).toMatch(/^1: lo: <LOOPBACK> /m); // not UP
    expect(r.all, r.all).toMatch(/nc=1/);
    expect(r.all, r.all).toContain("Network is unreachable");
  });

  it("mounts nothing on the host: a mount inside stays inside", async () => {
    const r = await inImage(root, "mount -t tmpfs check /mnt && echo mounted && cat /proc/mounts");
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain("mounted");
    expect(readFileSync("/proc/mounts", "utf8")).not.toContain(`${root}/mnt`);
  });

  it("reports a failing command's status and output", async () => {
    const r = await inImage(root, "echo 'it went wrong' >&2; exit 3");
    expect(r.exitCode).toBe(3);
    expect(r.all).toContain("it went wrong");
  });
});
