// The rolling upgrade's order: every node that changes, followers first, and the
// nodes that lead a product (Consul's leader, Vault's active node) last, so that each
// product loses its leader once, at the end.
import { describe, expect, it } from "vitest";
import { followersCaughtUp, planUpgrade } from "../../cli/cluster/upgrade.js";
import type { AutopilotHealth } from "../../cli/cluster/consul.js";
import type { ClusterState, NodeState } from "../../cli/state/state.js";

const OLD = `sha256:${"a".repeat(64)}`;
const NEW = `sha256:${"b".repeat(64)}`;

function node(i: number, role: string, image = OLD): NodeState {
  return {
    name: `c-${i}`,
    role,
    index: i - 1,
    address: `10.88.0.${10 + i}`,
    clusterMac: `52:54:00:00:00:0${i}`,
    hostMac: `52:54:00:00:01:0${i}`,
    hostAddress: "10.0.2.15",
    prefix: 24,
    image,
    memoryMib: 1024,
    cpus: 1,
    ports: {},
  } as NodeState;
}

const cluster = (nodes: NodeState[]) => ({ version: 1, name: "c", channel: "debian", datacenter: "dc1", subnet: "10.88.0.0/24", network: { mode: "static" }, nodes }) as unknown as ClusterState;

describe("planUpgrade", () => {
  const state = cluster([node(1, "consul-server"), node(2, "vault-server"), node(3, "vault-server"), node(4, "vault-server")]);
  const target = { "consul-server": NEW, "vault-server": NEW };

  it("replaces followers in index order when no product has a leader", () => {
    expect(planUpgrade(state, target).map((s) => s.node)).toEqual(["c-1", "c-2", "c-3", "c-4"]);
  });

  it("puts the Consul leader and the active Vault node last", () => {
    expect(planUpgrade(state, target, "10.88.0.11:8300", "c-3").map((s) => s.node)).toEqual(["c-2", "c-4", "c-1", "c-3"]);
  });

  it("skips nodes already on their role's new image, and roles without a new image", () => {
    const mixed = cluster([node(1, "consul-server", NEW), node(2, "vault-server"), node(3, "vault-server")]);
    expect(planUpgrade(mixed, { "consul-server": NEW, "vault-server": NEW }, undefined, "c-2")).toEqual([
      { node: "c-3", from: OLD, to: NEW },
      { node: "c-2", from: OLD, to: NEW },
    ]);
    expect(planUpgrade(mixed, { "consul-server": NEW })).toEqual([]);
  });
});

describe("followersCaughtUp", () => {
  const server = (i: number, lastIndex: number, extra: Partial<AutopilotHealth["servers"][number]> = {}) => ({
    name: `c-${i}`,
    address: `10.88.0.${10 + i}:8300`,
    leader: i === 1,
    voter: true,
    healthy: true,
    lastIndex,
    ...extra,
  });
  const health = (servers: AutopilotHealth["servers"]): AutopilotHealth => ({ healthy: true, failureTolerance: 1, servers });

  it("holds while a voter lacks the leader's last entry, and lets go once every voter has it", () => {
    expect(followersCaughtUp(health([server(1, 120), server(2, 120), server(3, 119)]), "10.88.0.11:8300")).toBe(false);
    expect(followersCaughtUp(health([server(1, 120), server(2, 120), server(3, 120)]), "10.88.0.11:8300")).toBe(true);
    expect(followersCaughtUp(health([server(1, 120), server(2, 121), server(3, 120)]), "10.88.0.11:8300")).toBe(true);
  });

  it("counts voters only, and an unhealthy voter as behind", () => {
    expect(followersCaughtUp(health([server(1, 120), server(2, 120), server(3, 3, { voter: false })]), "10.88.0.11:8300")).toBe(true);
    expect(followersCaughtUp(health([server(1, 120), server(2, 120), server(3, 120, { healthy: false })]), "10.88.0.11:8300")).toBe(false);
  });

  it("is false without autopilot's answer or without the named leader in it", () => {
    expect(followersCaughtUp(undefined, "10.88.0.11:8300")).toBe(false);
    expect(followersCaughtUp(health([server(2, 120), server(3, 120)]), "10.88.0.11:8300")).toBe(false);
  });
});
