import { describe, it, expect } from "vitest";
import { planManifest, PlanManifestSchema, MANIFEST_FORMAT } from "../../cli/provider/manifest.js";
import { planCluster, defaultJoin } from "../../cli/bootstrap/plan.js";
import type { ClusterState } from "../../cli/state/state.js";
import type { ImageManifest } from "../../cli/image/manifest.js";

// The manifest is the contract with provisioners (terraform/ reads it with
// jsondecode): these tests pin its shape for static and DHCP clusters.

const hex = (c: string) => c.repeat(64);
const file = (c: string, size: number) => ({ file: "x", sha256: hex(c), size });

function image(role: string, digest: string): ImageManifest {
  return {
    role,
    channel: "debian",
    digest,
    kernel: { ...file("a", 10), version: "6.1", modules: [] },
    initrd: file("b", 20),
    rootfs: file("c", 30),
    disk: { cmdline: "console=ttyS0 resin.root=PARTLABEL=resin-root", raw: file("d", 40), qcow2: file("e", 50), iso: { ...file("f", 60), volumeId: "RESIN-abc", cmdline: "x" } },
    services: [
      { name: "base", ports: { status: 9100 } },
      { name: "consul", version: "1.8.7", ports: { https: 8501 } },
    ],
  } as unknown as ImageManifest;
}

function stateFor(network: ClusterState["network"]): ClusterState {
  const plan = planCluster("demo", ["consul-server", "consul-server", "consul-server"], undefined, network);
  return {
    version: 1,
    name: "demo",
    channel: "debian",
    datacenter: plan.datacenter,
    subnet: plan.subnet,
    network,
    nodes: plan.nodes.map((n) => ({ ...n, image: "sha256:abc", memoryMib: 1024, cpus: 1, ports: {} })),
  };
}

/** What planManifest is given for one role whose nodes all boot `manifest`. */
function inputsFor(state: ClusterState, manifest: ImageManifest) {
  return {
    state,
    images: new Map([["sha256:abc", { dir: "/state/images/abc", manifest }]]),
    vm: new Map([["consul-server", { memory_mib: 1024, cpus: 1, persist_disk_gib: 2 }]]),
    caCertificate: "/c.pem",
    caCertificates: { consul: "/c.pem", nomad: "/n.pem", vault: "/v.pem" },
    metadata: new Map(state.nodes.map((n) => [n.name, { path: `/m/${n.name}`, sha256: hex("0"), bytes: 1 }])),
  };
}

function manifestFor(state: ClusterState) {
  return planManifest({
    state,
    images: new Map([["sha256:abc", { dir: "/state/images/abc", manifest: image("consul-server", "sha256:abc") }]]),
    vm: new Map([["consul-server", { memory_mib: 1024, cpus: 1, persist_disk_gib: 2 }]]),
    caCertificate: "/state/tls/consul-ca.pem",
    caCertificates: { consul: "/state/tls/consul-ca.pem", nomad: "/state/tls/nomad-ca.pem", vault: "/state/tls/vault-ca.pem" },
    metadata: new Map(state.nodes.map((n, i) => [n.name, { path: `/state/nodes/${n.name}/user-data.json`, sha256: hex(String(i)), bytes: 100 + i }])),
  });
}

