import { describe, it, expect, beforeAll, afterAll, vi } from "vitest";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { execa } from "execa";
import { parse as parseHcl2 } from "@cdktf/hcl2json";
import { buildOpenTofu, describeEngine, ENGINE_ENV, OPENTOFU, terraformBinary } from "../tools/terraform.js";
import { cacheHome } from "../../cli/util/paths.js";

// Time: every engine command gets a hang guard (TF_MS), and every test and hook of this
// file a timeout that holds its commands' guards with a margin (the most a test runs is
// eight commands: 8 × 90 s = 12 min of 15), so a slow, loaded machine meets a command's
// own "timed out" before vitest's, and neither as a speed claim.
const TF_MS = 90_000;
vi.setConfig({ testTimeout: 15 * 60_000, hookTimeout: 15 * 60_000 });

// The Terraform tree (terraform/): modules for AWS and libvirt, and a local example
// that drives resin through Terraform's built-in terraform_data.
//
// 1. Every .tf file is parsed with HashiCorp's HCL2 parser (@cdktf/hcl2json) and its
//    structure checked: variables typed and described, the resources each target
//    needs, the HashiStack's ports in the AWS security group, no provider for the
//    local example.
// 2. With the engine test/tools/terraform.ts finds: RESIN_TERRAFORM, terraform, tofu, or
//    else OpenTofu built here from its Go module (never skipped for want of a binary):
//    - `terraform fmt -check`;
//    - init and validate of the local example (it needs no provider, so this runs
//      offline), its variable validations, and a full apply/destroy against a fake
//      resin that records how it is called;
//    - the modules' plan-derived values and validations, evaluated by real Terraform
//      against a synthetic plan: the modules keep them in provider-free locals, so a
//      copy of variables.tf + main.tf needs no provider;
//    - init and validate of the AWS and libvirt modules, which need their providers:
//      tried with a short timeout, and skipped with the reason where they cannot be
//      installed (no access to the Terraform provider registry).
//
// 3. The OpenTofu fallback itself, whatever the machine has: built from its Go module
//    (or taken from the cache), `tofu version`, init and validate of examples/local with
//    no way to download anything, and the order in which the engine is chosen.
//
// Terraform always runs in temporary copies, with CHECKPOINT_DISABLE=1 and an empty CLI
// configuration (ENGINE_ENV), so nothing is left in the repository and nothing calls home.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const TF_ROOT = join(REPO, "terraform");
const NO_PROVIDERS = "their providers cannot be downloaded here (no access to the Terraform provider registry)";

const ENGINE = await terraformBinary();
const TERRAFORM = ENGINE.path;
console.log(`test/unit/terraform.test.ts: engine ${describeEngine(ENGINE)}`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr with every run of whitespace made one space (Terraform wraps its messages). */
  flat: string;
}

async function terraform(cwd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  const r = await execa(TERRAFORM!, args, {
    cwd,
    env: { ...process.env, ...ENGINE_ENV, ...opts.env },
    timeout: opts.timeoutMs ?? TF_MS,
    reject: false,
    stdin: "ignore",
  });
  const stdout = String(r.stdout);
  const stderr = String(r.stderr);
  return { code: r.exitCode ?? -1, stdout, stderr, flat: `${stdout}\n${stderr}`.replace(/[\s│]+/g, " ") };
}

const scratch: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `resin-tf-${prefix}-`));
  scratch.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A copy of terraform/ without any working files a user may have left in it. */
function copyTree(): string {
  const dst = join(tempDir("tree"), "terraform");
  cpSync(TF_ROOT, dst, {
    recursive: true,
    filter: (src) => !/(^|\/)(\.terraform|\.terraform\.lock\.hcl|terraform\.tfstate[^/]*|plan\.json)$/.test(src),
  });
  return dst;
}

/** A directory with only the named files of one module directory. */
function copyFiles(moduleDir: string, files: string[]): string {
  const dst = tempDir(basename(moduleDir));
  for (const f of files) cpSync(join(TF_ROOT, moduleDir, f), join(dst, f));
  return dst;
}

// ---- parsing ----------------------------------------------------------------------

type Body = Record<string, any>;

function tfFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === ".terraform") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tfFiles(path));
    else if (entry.name.endsWith(".tf")) out.push(path);
  }
  return out.sort();
}

/** One Terraform module: its files' parsed bodies, merged (hcl2json gives blocks as arrays of bodies). */
interface Module {
  dir: string;
  variables: Record<string, Body>;
  outputs: Record<string, Body>;
  locals: Body;
  resources: Record<string, Record<string, Body>>;
  data: Record<string, Record<string, Body>>;
  terraform: Body[];
}

const modules = new Map<string, Module>();

function mod(dir: string): Module {
  const m = modules.get(dir);
  if (!m) throw new Error(`no .tf files parsed in terraform/${dir}`);
  return m;
}

beforeAll(async () => {
  for (const file of tfFiles(TF_ROOT)) {
    const dir = relative(TF_ROOT, dirname(file));
    const body = (await parseHcl2(file, readFileSync(file, "utf8"))) as Body;
    const m = modules.get(dir) ?? { dir, variables: {}, outputs: {}, locals: {}, resources: {}, data: {}, terraform: [] };
    modules.set(dir, m);
    for (const [name, bodies] of Object.entries<Body[]>(body.variable ?? {})) m.variables[name] = bodies[0]!;
    for (const [name, bodies] of Object.entries<Body[]>(body.output ?? {})) m.outputs[name] = bodies[0]!;
    for (const l of (body.locals ?? []) as Body[]) Object.assign(m.locals, l);
    for (const kind of ["resource", "data"] as const) {
      for (const [type, named] of Object.entries<Record<string, Body[]>>(body[kind] ?? {})) {
        const target = kind === "resource" ? m.resources : m.data;
        target[type] ??= {};
        for (const [name, bodies] of Object.entries(named)) target[type]![name] = bodies[0]!;
      }
    }
    m.terraform.push(...((body.terraform ?? []) as Body[]));
  }
});

interface PortRule {
  from: number;
  to: number;
  protocol: string;
}

function covers(rules: PortRule[], port: number, protocol: string): boolean {
  return rules.some((r) => r.protocol === protocol && r.from <= port && port <= r.to);
}

