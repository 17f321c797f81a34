import { describe, it, expect, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadRole } from "../../cli/spec/load.js";
import { metadataUsers } from "../../cli/bootstrap/metadata.js";

// services/base/metadata/close, the rules that close a cloud's metadata service after
// stage 1 has read the user data, run by busybox sh with stand-ins for the three
// programs it calls (modprobe, id and iptables-restore, which need a node's kernel and
// /etc/passwd): what it hands iptables-restore, and that any failure stops it with the
// reason. The rules themselves are proven on a real node in
// test/e2e/metadata-providers.test.ts.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SCRIPT = join(REPO, "services", "base", "metadata", "close");
const busybox = existsSync("/bin/busybox") ? "/bin/busybox" : "busybox";
const dir = mkdtempSync(join(tmpdir(), "resin-close-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], fail: { modprobe?: boolean; restore?: boolean } = {}): { status: number | null; out: string; rules?: string; modules?: string } {
  const bin = join(dir, "bin");
  mkdirSync(bin, { recursive: true });
  const stub = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!${busybox} sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  rmSync(join(dir, "rules"), { force: true });
  rmSync(join(dir, "modules"), { force: true });
  stub("modprobe", fail.modprobe ? 'echo "modprobe: FATAL: Module xt_owner not found"; exit 1' : `echo "$*" > ${dir}/modules`);
  stub("id", 'case "$2" in consul) echo 100 ;; vault) echo 101 ;; *) echo "id: unknown user $2" >&2; exit 1 ;; esac');
  stub("xtables-legacy-multi", fail.restore ? 'cat > /dev/null; echo "iptables-restore: line 7 failed"; exit 1' : `[ "$1 $2" = "iptables-restore --noflush" ] || exit 9; cat > ${dir}/rules`);
  const r = spawnSync(busybox, ["sh", SCRIPT, ...args], { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin` } });
  return {
    status: r.status,
    out: `${r.stdout}${r.stderr}`,
    rules: existsSync(join(dir, "rules")) ? readFileSync(join(dir, "rules"), "utf8") : undefined,
    modules: existsSync(join(dir, "modules")) ? readFileSync(join(dir, "modules"), "utf8") : undefined,
  };
}

describe("metadata/close", () => {
  it("lets root alone through from this network namespace, and drops the address for every other one", () => {
    const r = run([]);
    expect(r.status, r.out).toBe(0);
    expect(r.modules).toBe("-a ip_tables iptable_filter iptable_raw xt_owner ipt_REJECT\n");
    expect(r.rules).toBe(
      [
        "*raw",
        "-A PREROUTING -d 169.254.169.254/32 -j DROP",
        "COMMIT",
        "*filter",
        ":RESIN-METADATA - [0:0]",
        "-A OUTPUT -d 169.254.169.254/32 -j RESIN-METADATA",
        "-A RESIN-METADATA -m owner --uid-owner 0 -j RETURN",
        "-A RESIN-METADATA -j REJECT --reject-with icmp-port-unreachable",
        "COMMIT",
        "",
      ].join("\n"),
    );
  });

  it("lets the named service users through too, by uid, before the refusal", () => {
    const r = run(["consul", "vault"]);
    expect(r.status, r.out).toBe(0);
    expect(r.rules).toContain(
      ["-A RESIN-METADATA -m owner --uid-owner 0 -j RETURN", "-A RESIN-METADATA -m owner --uid-owner 100 -j RETURN", "-A RESIN-METADATA -m owner --uid-owner 101 -j RETURN", "-A RESIN-METADATA -j REJECT"].join("\n"),
    );
  });

  it.each([
    ["a user the image does not have", ["nobody-here"], {}, "no user nobody-here in this image"],
    ["modules that do not load", [], { modprobe: true }, "cannot load the netfilter modules"],
    ["rules iptables-restore refuses", [], { restore: true }, "iptables-restore refused the rules"],
  ])("fails, saying why, for %s", (_what, args, fail, why) => {
    const r = run(args, fail);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain(why);
  });
});

describe("metadataUsers", () => {
  it("names the auto-join services' users on a DHCP cluster only, and only those the role runs", async () => {
    const dhcp = { network: { mode: "dhcp" as const, join: "provider=aws tag_key=k tag_value=v" } };
    const staticNet = { network: { mode: "static" as const } };
    const role = async (name: string) => loadRole(REPO, name, "official");
    expect(metadataUsers(dhcp, await role("control-plane"))).toEqual(["consul", "vault"]);
    expect(metadataUsers(dhcp, await role("nomad-client"))).toEqual(["consul"]);
    expect(metadataUsers(dhcp, await role("consul-server"))).toEqual(["consul"]);
    for (const name of ["control-plane", "nomad-client", "consul-server"]) expect(metadataUsers(staticNet, await role(name))).toEqual([]);
  });
});