describe("planManifest", () => {
  it("describes a static cluster: image files with digests, nodes with addresses, MACs and metadata", () => {
    const m = PlanManifestSchema.parse(manifestFor(stateFor({ mode: "static" })));
    expect(m.format).toBe(MANIFEST_FORMAT);
    expect(m.cluster).toEqual({ name: "demo", datacenter: "dc1", channel: "debian", network: { mode: "static", subnet: "10.88.0.0/24" },
      caCertificate: "/state/tls/consul-ca.pem",
      caCertificates: { consul: "/state/tls/consul-ca.pem", nomad: "/state/tls/nomad-ca.pem", vault: "/state/tls/vault-ca.pem" },
    });
    const role = m.roles["consul-server"]!;
    expect(role.image.files.disk_raw).toEqual({ path: "/state/images/abc/disk.raw", sha256: hex("d"), bytes: 40 });
    expect(role.image.files.kernel.path).toBe("/state/images/abc/vmlinuz");
    expect(role.image.cmdline).toContain("resin.root=PARTLABEL=resin-root");
    expect(role.ports).toEqual({ "base.status": 9100, "consul.https": 8501 });
    expect(role.vm).toEqual({ memory_mib: 1024, cpus: 1, persist_disk_gib: 2 });
    expect(m.nodes.map((n) => [n.name, n.index, n.address, n.prefix])).toEqual([
      ["demo-1", 1, "10.88.0.11", 24],
      ["demo-2", 2, "10.88.0.12", 24],
      ["demo-3", 3, "10.88.0.13", 24],
    ]);
    expect(m.nodes[1]!.metadata).toEqual({ path: "/state/nodes/demo-2/user-data.json", sha256: hex("1"), bytes: 101 });
    expect(m.nodes[0]!.macs.cluster).toMatch(/^52:54(:[0-9a-f]{2}){4}$/);
  });

  it("describes a DHCP cluster by its join string, with no addresses", () => {
    const m = PlanManifestSchema.parse(manifestFor(stateFor({ mode: "dhcp", join: defaultJoin("demo") })));
    expect(m.cluster.network).toEqual({ mode: "dhcp", join: "provider=aws tag_key=resin-cluster tag_value=demo" });
    expect(m.nodes.every((n) => n.address === null && n.prefix === null)).toBe(true);
  });

  it("is JSON that the schema accepts unchanged, and refuses relative paths", () => {
    const m = manifestFor(stateFor({ mode: "static" }));
    expect(PlanManifestSchema.parse(JSON.parse(JSON.stringify(m)))).toEqual(m);
    const relative = { ...m, cluster: { ...m.cluster, caCertificate: "tls/ca.pem" } };
    expect(PlanManifestSchema.safeParse(relative).success).toBe(false);
  });

  it("carries each image's dm-verity hash tree and root hash, and leaves them out for an image built before it had one", () => {
    const state = stateFor({ mode: "static" });
    const verity = { ...file("9", 70), file: "rootfs.verity", hashType: 1, hashAlgorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 5067, hashOffset: 0, salt: hex("5"), uuid: "0911ffca-162c-8067-bbdb-aba785b88c06", rootHash: hex("7") };
    const withTree = { ...image("consul-server", "sha256:abc"), verity } as ImageManifest;
    const inputs = (m: ImageManifest) => inputsFor(state, m);
    const role = PlanManifestSchema.parse(planManifest(inputs(withTree))).roles["consul-server"]!;
    expect(role.image.files.verity).toEqual({ path: "/state/images/abc/rootfs.verity", sha256: hex("9"), bytes: 70 });
    expect(role.image.verity).toEqual({ rootHash: hex("7"), salt: hex("5"), hashAlgorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 5067 });
    const old = PlanManifestSchema.parse(planManifest(inputs(image("consul-server", "sha256:abc")))).roles["consul-server"]!;
    expect(old.image.files.verity).toBeUndefined();
    expect(old.image.verity).toBeUndefined();
  });

  it("names the certificate a signed image's disk images are signed for (resin build --sign), and nothing for an unsigned one", () => {
    const state = stateFor({ mode: "static" });
    const base = image("consul-server", "sha256:abc");
    const signature = { certSha256: hex("4"), cert: "AAAA", signed: [{ file: "disk.raw", offset: 1048576, size: 4096, sha256: hex("3") }] };
    const signed = { ...base, disk: { ...base.disk, signature } } as ImageManifest;
    const roleOf = (m: ImageManifest) => PlanManifestSchema.parse(planManifest(inputsFor(state, m))).roles["consul-server"]!;
    // Only the fingerprint: the plan is read by provisioners, which match it against what their firmware trusts.
    expect(roleOf(signed).image.signature).toEqual({ certSha256: hex("4") });
    expect(roleOf(base).image.signature).toBeUndefined();
  });

  it("gives each role its image's architecture and the platform facts provisioners look up (an image without arch: amd64)", () => {
    const amd = PlanManifestSchema.parse(manifestFor(stateFor({ mode: "static" }))).roles["consul-server"]!;
    expect(amd.arch).toBe("amd64");
    expect(amd.platform).toEqual({ aws: { architecture: "x86_64", instance_type: "t3.small" }, libvirt: { arch: "x86_64", machine: "q35" } });
    const state = stateFor({ mode: "static" });
    const arm = PlanManifestSchema.parse(planManifest(inputsFor(state, { ...image("consul-server", "sha256:abc"), arch: "arm64" } as ImageManifest))).roles["consul-server"]!;
    expect(arm.arch).toBe("arm64");
    expect(arm.platform).toEqual({ aws: { architecture: "arm64", instance_type: "t4g.small" }, libvirt: { arch: "aarch64", machine: "virt" } });
  });
});

describe("--roles", () => {
  it("expands ROLE=COUNT,… into each node's role, in order, and says it back briefly", async () => {
    const { parseRoleCounts, describeRoles } = await import("../../cli/cluster/create.js");
    const roles = parseRoleCounts("consul-server=3, nomad-client=2,vault-server");
    expect(roles).toEqual(["consul-server", "consul-server", "consul-server", "nomad-client", "nomad-client", "vault-server"]);
    expect(describeRoles(roles)).toBe("3 × consul-server, 2 × nomad-client, 1 × vault-server");
    expect(() => parseRoleCounts("consul-server=0")).toThrow(/--roles: 'consul-server=0' is not ROLE or ROLE=COUNT/);
    expect(() => parseRoleCounts("Consul=3")).toThrow(/--roles: .Consul=3. is not ROLE or ROLE=COUNT/);
  });
});
