// terraform/examples/local end to end: Terraform's (or OpenTofu's) built-in
// terraform_data drives the real resin CLI, which boots three real Consul servers in
// QEMU and stops them again.
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, inject } from "vitest";
import { execa } from "execa";
import { killLeftovers, processesUnder, repoRoot, resinAsync, resinStatus } from "./helpers.js";
import { describeEngine, ENGINE_ENV, terraformBinary } from "../tools/terraform.js";

// The engine: RESIN_TERRAFORM, terraform, tofu, or OpenTofu built from its Go module
// (test/tools/terraform.ts); never skipped for want of a binary.
const ENGINE = await terraformBinary();
const TERRAFORM = ENGINE.path;
console.log(`test/e2e/terraform.test.ts: engine ${describeEngine(ENGINE)}`);

// Made in beforeAll, so that a suite that fails to start leaves nothing behind.
let stateHome = "";
let workDir = "";
const env: Record<string, string> = {};
const name = "tf-e2e";
const clusterDir = () => join(stateHome, "clusters", name);
/** The variables every terraform command of this suite gets. */
const vars = ["-var", `resin=${join(repoRoot, "bin", "resin")}`, "-var", `name=${name}`, "-var", "nodes=3", "-var", "up_timeout=420"];

interface TfResult {
  status: number;
  output: string;
}

/** Run terraform without blocking the worker (see resinAsync in helpers.ts for why). */
async function terraform(args: string[], timeoutMs = 15 * 60_000): Promise<TfResult> {
  const r = await execa(TERRAFORM!, [...args, "-no-color"], {
    cwd: workDir,
    env: { ...process.env, ...env, ...ENGINE_ENV },
    timeout: timeoutMs,
    reject: false,
    stdin: "ignore",
    all: true,
  });
  return { status: r.exitCode ?? -1, output: String(r.all ?? "") };
}

describe(`terraform/examples/local: ${ENGINE.engine} apply and destroy drive resin`, () => {
  beforeAll(async () => {
    stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-tf-state-"));
    workDir = mkdtempSync(join(tmpdir(), "resin-e2e-tf-work-"));
    env.RESIN_STATE_HOME = stateHome;
    for (const f of ["versions.tf", "variables.tf", "main.tf", "outputs.tf"]) cpSync(join(repoRoot, "terraform", "examples", "local", f), join(workDir, f));
    const init = await terraform(["init", "-input=false"], 120_000);
    if (init.status !== 0) throw new Error(`terraform init failed (exit ${init.status}); it needs no provider:\n${init.output}`);
  });

  afterAll(async () => {
    // Whatever happened above, nothing outlives the suite.
    if (!stateHome) return;
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
    rmSync(workDir, { recursive: true, force: true });
  });

  it("terraform apply runs resin up and resin status: three healthy nodes with one leader", async () => {
    const started = Date.now();
    const apply = await terraform(["apply", "-auto-approve", "-input=false", ...vars]);
    expect(apply.status, `terraform apply failed:\n${apply.output.slice(-4000)}`).toBe(0);
    process.stderr.write(`e2e terraform (${describeEngine(ENGINE)}): apply (resin up + status) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
    expect(apply.output).toContain(`cluster ${name}: healthy`);

    const s = resinStatus(stateHome, name);
    expect(s.nodes.map((n) => n.vm.state)).toEqual(["running", "running", "running"]);
    expect(s.healthy).toBe(true);
    expect(s.leader).toMatch(/^10\.88\.0\.1[123]:8300$/);
    expect(new Set(s.nodes.map((n) => n.consul?.leader))).toEqual(new Set([s.leader]));
    // It boots the image set built once for the run, as `resin up` does.
    const digest = inject("imageDigests")["consul-server"];
    expect(s.nodes.map((n) => n.image)).toEqual([digest, digest, digest]);
    expect(processesUnder(stateHome).length).toBe(4); // three VMs and one switch
  });

  it("its outputs name the cluster and the status command", async () => {
    const out = await execa(TERRAFORM!, ["output", "-json"], { cwd: workDir, env: { ...process.env, ...ENGINE_ENV }, reject: false });
    expect(out.exitCode).toBe(0);
    const outputs = JSON.parse(String(out.stdout)) as Record<string, { value: string }>;
    expect(outputs.name?.value).toBe(name);
    expect(outputs.status_command?.value).toBe(`${join(repoRoot, "bin", "resin")} status --name ${name}`);
  });

  it("a second terraform apply changes nothing and runs nothing", async () => {
    const apply = await terraform(["apply", "-auto-approve", "-input=false", ...vars], 120_000);
    expect(apply.status, apply.output).toBe(0);
    expect(apply.output).toContain("0 added, 0 changed, 0 destroyed");
    expect(apply.output).not.toContain("resin up");
  });

  it("terraform destroy runs resin down: no VM or switch remains, every node stopped, disks and secrets kept", async () => {
    const destroy = await terraform(["destroy", "-auto-approve", "-input=false", ...vars]);
    expect(destroy.status, `terraform destroy failed:\n${destroy.output.slice(-4000)}`).toBe(0);
    expect(processesUnder(stateHome)).toEqual([]);
    const s = resinStatus(stateHome, name); // exits 3 (not healthy); its JSON still says why
    expect(s.nodes.map((n) => n.vm.state)).toEqual(["stopped", "stopped", "stopped"]);
    expect(s.healthy).toBe(false);
    // keep_data = true (the default): `resin down`, not `resin destroy`.
    expect(existsSync(join(clusterDir(), "cluster.json"))).toBe(true);
    expect(existsSync(join(clusterDir(), "secrets.json"))).toBe(true);
  });
});