describe("terraform/: every .tf parsed by the HCL2 parser", () => {
  it("finds the modules and examples", () => {
    expect([...modules.keys()].sort()).toEqual(["examples/aws", "examples/libvirt", "examples/local", "modules/aws", "modules/libvirt"]);
  });

  it("every variable has a type and a description; every output a description", () => {
    for (const m of modules.values()) {
      for (const [name, v] of Object.entries(m.variables)) {
        expect(v.type, `terraform/${m.dir}: variable "${name}" has no type`).toMatch(/^\$\{.+\}$/);
        expect(String(v.description ?? "").length, `terraform/${m.dir}: variable "${name}" has no description`).toBeGreaterThan(10);
        for (const rule of (v.validation ?? []) as Body[]) {
          expect(rule.condition, `terraform/${m.dir}: variable "${name}": validation without condition`).toBeTruthy();
          expect(String(rule.error_message ?? ""), `terraform/${m.dir}: variable "${name}": validation without message`).toMatch(/\.$|`$/);
        }
      }
      for (const [name, o] of Object.entries(m.outputs)) {
        expect(String(o.description ?? "").length, `terraform/${m.dir}: output "${name}" has no description`).toBeGreaterThan(10);
      }
    }
  });

  it("every module pins Terraform and its providers with ~>", () => {
    for (const m of modules.values()) {
      const versions = m.terraform.map((t) => t.required_version).filter(Boolean);
      expect(versions, `terraform/${m.dir}: required_version`).toEqual([expect.stringMatching(/^~> 1\.\d+$/)]);
      for (const block of m.terraform) {
        for (const providers of (block.required_providers ?? []) as Body[]) {
          for (const [name, p] of Object.entries<Body>(providers)) {
            expect(p.version, `terraform/${m.dir}: provider ${name}`).toMatch(/^~> \d+\.\d+(\.\d+)?$/);
            expect(p.source, `terraform/${m.dir}: provider ${name}`).toMatch(/^[a-z0-9-]+\/[a-z0-9-]+$/);
          }
        }
      }
    }
  });

  it("the modules validate the plan file: format resin-plan/1; AWS needs a dhcp plan with an AWS join string", () => {
    for (const dir of ["modules/aws", "modules/libvirt"]) {
      const plan = mod(dir).variables.plan_file!;
      const messages = (plan.validation as Body[]).map((v) => String(v.error_message)).join("\n");
      expect(messages).toContain('"resin-plan/1"');
    }
    const aws = (mod("modules/aws").variables.plan_file!.validation as Body[]).map((v) => String(v.error_message)).join("\n");
    expect(aws).toContain("needs a plan made with `--network dhcp`");
    expect(aws).toContain("provider=aws tag_key=");
  });

  it("the AWS module: image import, AMI, per-node launch template and auto-scaling group of one", () => {
    const m = mod("modules/aws");
    for (const type of ["aws_s3_object", "aws_ebs_snapshot_import", "aws_ami", "aws_launch_template", "aws_autoscaling_group", "aws_security_group", "aws_iam_role", "aws_iam_instance_profile"]) {
      expect(Object.keys(m.resources), type).toContain(type);
    }
    const ami = m.resources.aws_ami!.role!;
    expect(ami).toMatchObject({ boot_mode: "uefi", ena_support: true, architecture: "${local.ami_architecture[each.key]}", imds_support: "v2.0", uefi_data: "${var.uefi_data}" });
    expect(ami.ebs_block_device[0].snapshot_id).toContain("aws_ebs_snapshot_import.disk");
    expect(m.resources.aws_ebs_snapshot_import!.disk!.disk_container[0].format).toBe("RAW");
    expect(m.resources.aws_s3_object!.disk!.source).toContain("files.disk_raw.path");

    const lt = m.resources.aws_launch_template!.node!;
    expect(lt.for_each).toBe("${local.nodes}");
    expect(lt.user_data).toContain("local.user_data[each.key]");
    expect(m.locals.user_data).toMatch(/base64gzip\(file\(node\.metadata\.path\)\)/);
    expect(lt.metadata_options[0]).toMatchObject({ http_tokens: "required", http_put_response_hop_limit: 1, http_protocol_ipv6: "disabled" });
    // The persist disk: a second EBS volume sized by the role.
    expect(lt.block_device_mappings).toHaveLength(1);
    expect(lt.block_device_mappings[0].ebs[0].volume_size).toContain("persist_disk_gib");

    const asg = m.resources.aws_autoscaling_group!.node!;
    expect(asg).toMatchObject({ min_size: 1, max_size: 1, desired_capacity: 1, for_each: "${local.nodes}" });
    expect(asg.dynamic.tag[0]).toMatchObject({ for_each: "${local.node_tags[each.key]}", content: [{ propagate_at_launch: true }] });
    expect(m.locals.node_tags).toContain('(local.join_args["tag_key"]) = local.join_args["tag_value"]');
    expect(m.locals.node_tags).toContain('"resin-role"');
    expect(m.locals.common_tags).toContain('"resin-cluster"');
  });

  it("the AWS nodes may only DescribeInstances (cloud auto-join)", () => {
    const m = mod("modules/aws");
    const statements = Object.values(m.data.aws_iam_policy_document!).flatMap((d) => d.statement as Body[]);
    const allowed = statements.filter((s) => !(s.actions as string[]).includes("sts:AssumeRole")).flatMap((s) => s.actions as string[]);
    expect(allowed).toEqual(["ec2:DescribeInstances"]);
    expect(Object.keys(m.resources.aws_iam_role_policy!)).toEqual(["auto_join"]);
    expect(m.resources.aws_iam_role_policy_attachment).toBeUndefined();
    expect(m.resources.aws_iam_policy).toBeUndefined();
    expect(m.resources.aws_launch_template!.node!.iam_instance_profile[0].arn).toBe("${aws_iam_instance_profile.node.arn}");
  });

  it("the AWS security group opens the HashiStack's ports within the group, and the API ports to api_cidrs", () => {
    const m = mod("modules/aws");
    const cluster = Object.values(m.locals.cluster_ports as Record<string, PortRule>);
    for (const port of [8300, 8301, 8302, 8501, 8503, 8600, 4646, 4647, 4648, 8200, 8201, 9100]) expect(covers(cluster, port, "tcp"), `tcp ${port}`).toBe(true);
    for (const port of [8301, 8302, 8600, 4648]) expect(covers(cluster, port, "udp"), `udp ${port}`).toBe(true);
    // Nothing else: no port outside those the services serve.
    for (const r of cluster) expect(r.to - r.from, JSON.stringify(r)).toBeLessThanOrEqual(2);
    const api = Object.values(m.locals.api_ports as Record<string, PortRule>);
    expect(api.map((r) => r.from).sort()).toEqual([4646, 8200, 8501]);
    const ingress = m.resources.aws_vpc_security_group_ingress_rule!;
    expect(ingress.cluster!).toMatchObject({ for_each: "${local.cluster_ports}", referenced_security_group_id: "${aws_security_group.cluster.id}" });
    expect(ingress.api!).toMatchObject({ for_each: "${local.api_rules}", cidr_ipv4: "${each.value.cidr}" });
    const egress = m.resources.aws_vpc_security_group_egress_rule!;
    expect(egress.https!).toMatchObject({ from_port: 443, to_port: 443, ip_protocol: "tcp" });
  });

  it("the libvirt module: network, image/root/persist volumes, cidata config drive, UEFI domain with the node's MAC", () => {
    const m = mod("modules/libvirt");
    expect(Object.keys(m.resources).sort()).toEqual(["libvirt_cloudinit_disk", "libvirt_domain", "libvirt_network", "libvirt_volume"]);
    expect(Object.keys(m.resources.libvirt_volume!).sort()).toEqual(["image", "persist", "root"]);
    expect(m.resources.libvirt_volume!.image!.source).toContain("files.disk_qcow2.path");
    expect(m.resources.libvirt_volume!.root!.base_volume_id).toContain("libvirt_volume.image[");
    expect(m.resources.libvirt_cloudinit_disk!.metadata!.user_data).toContain("file(each.value.metadata.path)");
    expect(m.variables.ovmf_code!.default).toBe("/usr/share/OVMF/OVMF_CODE.fd");
    const domain = m.resources.libvirt_domain!.node!;
    expect(domain.firmware).toBe("${local.node_platform[each.key].firmware.code}");
    expect(domain.machine).toBe("${local.node_platform[each.key].machine}");
    expect(domain.arch).toBe("${local.node_platform[each.key].arch}");
    expect(domain.cloudinit).toBe("${libvirt_cloudinit_disk.metadata[each.key].id}");
    expect(domain.disk.map((d: Body) => d.volume_id)).toEqual(["${libvirt_volume.root[each.key].id}", "${libvirt_volume.persist[each.key].id}"]);
    expect(domain.network_interface[0]).toMatchObject({ network_id: "${libvirt_network.cluster.id}", mac: "${each.value.macs.cluster}", addresses: ["${each.value.address}"] });
    // One NIC: a node without the plan's host NIC serves its status endpoint on the cluster address.
    expect(domain.network_interface).toHaveLength(1);
    expect(Object.keys(m.resources.libvirt_network!)).toEqual(["cluster"]);
    expect(m.resources.libvirt_network!.cluster!).toMatchObject({ mode: "none", addresses: ["${local.cidr}"] });
    expect(domain.xml[0].xslt).toContain("domain.xsl");
    const xsl = readFileSync(join(TF_ROOT, "modules/libvirt/domain.xsl"), "utf8");
    expect(xsl).toContain("<serial>cidata</serial>");
    expect(xsl).toContain("<serial>persist</serial>");
    expect(xsl).toContain('bus="virtio"');
  });

  it("examples/local uses only built-in Terraform: no required_providers, only terraform_data", () => {
    const m = mod("examples/local");
    for (const t of m.terraform) expect(t.required_providers, "examples/local must need no provider").toBeUndefined();
    expect(Object.keys(m.resources)).toEqual(["terraform_data"]);
    expect(m.data).toEqual({});
    expect(Object.fromEntries(Object.entries(m.variables).map(([k, v]) => [k, v.default]))).toEqual({
      name: "tf-local",
      nodes: 3,
      role: "consul-server",
      arch: "amd64",
      channel: "debian",
      resin: null,
      keep_data: true,
      up_timeout: 300,
    });
    const cluster = m.resources.terraform_data!.cluster!;
    const provisioners = cluster.provisioner["local-exec"] as Body[];
    expect(provisioners.map((p) => p.when ?? "create")).toEqual(["create", "create", "${destroy}"]);
    expect(provisioners[0]!.command).toContain('up --name "$NAME" --nodes "$NODES" --role "$ROLE" --arch "$ARCH" --channel "$CHANNEL"');
    expect(provisioners[1]!.command).toContain('status --name "$NAME"');
    // A destroy-time provisioner may refer to nothing but self.
    const destroy = JSON.stringify(provisioners[2]);
    expect(destroy).not.toMatch(/\b(var|local|path|module)\./);
    expect(destroy).toContain("down --name");
    expect(destroy).toContain("destroy");
    expect(destroy).toContain("--yes");
  });
});

// ---- with the engine (terraform or tofu) -------------------------------------------------------

describe("terraform fmt", () => {
  it("every file under terraform/ is formatted (terraform fmt -check -recursive -diff)", async () => {
    const r = await terraform(REPO, ["fmt", "-check", "-recursive", "-diff", "-no-color", "terraform"]);
    expect(r.code, `terraform fmt found unformatted files (run \`terraform fmt -recursive terraform\`):\n${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe("examples/local with real Terraform (no provider needed)", () => {
  let dir = "";
  beforeAll(async () => {
    dir = copyFiles("examples/local", ["versions.tf", "variables.tf", "main.tf", "outputs.tf"]);
    const init = await terraform(dir, ["init", "-backend=false", "-input=false", "-no-color"]);
    if (init.code !== 0) throw new Error(`terraform init of examples/local failed (it needs no provider):\n${init.stdout}${init.stderr}`);
  });

  it("init -backend=false and validate succeed offline", async () => {
    const r = await terraform(dir, ["validate", "-no-color"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("The configuration is valid");
  });

  it("plan with good variables adds one terraform_data and runs nothing", async () => {
    const r = await terraform(dir, ["plan", "-input=false", "-no-color", "-refresh=false", "-var", "resin=/nonexistent/resin", "-var", "name=tf-ok"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.flat).toContain("Plan: 1 to add, 0 to change, 0 to destroy.");
    expect(r.flat).toContain('status_command = "/nonexistent/resin status --name tf-ok"');
  });

  it("plan with nodes = 0 fails with the nodes validation message", async () => {
    const r = await terraform(dir, ["plan", "-input=false", "-no-color", "-var", "nodes=0"]);
    expect(r.code).toBe(1);
    expect(r.flat).toContain("The number of nodes must be a whole number from 1 to 200.");
  });

  it("plan with an uppercase name or an unknown channel fails with their validation messages", async () => {
    const r = await terraform(dir, ["plan", "-input=false", "-no-color", "-var", "name=Prod", "-var", "channel=nightly"]);
    expect(r.code).toBe(1);
    expect(r.flat).toContain("The cluster name must be lowercase letters, digits and '-', starting with a letter, at most 31 characters (as resin requires).");
    expect(r.flat).toContain('The channel must be "debian" or "official".');
  });

  it("plan with an unknown architecture fails with its validation message", async () => {
    const r = await terraform(dir, ["plan", "-input=false", "-no-color", "-var", "arch=x86_64"]);
    expect(r.code).toBe(1);
    expect(r.flat).toContain('The arch must be "amd64" or "arm64".');
  });

  it("apply runs resin up then resin status; destroy runs resin down, or resin destroy --yes when keep_data = false", async () => {
    const work = copyFiles("examples/local", ["versions.tf", "variables.tf", "main.tf", "outputs.tf"]);
    const log = join(work, "resin-calls.log");
    const fake = join(work, "fake resin");
    // A stand-in for bin/resin that records its arguments; `status` exits $FAKE_STATUS.
    writeFileSync(fake, `#!/bin/sh\necho "$*" >> "$FAKE_LOG"\n[ "$1" = status ] && exit "\${FAKE_STATUS:-0}"\nexit 0\n`);
    chmodSync(fake, 0o755);
    const env = { FAKE_LOG: log };
    const calls = () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []);
    const vars = ["-var", `resin=${fake}`, "-var", "name=tf-fake", "-var", "nodes=5", "-var", "role=control-plane", "-var", "channel=official"];

    expect((await terraform(work, ["init", "-input=false", "-no-color"], { env })).code).toBe(0);
    const apply = await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars], { env });
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(calls()).toEqual(["up --name tf-fake --nodes 5 --role control-plane --arch amd64 --channel official --timeout 300", "status --name tf-fake"]);
    const out = await terraform(work, ["output", "-json"], { env });
    expect(JSON.parse(out.stdout)).toMatchObject({ name: { value: "tf-fake" }, status_command: { value: `${fake} status --name tf-fake` } });

    // A second apply with nothing changed runs nothing.
    expect((await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars], { env })).code).toBe(0);
    expect(calls()).toHaveLength(2);

    // keep_data = false changes only what destroy will do: an update in place, no resin call.
    const flip = await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars, "-var", "keep_data=false"], { env });
    expect(flip.code, flip.stdout + flip.stderr).toBe(0);
    expect(flip.flat).toContain("0 added, 1 changed, 0 destroyed");
    expect(calls()).toHaveLength(2);

    const destroy = await terraform(work, ["destroy", "-auto-approve", "-input=false", "-no-color", ...vars, "-var", "keep_data=false"], { env });
    expect(destroy.code, destroy.stdout + destroy.stderr).toBe(0);
    expect(calls().slice(2)).toEqual(["destroy tf-fake --yes"]);

    // arm64: passed to resin up, and a different cluster (replaced); amd64 is not a trigger, so a cluster made before the variable is kept.
    rmSync(log);
    const arm = await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars, "-var", "arch=arm64"], { env });
    expect(arm.code, arm.stdout + arm.stderr).toBe(0);
    expect(calls()).toEqual(["up --name tf-fake --nodes 5 --role control-plane --arch arm64 --channel official --timeout 300", "status --name tf-fake"]);
    expect((await terraform(work, ["destroy", "-auto-approve", "-input=false", "-no-color", ...vars, "-var", "arch=arm64"], { env })).code).toBe(0);

    // Default keep_data: destroy stops the cluster and keeps its data.
    rmSync(log);
    expect((await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars], { env })).code).toBe(0);
    expect((await terraform(work, ["destroy", "-auto-approve", "-input=false", "-no-color", ...vars], { env })).code).toBe(0);
    expect(calls()).toEqual(["up --name tf-fake --nodes 5 --role control-plane --arch amd64 --channel official --timeout 300", "status --name tf-fake", "down --name tf-fake"]);
  });

  it("apply fails when resin status says the cluster is not healthy", async () => {
    const work = copyFiles("examples/local", ["versions.tf", "variables.tf", "main.tf", "outputs.tf"]);
    const fake = join(work, "resin");
    writeFileSync(fake, `#!/bin/sh\n[ "$1" = status ] && { echo "cluster tf-sick: NOT healthy"; exit 3; }\nexit 0\n`);
    chmodSync(fake, 0o755);
    expect((await terraform(work, ["init", "-input=false", "-no-color"])).code).toBe(0);
    const apply = await terraform(work, ["apply", "-auto-approve", "-input=false", "-no-color", "-var", `resin=${fake}`, "-var", "name=tf-sick"]);
    expect(apply.code).toBe(1);
    expect(apply.flat).toContain("NOT healthy");
    expect(apply.flat).toContain("exit status 3");
  });
});

