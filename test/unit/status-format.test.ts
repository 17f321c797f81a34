import { describe, expect, it } from "vitest";
import { formatTimeline, launchToKernel, StatusSchema, type ClusterStatus } from "../../cli/commands/status.js";

// `resin status --timeline`: the table is built from what the nodes report, step by step.

function status(timelines: ({ step: string; uptimeSeconds: number }[] | null)[], launch: (number | null)[] = []): ClusterStatus {
  return StatusSchema.parse({
    name: "demo",
    channel: "debian",
    healthy: true,
    leader: null,
    failureTolerance: null,
    nodes: timelines.map((timeline, i) => ({
      name: `demo-${i + 1}`,
      role: "consul-server",
      address: `10.88.0.${11 + i}`,
      image: "sha256:x",
      vm: { state: "running", pid: 1, reason: null },
      ports: {},
      boot: "ready",
      services: [],
      timeline,
      launchToKernelSeconds: launch[i] ?? null,
      consul: null,
    })),
  });
}

describe("formatTimeline", () => {
  it("shows every node's uptime per step, in the order the steps were first seen, '-' where a node lacks one", () => {
    const text = formatTimeline(
      status([
        [{ step: "kernel", uptimeSeconds: 1.21 }, { step: "root", uptimeSeconds: 2.5 }, { step: "leader", uptimeSeconds: 30.04 }],
        [{ step: "kernel", uptimeSeconds: 1.3 }, { step: "root", uptimeSeconds: 2.61 }],
        null,
      ],
      [7.44, null, null],
    ),
    );
    const lines = text.split("\n");
    expect(lines[0]!.split(/\s+/)).toEqual(["NODE", "LAUNCH→KERNEL", "KERNEL", "ROOT", "LEADER"]);
    expect(lines[1]!.split(/\s+/)).toEqual(["demo-1", "7.4", "1.2", "2.5", "30.0"]);
    expect(lines[2]!.split(/\s+/)).toEqual(["demo-2", "-", "1.3", "2.6", "-"]);
    expect(lines[3]!.split(/\s+/)).toEqual(["demo-3", "-", "-", "-", "-"]);
    expect(text).toContain("guest uptime");
  });

  it("places the kernel's start between launch and now: the guest's uptime, taken at the middle of the request", () => {
    // Launched at t=1000 s; asked at 1020.0 s, answered at 1020.2 s; uptime then 12.5 s:
    // the kernel's clock started at 1020.1 − 12.5 = 1007.6 s, 7.6 s after launch.
    expect(launchToKernel(1_000_000, 12.5, 1_020_000, 1_020_200)).toBe(7.6);
    expect(launchToKernel(undefined, 12.5, 1, 2)).toBeNull();
    expect(launchToKernel(1_000_000, null, 1, 2)).toBeNull();
  });

  it("says so when no node reports a timeline", () => {
    expect(formatTimeline(status([null, []]))).toBe("cluster demo: no node reports a boot timeline (not running, or an image from before it)");
  });

  it("reads a status from before the timeline (no timeline key) as null", () => {
    const s = status([[]]);
    const old = JSON.parse(JSON.stringify(s)) as { nodes: Record<string, unknown>[] };
    delete old.nodes[0]!.timeline;
    expect(StatusSchema.parse(old).nodes[0]!.timeline).toBeNull();
  });
});
