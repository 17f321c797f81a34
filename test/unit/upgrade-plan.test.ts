// The rolling upgrade's order: every node that changes, followers first, and the
// nodes that lead a product (Consul's leader, Vault's active node) last, so that each
// product loses its leader once, at the end.
import { describe, expect, it } from "vitest";
import { planUpgrade } from "../../cli/cluster/upgrade.js";
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