// ---- the modules' plan-derived values, evaluated without their providers ---------------

interface Fixture {
  dir: string;
  plans: Record<"dhcp" | "static" | "badFormat" | "noAwsJoin" | "arm64Dhcp" | "arm64Static" | "signedDhcp", string>;
  metadata: Record<string, Buffer>;
}

/** A synthetic resin-plan/1 manifest (three consul-server nodes) and its metadata files. */
function planFixture(): Fixture {
  const dir = tempDir("plan");
  mkdirSync(join(dir, "image"));
  mkdirSync(join(dir, "nodes"));
  const file = (name: string, data: Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, data, { mode: 0o600 });
    return { path, sha256: createHash("sha256").update(data).digest("hex"), bytes: data.length };
  };
  const files = Object.fromEntries(
    ["kernel", "initrd", "rootfs", "disk_raw", "disk_qcow2"].map((f) => [f, file(`image/${f}`, Buffer.from(`fake ${f}\n`))]),
  );
  const metadata: Record<string, Buffer> = {};
  const nodes = [1, 2, 3].map((i) => {
    const name = `prod-${i}`;
    metadata[name] = Buffer.from(JSON.stringify({ hostname: { content: name }, consul: { "consul.hcl": { content: `node_name = "${name}"\n`.repeat(200) } } }));
    return {
      name,
      index: i,
      role: "consul-server",
      address: null as string | null,
      prefix: null as number | null,
      macs: { cluster: `52:54:00:aa:00:0${i}`, host: `52:54:00:bb:00:0${i}` },
      metadata: file(`nodes/${name}.json`, metadata[name]),
    };
  });
  const base = {
    format: "resin-plan/1",
    cluster: { name: "prod", datacenter: "dc1", channel: "official", network: { mode: "dhcp", join: "provider=aws tag_key=resin-join tag_value=prod-east" } as Record<string, unknown>, caCertificate: join(dir, "ca.pem") },
    roles: {
      "consul-server": {
        image: { digest: `sha256:${"ab".repeat(32)}`, dir: join(dir, "image"), files },
        vm: { memory_mib: 1024, cpus: 1, persist_disk_gib: 2 },
        ports: { "consul.https": 8501, "base.status": 9100 },
      },
    },
    nodes,
  };
  const write = (name: string, plan: unknown) => {
    writeFileSync(join(dir, name), JSON.stringify(plan, null, 2));
    return join(dir, name);
  };
  const staticPlan = structuredClone(base);
  staticPlan.cluster.network = { mode: "static", subnet: "10.88.0.0/24" };
  staticPlan.nodes.forEach((n, i) => Object.assign(n, { address: `10.88.0.${11 + i}`, prefix: 24 }));
  const noAwsJoin = structuredClone(base);
  noAwsJoin.cluster.network = { mode: "dhcp", join: "provider=mdns service=consul" };
  // The same cluster with arm64 consul-servers, as resin plan --arch arm64 writes it (the
  // plans above have no arch: a plan from before Resin recorded it, amd64).
  const arm64 = (plan: typeof base) => {
    const p = structuredClone(plan);
    Object.assign(p.roles["consul-server"], { arch: "arm64", platform: { aws: { architecture: "arm64", instance_type: "t4g.small" }, libvirt: { arch: "aarch64", machine: "virt" } } });
    return p;
  };
  const signed = structuredClone(base);
  Object.assign(signed.roles["consul-server"].image, { signature: { certSha256: "5e".repeat(32) } });
  return {
    dir,
    metadata,
    plans: {
      dhcp: write("dhcp.json", base),
      static: write("static.json", staticPlan),
      badFormat: write("bad-format.json", { ...base, format: "resin-plan/0" }),
      noAwsJoin: write("no-aws-join.json", noAwsJoin),
      arm64Dhcp: write("arm64-dhcp.json", arm64(base)),
      arm64Static: write("arm64-static.json", arm64(staticPlan)),
      // As resin plan writes it for an image built with resin build --sign.
      signedDhcp: write("signed-dhcp.json", signed),
    },
  };
}

