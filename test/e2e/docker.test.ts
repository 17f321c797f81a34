// The optional docker service (Debian's docker.io with containerd, runc and tini)
// runs containers in a Resin node. Nomad cannot be had here, so the node is a test
// role on the debian channel: base, a Consul server (what `resin up` waits for), cni
// and docker, plus a test-only service that imports a one-file image (the node's own
// busybox) into the engine and runs it on the default bridge network.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keepLogsOnFailure, killLeftovers, resin, resinAsync, resinStatus, userProject } from "./helpers.js";

const project = userProject("resin-e2e-docker-project-");
const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-docker-state-"));
keepLogsOnFailure(stateHome, "docker");
const env = { RESIN_STATE_HOME: stateHome, RESIN_PROJECT: project };
const name = "dock";

const SMOKE_RUN = `#!/bin/sh
# Test only: once dockerd answers, import an image holding busybox and run it.
exec 2>&1
until docker version >/dev/null 2>&1; do echo "smoke: waiting for dockerd"; sleep 2; done
if ! docker image inspect smoke >/dev/null 2>&1; then
  rm -rf /run/smoke && mkdir -p /run/smoke/bin && cp /bin/busybox /run/smoke/bin/busybox
  tar -C /run/smoke -cf - bin | docker import - smoke || { echo "smoke: import failed"; sleep 30; exit 1; }
fi
docker run --rm smoke /bin/busybox sh -c 'echo "smoke: hello from container pid $$"; /bin/busybox ip -4 addr show eth0 | /bin/busybox grep inet'
echo "smoke: docker run exited $?"
exec sleep 100000
`;

function logsOf(service: string): string {
  return resin(["logs", `${name}-1`, "--name", name, "--service", service, "-n", "400"], env).stdout;
}

describe("the docker service runs a container in a Resin node", () => {
  beforeAll(async () => {
    mkdirSync(join(project, "services", "docker-smoke"), { recursive: true });
    writeFileSync(join(project, "services", "docker-smoke", "run"), SMOKE_RUN, { mode: 0o755 });
    writeFileSync(
      join(project, "services", "docker-smoke", "service.yml"),
      "name: docker-smoke\ndescription: test only - run one container\nfiles:\n  - { src: run, dst: etc/service/docker-smoke/run, mode: \"0755\" }\n",
    );
    writeFileSync(
      join(project, "machines", "docker-host.yml"),
      "role: docker-host\ndescription: test only - the docker service on the debian channel\nservices: [base, consul, cni, docker, docker-smoke]\nconfig:\n  consul:\n    server: true\nvm: { memory_mib: 1536, cpus: 2, persist_disk_gib: 4 }\n",
    );
    const up = await resinAsync(["up", "--name", name, "--nodes", "1", "--role", "docker-host", "--channel", "debian", "--timeout", "420"], env);
    if (up.status !== 0) throw new Error(`resin up failed (exit ${up.status}):\n${up.stderr}`);
  });

  afterAll(async () => {
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  });

  it("dockerd starts on the persist disk with overlay2 and serves its socket", async () => {
    const deadline = Date.now() + 240_000;
    let log = "";
    while (!(log = logsOf("docker")).includes("API listen on /var/run/docker.sock")) {
      if (Date.now() > deadline) throw new Error(`dockerd did not start:\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 3000));
    }
    expect(log).toMatch(/graphdriver\(s\)=overlay2/);
    expect(log).toContain("Daemon has completed initialization");
  });

  it("imports an image and runs it on the bridge network (containerd, runc, cgroups, veth, iptables)", async () => {
    const deadline = Date.now() + 240_000;
    let log = "";
    while (!(log = logsOf("docker-smoke")).includes("smoke: docker run exited")) {
      if (Date.now() > deadline) throw new Error(`the smoke container did not run:\n${log.slice(-3000)}\ndockerd:\n${logsOf("docker").slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 3000));
    }
    expect(log).toMatch(/smoke: hello from container pid 1\b/);
    expect(log).toMatch(/inet 172\.17\.\d+\.\d+\/16/);
    expect(log).toContain("smoke: docker run exited 0");
    const docker = resinStatus(stateHome, name).nodes[0]!.services?.find((s) => s.name === "docker");
    expect(docker).toMatchObject({ state: "up", restarts: 0 });
  });
});
