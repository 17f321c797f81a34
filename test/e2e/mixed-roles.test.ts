// A cluster of several roles from one `resin up --roles`: a Consul server and a node
// whose role runs a Consul client agent. (Nomad cannot be had here, so the client role
// is a test-only one on the debian channel: base and consul with server = false.)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consulAccess, consulView, ensureToken, kvGet, kvPut, lanMembers } from "../../cli/cluster/consul.js";
import { readSecrets } from "../../cli/bootstrap/secrets.js";
import { consulAgentToken } from "../../cli/bootstrap/node-secrets.js";
import { consulAt, keepLogsOnFailure, killLeftovers, resinAsync, resinStatus, userProject } from "./helpers.js";

const project = userProject("resin-e2e-mixed-project-");
const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-mixed-state-"));
keepLogsOnFailure(stateHome, "mixed-roles");
const env = { RESIN_STATE_HOME: stateHome, RESIN_PROJECT: project };
const name = "mixed";

describe("resin up --roles: a Consul server and a Consul client node in one cluster", () => {
  beforeAll(async () => {
    writeFileSync(
      join(project, "machines", "consul-client.yml"),
      "role: consul-client\ndescription: test only - a Consul client agent\nservices: [base, consul]\nconfig:\n  consul:\n    server: false\nvm: { memory_mib: 768, cpus: 1, persist_disk_gib: 1 }\n",
    );
    const up = await resinAsync(["up", "--name", name, "--roles", "consul-server=1,consul-client=1", "--channel", "debian", "--timeout", "420"], env);
    if (up.status !== 0) throw new Error(`resin up failed (exit ${up.status}):\n${up.stderr}`);
    expect(up.stderr).toContain("created (1 × consul-server, 1 × consul-client");
  });

  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  });

  it("boots each node on its own role's image; the server is the only raft peer, the client names the same leader", () => {
    const s = resinStatus(stateHome, name);
    expect(s.nodes.map((n) => [n.name, n.role, n.vm.state])).toEqual([
      ["mixed-1", "consul-server", "running"],
      ["mixed-2", "consul-client", "running"],
    ]);
    expect(s.nodes[0]!.image).not.toBe(s.nodes[1]!.image);
    expect(s.healthy).toBe(true);
    expect(s.leader).toBe("10.88.0.11:8300");
    for (const n of s.nodes) expect(n.consul).toMatchObject({ leader: "10.88.0.11:8300", peers: ["10.88.0.11:8300"] });
  });

  it("the client agent is a gossip member, and writes through it reach the server", async () => {
    const server = consulAt(stateHome, name, "mixed-1");
    const client = consulAt(stateHome, name, "mixed-2");
    expect((await lanMembers(server)).sort()).toEqual(["mixed-1", "mixed-2"]);
    // The host sends a client agent no management token: the write carries a token made
    // for it (through the server) that may write these keys only.
    const writer = "6d1c0a2e-0000-4000-8000-00000000e2e1";
    await ensureToken(server, "e2e-mixed-kv", 'key_prefix "mixed/" {\n  policy = "write"\n}\n', writer);
    await kvPut({ ...client, access: { ...client.access!, token: writer } }, "mixed/through-client", "yes");
    expect(await kvGet(server, "mixed/through-client")).toBe("yes");
  });

  it("the host reaches the client agent with its own token only, checked by its node name; as a server its certificate is refused", async () => {
    const secrets = await readSecrets(join(stateHome, "clusters", name, "secrets.json"));
    const client = consulAt(stateHome, name, "mixed-2");
    expect(client.server).toBe(false);
    expect(client.access).toMatchObject({ token: consulAgentToken(secrets, "mixed-2"), serverName: "mixed-2" });
    expect(await consulView(client)).toEqual({ leader: "10.88.0.11:8300", peers: ["10.88.0.11:8300"] });
    // The real client agent's certificate (client.dc1.consul, serverAuth, 127.0.0.1) where
    // the host expects a server: the handshake fails on the name, no token is sent.
    const asServer = await consulView({ port: client.port, access: consulAccess(secrets, "dc1"), server: true });
    expect(asServer.error).toMatch(/TLS failed \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
    // resin env points the consul CLI at the server, by the server's name.
    const lines = await resinAsync(["env", "--name", name], env);
    expect(lines.status, lines.stderr).toBe(0);
    expect(lines.stdout).toContain(`export CONSUL_HTTP_ADDR='https://127.0.0.1:${consulAt(stateHome, name, "mixed-1").port}'`);
    expect(lines.stdout).toContain("export CONSUL_TLS_SERVER_NAME='server.dc1.consul'");
  });
});