/** A provider-free copy of a module (variables.tf + main.tf) with its locals as outputs. */
async function localsProbe(moduleDir: string, locals: string[]): Promise<string> {
  const dir = copyFiles(moduleDir, ["variables.tf", "main.tf"]);
  writeFileSync(join(dir, "probe.tf"), locals.map((l) => `output "${l}" {\n  value = local.${l}\n}\n`).join("\n"));
  const init = await terraform(dir, ["init", "-input=false", "-no-color"]);
  if (init.code !== 0) throw new Error(`terraform init of the ${moduleDir} probe failed:\n${init.stdout}${init.stderr}`);
  return dir;
}

async function evaluate(dir: string, vars: string[]): Promise<{ run: Run; values: Record<string, any> }> {
  const run = await terraform(dir, ["apply", "-auto-approve", "-input=false", "-no-color", ...vars.flatMap((v) => ["-var", v])]);
  if (run.code !== 0) return { run, values: {} };
  const out = await terraform(dir, ["output", "-json"]);
  return { run, values: Object.fromEntries(Object.entries<{ value: unknown }>(JSON.parse(out.stdout)).map(([k, v]) => [k, v.value])) };
}

const errorCount = (r: Run) => (r.flat.match(/Error: Invalid value for variable/g) ?? []).length;

