import { describe, it, expect } from "vitest";
import { DEFAULT_SUBNET, planCluster } from "../../cli/bootstrap/plan.js";
import { validateClusterName } from "../../cli/state/state.js";
import { ResinError } from "../../cli/util/errors.js";

// The node plan is pure: the same cluster name and roles always give the same names,
// addresses and MACs, and the MACs of different clusters differ.

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const threeServers = ["consul-server", "consul-server", "consul-server"];

function firstOctet(mac: string): number {
  return parseInt(mac.slice(0, 2), 16);
}

function resinError(fn: () => unknown): ResinError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ResinError);
    return e as ResinError;
  }
  throw new Error("expected a ResinError");
}

describe("planCluster", () => {
  it("names nodes <cluster>-1.. and keeps their roles in order", () => {
    const plan = planCluster("demo", ["consul-server", "consul-server", "consul-client"]);
    expect(plan.name).toBe("demo");
    expect(plan.datacenter).toBe("dc1");
    expect(plan.subnet).toBe(DEFAULT_SUBNET);
    expect(plan.nodes.map((n) => [n.name, n.index, n.role])).toEqual([
      ["demo-1", 1, "consul-server"],
      ["demo-2", 2, "consul-server"],
      ["demo-3", 3, "consul-client"],
    ]);
  });

  it("addresses nodes from .11 on the cluster subnet, and the host NIC at 10.0.2.15/24", () => {
    const plan = planCluster("demo", threeServers);
    expect(plan.nodes.map((n) => n.address)).toEqual(["10.88.0.11", "10.88.0.12", "10.88.0.13"]);
    for (const n of plan.nodes) {
      expect(n.prefix).toBe(24);
      expect(n.hostAddress).toBe("10.0.2.15/24");
    }
  });

  it("uses the network of a given subnet, even when the address is not the network's", () => {
    expect(planCluster("demo", ["a"], "192.168.50.0/24").nodes[0]!.address).toBe("192.168.50.11");
    expect(planCluster("demo", ["a"], "10.1.2.77/24").nodes[0]!.address).toBe("10.1.2.11");
    const wide = planCluster("demo", ["a", "b"], "172.20.5.9/16");
    expect(wide.nodes.map((n) => n.address)).toEqual(["172.20.0.11", "172.20.0.12"]);
    expect(wide.nodes[0]!.prefix).toBe(16);
  });

  it("gives every NIC a unique, well-formed MAC", () => {
    const plan = planCluster("demo", Array.from({ length: 20 }, () => "consul-server"));
    const macs = plan.nodes.flatMap((n) => [n.clusterMac, n.hostMac]);
    for (const mac of macs) expect(mac).toMatch(MAC);
    expect(new Set(macs).size).toBe(macs.length);
  });

  it("sets the locally-administered bit and clears the multicast bit", () => {
    for (const n of planCluster("demo", threeServers).nodes) {
      for (const mac of [n.clusterMac, n.hostMac]) {
        expect(firstOctet(mac) & 0x02).toBe(0x02);
        expect(firstOctet(mac) & 0x01).toBe(0);
      }
    }
  });

  it("is deterministic", () => {
    expect(planCluster("demo", threeServers)).toEqual(planCluster("demo", threeServers));
    expect(planCluster("demo", threeServers, "10.9.0.0/24")).toEqual(planCluster("demo", threeServers, "10.9.0.0/24"));
  });

  it("gives different clusters different MACs", () => {
    const names = ["demo", "dev", "prod", "staging", "test", "alpha", "beta", "gamma", "a", "b"];
    const macs = names.flatMap((name) => planCluster(name, threeServers).nodes.flatMap((n) => [n.clusterMac, n.hostMac]));
    expect(new Set(macs).size).toBe(macs.length);
  });

  it("does not make MACs depend on the roles or the subnet", () => {
    const a = planCluster("demo", threeServers);
    const b = planCluster("demo", ["x", "y", "z"], "10.9.0.0/24");
    expect(b.nodes.map((n) => n.clusterMac)).toEqual(a.nodes.map((n) => n.clusterMac));
  });

  it("places up to 200 nodes with unique addresses and MACs", () => {
    const plan = planCluster("big", Array.from({ length: 200 }, () => "r"), "10.50.0.0/16");
    expect(plan.nodes).toHaveLength(200);
    expect(plan.nodes[199]!.address).toBe("10.50.0.210");
    expect(new Set(plan.nodes.map((n) => n.address)).size).toBe(200);
    expect(new Set(plan.nodes.map((n) => n.clusterMac)).size).toBe(200);
  });

  it("fits as many nodes as a small subnet allows (.11 up to the last host address)", () => {
    const plan = planCluster("demo", ["a", "b", "c", "d"], "10.1.2.0/28");
    expect(plan.nodes.map((n) => n.address)).toEqual(["10.1.2.11", "10.1.2.12", "10.1.2.13", "10.1.2.14"]);
    // .15 would be the broadcast address.
    expect(() => planCluster("demo", ["a", "b", "c", "d", "e"], "10.1.2.0/28")).toThrow(ResinError);
  });

  it("rejects no nodes and more than 200", () => {
    expect(() => planCluster("demo", [])).toThrow(ResinError);
    expect(() => planCluster("demo", Array.from({ length: 201 }, () => "r"), "10.50.0.0/16")).toThrow(ResinError);
    expect(() => planCluster("demo", Array.from({ length: 250 }, () => "r"))).toThrow(ResinError);
  });
});

describe("cluster names", () => {
  it.each(["", "Demo", "1demo", "-demo", "demo_1", "demo.local", "dé", "a".repeat(32), " demo", "demo "])("rejects %j", (name) => {
    const err = resinError(() => validateClusterName(name));
    expect(err.message).toContain("invalid cluster name");
    expect(err.hint).toBeTruthy();
    expect(() => planCluster(name, ["r"])).toThrow(ResinError);
  });

  it.each(["a", "demo", "dc-1", "x9", "a".repeat(31)])("accepts %j", (name) => {
    expect(() => validateClusterName(name)).not.toThrow();
    expect(planCluster(name, ["r"]).nodes[0]!.name).toBe(`${name}-1`);
  });
});

describe("subnets", () => {
  it.each([
    "10.88.0.0",
    "10.88.0.0/",
    "10.88.0/24",
    "10.88.0.0.0/24",
    "300.1.1.0/24",
    "10.256.0.0/24",
    "10.88.0.0/8",
    "10.88.0.0/15",
    "10.88.0.0/29",
    "10.88.0.0/32",
    "10.88.0.0/24 ",
    "fd00::/64",
    "subnet",
    "",
  ])("rejects %j", (subnet) => {
    const err = resinError(() => planCluster("demo", ["r"], subnet));
    expect(err.message).toContain("invalid subnet");
    expect(err.hint).toBeTruthy();
  });

  it.each(["10.88.0.0/16", "10.88.0.0/24", "10.88.0.0/28"])("accepts %j", (subnet) => {
    expect(planCluster("demo", ["r"], subnet).subnet).toBe(subnet);
  });
});