describe("modules/aws: plan-derived values and validations, by real Terraform without the AWS provider", () => {
  let fx: Fixture;
  let probe = "";
  const common = ["bucket=resin-images", 'subnet_ids=["subnet-0a1","subnet-0b2"]', 'api_cidrs=["10.0.0.0/16","192.168.7.0/24"]', 'tags={"resin-cluster"="not-this","team"="infra"}'];
  beforeAll(async () => {
    fx = planFixture();
    probe = await localsProbe("modules/aws", ["join_args", "node_tags", "node_subnets", "api_rules", "user_data", "image_ids", "ami_architecture", "role_instance_type"]);
  });

  it("architectures: a plan without them is x86_64 on t3.small; an arm64 role's AMI is arm64 on Graviton; instance_types and default_instance_type still win", async () => {
    const old = await evaluate(probe, [`plan_file=${fx.plans.dhcp}`, ...common]);
    expect(old.run.code, old.run.flat).toBe(0);
    expect(old.values.ami_architecture).toEqual({ "consul-server": "x86_64" });
    expect(old.values.role_instance_type).toEqual({ "consul-server": "t3.small" });
    const arm = await evaluate(probe, [`plan_file=${fx.plans.arm64Dhcp}`, ...common]);
    expect(arm.run.code, arm.run.flat).toBe(0);
    expect(arm.values.ami_architecture).toEqual({ "consul-server": "arm64" });
    expect(arm.values.role_instance_type).toEqual({ "consul-server": "t4g.small" });
    const named = await evaluate(probe, [`plan_file=${fx.plans.arm64Dhcp}`, ...common, 'instance_types={"consul-server"="m7g.large"}']);
    expect(named.values.role_instance_type).toEqual({ "consul-server": "m7g.large" });
    const all = await evaluate(probe, [`plan_file=${fx.plans.arm64Dhcp}`, ...common, "default_instance_type=c7g.medium"]);
    expect(all.values.role_instance_type).toEqual({ "consul-server": "c7g.medium" });
  });

  it("a dhcp plan: join tag on every node, nodes spread over subnets, API rules per port and network, gzipped metadata as user data", async () => {
    const { run, values } = await evaluate(probe, [`plan_file=${fx.plans.dhcp}`, ...common]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(values.join_args).toEqual({ provider: "aws", tag_key: "resin-join", tag_value: "prod-east" });
    expect(values.node_tags["prod-2"]).toEqual({ Name: "prod-2", "resin-cluster": "prod", "resin-role": "consul-server", "resin-node": "prod-2", "resin-join": "prod-east", team: "infra" });
    expect(values.node_subnets).toEqual({ "prod-1": "subnet-0a1", "prod-2": "subnet-0b2", "prod-3": "subnet-0a1" });
    expect(Object.keys(values.api_rules).sort()).toEqual(
      ["consul-https", "nomad-http", "vault-api"].flatMap((p) => [`${p}-10.0.0.0/16`, `${p}-192.168.7.0/24`]).sort(),
    );
    expect(values.api_rules["vault-api-192.168.7.0/24"]).toMatchObject({ from: 8200, to: 8200, protocol: "tcp", cidr: "192.168.7.0/24" });
    for (const [name, data] of Object.entries(fx.metadata)) {
      expect(gunzipSync(Buffer.from(values.user_data[name], "base64")).equals(data), `user data of ${name}`).toBe(true);
    }
    expect(values.image_ids).toEqual({ "consul-server": "ab".repeat(32) });
  });

  it("a static plan is refused with one message that says why and what to run", async () => {
    const { run } = await evaluate(probe, [`plan_file=${fx.plans.static}`, ...common]);
    expect(run.code).toBe(1);
    expect(errorCount(run), run.flat).toBe(1);
    expect(run.flat).toContain("The AWS module needs a plan made with `--network dhcp`");
    expect(run.flat).toContain('resin plan --network dhcp --join "provider=aws tag_key=resin-cluster tag_value=NAME"');
  });

  it("a plan of another format, a missing plan and a join string without AWS are refused", async () => {
    const bad = await evaluate(probe, [`plan_file=${fx.plans.badFormat}`, ...common]);
    expect(errorCount(bad.run)).toBe(1);
    expect(bad.run.flat).toContain('is not a Resin plan of format "resin-plan/1"');
    const missing = await evaluate(probe, [`plan_file=${join(fx.dir, "nope.json")}`, ...common]);
    expect(errorCount(missing.run)).toBe(1);
    expect(missing.run.flat).toContain("The plan_file must name a readable JSON file");
    const join_ = await evaluate(probe, [`plan_file=${fx.plans.noAwsJoin}`, ...common]);
    expect(errorCount(join_.run)).toBe(1);
    expect(join_.run.flat).toContain("The plan's join string must name AWS cloud auto-join with a tag");
  });

  it("uefi_data (Secure Boot with the user's keys) takes a base64 variable store, and only with a plan whose images are all signed", async () => {
    // A stand-in for the blob: base64 text of the shape uefivars.py -o aws writes (its content is AWS's to read).
    const blob = Buffer.from("AMZNUEFI example variable store").toString("base64");
    const ok = await evaluate(probe, [`plan_file=${fx.plans.signedDhcp}`, ...common, `uefi_data=${blob}`]);
    expect(ok.run.code, ok.run.flat).toBe(0);
    const unsigned = await evaluate(probe, [`plan_file=${fx.plans.dhcp}`, ...common, `uefi_data=${blob}`]);
    expect(unsigned.run.code).toBe(1);
    expect(errorCount(unsigned.run), unsigned.run.flat).toBe(1);
    expect(unsigned.run.flat).toContain("uefi_data turns Secure Boot on, and the plan has a role whose image is not signed");
    expect(unsigned.run.flat).toContain("resin build --sign KEY,CERT");
    const notBase64 = await evaluate(probe, [`plan_file=${fx.plans.signedDhcp}`, ...common, "uefi_data=not base64!"]);
    expect(errorCount(notBase64.run), notBase64.run.flat).toBe(1);
    expect(notBase64.run.flat).toContain("The uefi_data must be a UEFI variable store in AWS's format, as base64 text");
    // Without it, unsigned images are fine: Secure Boot stays off.
    expect((await evaluate(probe, [`plan_file=${fx.plans.dhcp}`, ...common])).run.code).toBe(0);
  });

  it("bad variables are refused with their messages", async () => {
    const { run } = await evaluate(probe, [`plan_file=${fx.plans.dhcp}`, "bucket=Not_A_Bucket", "subnet_ids=[]", 'api_cidrs=["everyone"]']);
    expect(run.code).toBe(1);
    expect(run.flat).toContain("The bucket must be an S3 bucket name");
    expect(run.flat).toContain("Give at least one subnet id");
    expect(run.flat).toContain("Each entry of api_cidrs must be an IPv4 network in CIDR form");
  });
});

describe("modules/libvirt: plan-derived values and validations, by real Terraform without the libvirt provider", () => {
  let fx: Fixture;
  let probe = "";
  beforeAll(async () => {
    fx = planFixture();
    probe = await localsProbe("modules/libvirt", ["cidr", "images", "node_image", "node_in_network", "node_platform"]);
  });

  it("architectures: a plan without them is x86_64/q35 on OVMF; arm64 nodes are aarch64/virt on AAVMF (the firmware variables still apply)", async () => {
    const old = await evaluate(probe, [`plan_file=${fx.plans.static}`]);
    expect(old.run.code, old.run.flat).toBe(0);
    expect(old.values.node_platform["prod-1"]).toEqual({ arch: "x86_64", machine: "q35", firmware: { code: "/usr/share/OVMF/OVMF_CODE.fd", vars: "/usr/share/OVMF/OVMF_VARS.fd" } });
    const arm = await evaluate(probe, [`plan_file=${fx.plans.arm64Static}`, "aavmf_code=/opt/fw/AAVMF_CODE.fd"]);
    expect(arm.run.code, arm.run.flat).toBe(0);
    for (const n of ["prod-1", "prod-2", "prod-3"]) {
      expect(arm.values.node_platform[n]).toEqual({ arch: "aarch64", machine: "virt", firmware: { code: "/opt/fw/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd" } });
    }
    const bad = await evaluate(probe, [`plan_file=${fx.plans.arm64Static}`, "aavmf_vars_template=AAVMF_VARS.fd"]);
    expect(bad.run.code).toBe(1);
    expect(bad.run.flat).toContain("The aavmf_vars_template must be an absolute path on the KVM host.");
  });

  it("a static plan: the plan's subnet, one image volume, every node's address in the network", async () => {
    const { run, values } = await evaluate(probe, [`plan_file=${fx.plans.static}`]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(values.cidr).toBe("10.88.0.0/24");
    expect(Object.keys(values.images)).toEqual(["ab".repeat(32)]);
    expect(values.node_image).toEqual({ "prod-1": "ab".repeat(32), "prod-2": "ab".repeat(32), "prod-3": "ab".repeat(32) });
    expect(values.node_in_network).toEqual({ "prod-1": true, "prod-2": true, "prod-3": true });
  });

  it("a dhcp plan is refused with one message that says why", async () => {
    const { run } = await evaluate(probe, [`plan_file=${fx.plans.dhcp}`]);
    expect(run.code).toBe(1);
    expect(errorCount(run), run.flat).toBe(1);
    expect(run.flat).toContain("The libvirt module needs a static plan (`resin plan` without `--network dhcp`)");
  });

  it("a static plan with another network, or a plan of another format, is refused", async () => {
    const other = await evaluate(probe, [`plan_file=${fx.plans.static}`, "network_cidr=10.99.0.0/24"]);
    expect(other.run.code).toBe(1);
    expect(other.run.flat).toContain("The plan fixes every node's address in its subnet");
    const bad = await evaluate(probe, [`plan_file=${fx.plans.badFormat}`, "ovmf_code=OVMF_CODE.fd"]);
    expect(bad.run.code).toBe(1);
    expect(bad.run.flat).toContain('is not a Resin plan of format "resin-plan/1"');
    expect(bad.run.flat).toContain("The ovmf_code must be an absolute path on the KVM host.");
  });
});

// ---- the modules with their providers, where they can be installed ---------------------

describe("init and validate with the providers (AWS, libvirt)", () => {
  // Tests never reach past loopback, so providers come only from a local mirror
  // (`terraform providers mirror DIR` on a connected machine, then RESIN_TF_PROVIDER_MIRROR=DIR).
  const mirror = process.env.RESIN_TF_PROVIDER_MIRROR;
  const dirs = ["modules/aws", "modules/libvirt", "examples/aws", "examples/libvirt"];
  let tree = "";
  let cliConfig = "";
  const inits = new Map<string, Promise<Run>>();
  beforeAll(() => {
    if (!mirror) return;
    tree = copyTree();
    cliConfig = join(tree, "mirror.tfrc");
    writeFileSync(cliConfig, `provider_installation {\n  filesystem_mirror {\n    path = ${JSON.stringify(mirror)}\n  }\n}\n`);
    for (const d of dirs) inits.set(d, terraform(join(tree, d), ["init", "-backend=false", "-input=false", "-no-color"], { env: { TF_CLI_CONFIG_FILE: cliConfig } }));
  });

  for (const d of dirs) {
    it(`${d}: terraform init -backend=false and validate`, async (ctx) => {
      if (!mirror) {
        const note = `terraform/${d}: skipped: ${NO_PROVIDERS}; set RESIN_TF_PROVIDER_MIRROR to a directory made by \`terraform providers mirror\` to run it`;
        console.warn(note);
        ctx.skip(note);
      }
      const init = await inits.get(d)!;
      expect(init.code, `terraform init from the mirror ${mirror}:\n${init.stdout}${init.stderr}`).toBe(0);
      const r = await terraform(join(tree, d), ["validate", "-no-color"], { env: { TF_CLI_CONFIG_FILE: cliConfig } });
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });
  }
});

// ---- the OpenTofu fallback, whatever engine this machine has ---------------------------

describe("OpenTofu built from its Go module (the fallback when there is no terraform)", () => {
  let tofu: Awaited<ReturnType<typeof buildOpenTofu>>;
  const lines: string[] = [];
  beforeAll(async () => {
    const started = Date.now();
    // Cold: a compile of many minutes, with progress on stderr. Warm: from the recipe cache.
    tofu = await buildOpenTofu({ log: (m) => (lines.push(m), process.stderr.write(`${m}\n`)) });
    const how = lines.some((l) => l.includes("go: building")) ? "compiled" : "from the cache";
    console.log(`test/unit/terraform.test.ts: OpenTofu ${tofu.version} ${how} in ${((Date.now() - started) / 1000).toFixed(1)} s: ${tofu.path} (${(tofu.build.size / 1e6).toFixed(1)} MB)`);
  }, 120 * 60_000);

  it("is OpenTofu 1.12.6 as released (no -dev marker), from the pinned module, its hcl replace applied, without cgo", async () => {
    const v = await execa(tofu.path, ["version"], { env: { ...process.env, ...ENGINE_ENV }, reject: false, timeout: TF_MS });
    expect(v.exitCode).toBe(0);
    // The whole line: a -dev build would say "OpenTofu v1.12.6-dev".
    expect(String(v.stdout)).toMatch(new RegExp(`^OpenTofu v${OPENTOFU.version.replace(/\./g, "\\.")}$`, "m"));
    expect(tofu.engine).toBe("tofu");
    expect(tofu.path.startsWith(join(cacheHome(), "tools", "tofu-"))).toBe(true);
    expect(createHash("sha256").update(readFileSync(tofu.path)).digest("hex")).toBe(tofu.build.sha256);
    expect(tofu.build.recipe).toMatchObject({ product: "opentofu", module: "github.com/opentofu/opentofu", package: "github.com/opentofu/opentofu/cmd/tofu", cgo: false });
    expect(tofu.build.recipe.ldflags).toBe("-s -w -X github.com/opentofu/opentofu/version.dev=no");
    expect(tofu.build.modules[0]).toBe("github.com/opentofu/opentofu@v1.12.6");
    // OpenTofu's own go.mod replaces HashiCorp's hcl with its fork; the wrapper repeats it.
    expect(tofu.build.modules).toContainEqual(expect.stringMatching(/^github\.com\/hashicorp\/hcl\/v2@v2\.20\.1 => github\.com\/opentofu\/hcl\/v2@v2\.20\.2-/));
  });

  it("runs init -backend=false and validate on examples/local with nowhere to download from", async () => {
    const dir = copyFiles("examples/local", ["versions.tf", "variables.tf", "main.tf", "outputs.tf"]);
    // Any provider would have to come from an empty mirror, and any HTTP(S) request goes
    // to a closed loopback port: init passes only because terraform_data is built in.
    const empty = tempDir("no-providers");
    const rc = join(tempDir("tofurc"), "none.tofurc");
    writeFileSync(rc, `provider_installation {\n  filesystem_mirror {\n    path = ${JSON.stringify(empty)}\n  }\n}\n`);
    const env = { ...process.env, ...ENGINE_ENV, TF_CLI_CONFIG_FILE: rc, HTTPS_PROXY: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", NO_PROXY: "" };
    const init = await execa(tofu.path, ["init", "-backend=false", "-input=false", "-no-color"], { cwd: dir, env, reject: false, all: true, timeout: TF_MS });
    expect(init.exitCode, String(init.all)).toBe(0);
    expect(String(init.all)).toContain("OpenTofu has been successfully initialized!");
    expect(existsSync(join(dir, ".terraform", "providers"))).toBe(false);
    const validate = await execa(tofu.path, ["validate", "-no-color"], { cwd: dir, env, reject: false, all: true, timeout: TF_MS });
    expect(validate.exitCode, String(validate.all)).toBe(0);
    expect(String(validate.all)).toContain("The configuration is valid.");
    // The same offline setup refuses a configuration that needs a provider: the check above can fail.
    writeFileSync(join(dir, "needs.tf"), 'terraform {\n  required_providers {\n    null = {\n      source = "hashicorp/null"\n    }\n  }\n}\n');
    const refused = await execa(tofu.path, ["init", "-backend=false", "-input=false", "-no-color"], { cwd: dir, env, reject: false, all: true, timeout: TF_MS });
    expect(refused.exitCode).toBe(1);
    expect(String(refused.all).replace(/[\s│]+/g, " ")).toContain("hashicorp/null");
  });

  describe("terraformBinary() picks the engine in order", () => {
    const fakeTerraform = (dir: string, version: string) => {
      writeFileSync(join(dir, "terraform"), `#!/bin/sh\necho "Terraform v${version}"\necho "on linux_amd64"\n`, { mode: 0o755 });
    };

    it("no terraform and no tofu anywhere: OpenTofu from the build cache, without compiling again", async () => {
      const log: string[] = [];
      const b = await terraformBinary({ env: { PATH: tempDir("empty-path") }, wellKnown: [], log: (m) => log.push(m) });
      expect(b).toEqual({ path: tofu.path, engine: "tofu", version: OPENTOFU.version, source: "built from github.com/opentofu/opentofu@v1.12.6" });
      expect(log.filter((l) => l.includes("go: building")), "a warm lookup must not compile").toEqual([]);
    });

    it("tofu on PATH before a build; terraform (well-known place, then PATH) before tofu", async () => {
      const withTofu = tempDir("path-tofu");
      symlinkSync(tofu.path, join(withTofu, "tofu"));
      const withTerraform = tempDir("path-terraform");
      fakeTerraform(withTerraform, "1.99.0");
      expect(await terraformBinary({ env: { PATH: withTofu }, wellKnown: [] })).toEqual({ path: join(withTofu, "tofu"), engine: "tofu", version: OPENTOFU.version, source: "PATH" });
      // terraform is preferred even when tofu's directory comes first on PATH.
      expect(await terraformBinary({ env: { PATH: `${withTofu}:${withTerraform}` }, wellKnown: [] })).toEqual({ path: join(withTerraform, "terraform"), engine: "terraform", version: "1.99.0", source: "PATH" });
      const fixed = tempDir("well-known");
      fakeTerraform(fixed, "1.98.0");
      expect(await terraformBinary({ env: { PATH: `${withTofu}:${withTerraform}` }, wellKnown: [join(fixed, "terraform")] })).toMatchObject({ version: "1.98.0", source: fixed });
    });

    it("RESIN_TERRAFORM wins; a missing file or another program is refused in one line naming it and the fix", async () => {
      const withTerraform = tempDir("path-terraform");
      fakeTerraform(withTerraform, "1.99.0");
      expect(await terraformBinary({ env: { RESIN_TERRAFORM: tofu.path, PATH: withTerraform } })).toMatchObject({ path: tofu.path, engine: "tofu", source: "RESIN_TERRAFORM" });
      const missing = terraformBinary({ env: { RESIN_TERRAFORM: "/nonexistent/terraform", PATH: withTerraform } });
      await expect(missing).rejects.toThrow(/^RESIN_TERRAFORM=\/nonexistent\/terraform is not an executable file: point it at a terraform or tofu binary, or unset it/);
      await expect(terraformBinary({ env: { RESIN_TERRAFORM: "", PATH: withTerraform } })).rejects.toThrow(/^RESIN_TERRAFORM= is not an executable file/);
      const other = join(tempDir("other"), "not-terraform");
      writeFileSync(other, "#!/bin/sh\necho hello\n", { mode: 0o755 });
      const err = await terraformBinary({ env: { RESIN_TERRAFORM: other, PATH: withTerraform } }).catch((e: Error) => e);
      expect(String((err as Error).message)).toMatch(new RegExp(`^RESIN_TERRAFORM=${other}: .* is not a Terraform or OpenTofu binary \\(.*said: hello\\); point it at a terraform or tofu binary, or unset it$`));
      expect(String((err as Error).message)).not.toContain("\n");
    });
  });
});
