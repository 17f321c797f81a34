// A service's Consul registrations and kernel parameters: the spec's checks, the files
// rendered into the image, the per-node token policy, the stage-1 script that applies
// sysctl (under sh and busybox sh, against a fake /proc/sys), and what status shows.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseYaml, type Service } from "../../cli/spec/load.js";
import { ServiceSchema } from "../../cli/spec/schema.js";
import { consulServiceDefinitions, consulServiceNames, sysctlLines } from "../../cli/image/registrations.js";
import { consulAgentPolicy } from "../../cli/bootstrap/secrets.js";
import { registeredHealth } from "../../cli/commands/status.js";
import { SpecError } from "../../cli/util/errors.js";
import { busybox } from "../tools/busybox.js";

const repo = join(import.meta.dirname, "..", "..");
const scratch = mkdtempSync(join(tmpdir(), "resin-unit-registrations-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const spec = (extra: string) => parseYaml(`name: web\ndescription: a web server\nports: { http: 8080, admin: 9090 }\n${extra}`, ServiceSchema, "services/web/service.yml").data;
const service = (extra: string) => ({ ...spec(extra), dir: "/x", file: "/x/service.yml" }) as unknown as Service;

describe("the spec", () => {
  it("takes the issue's shape: name, port by name, tags, tcp and http checks with intervals", () => {
    const s = spec(`consul:\n  services:\n    - name: web\n      port: http\n      tags: [web]\n      checks:\n        - { tcp: http, interval: 5s }\n        - { http: admin, path: /health, interval: 5s }\nsysctl: { vm.overcommit_memory: 1, net.core.somaxconn: 1024 }\n`);
    expect(s.consul!.services[0]!.checks).toEqual([{ tcp: "http", interval: "5s" }, { http: "admin", path: "/health", interval: "5s" }]);
    expect(s.sysctl).toEqual({ "vm.overcommit_memory": 1, "net.core.somaxconn": 1024 });
  });

  it.each([
    ["a sysctl key with '/'", "sysctl: { vm/overcommit_memory: 1 }\n", /sysctl.*dotted kernel parameter/],
    ["a sysctl key with '..'", "sysctl: { vm..x: 1 }\n", /dotted kernel parameter/],
    ["a sysctl key that is one word", "sysctl: { swappiness: 1 }\n", /dotted kernel parameter/],
    ["an interval without a unit", "consul:\n  services:\n    - { name: web, port: http, checks: [{ tcp: http, interval: 5 }] }\n", /consul\.services\[0\]\.checks\[0\]: a check is one of/],
    ["a check of two kinds", "consul:\n  services:\n    - { name: web, port: http, checks: [{ tcp: http, http: http }] }\n", /consul\.services\[0\]\.checks\[0\]\.http: unknown key: remove it or use one of: tcp, interval, http, path, https, tls_skip_verify/],
    ["a service name that is no DNS label", "consul:\n  services:\n    - { name: Web_1, port: http }\n", /DNS label/],
  ])("refuses %s", (_what, extra, message) => {
    expect(() => spec(extra)).toThrow(SpecError);
    expect(() => spec(extra)).toThrow(message);
  });
});

describe("what goes into the image", () => {
  it("Consul service definitions: the port's number, checks against 127.0.0.1, one file for every service", () => {
    const web = service(`consul:\n  services:\n    - name: web\n      port: http\n      tags: [web]\n      checks:\n        - { tcp: http, interval: 5s }\n        - { http: admin, path: /health, interval: 10s }\n`);
    const json = JSON.parse(consulServiceDefinitions([service(""), web])!) as { services: Record<string, unknown>[] };
    expect(json.services).toEqual([
      {
        name: "web",
        id: "web",
        port: 8080,
        tags: ["web"],
        meta: { "resin-service": "web" },
        token: "@resin-agent-token@",
        checks: [
          { name: "web: tcp 8080", tcp: "127.0.0.1:8080", interval: "5s", timeout: "2s" },
          { name: "web: http 9090/health", http: "http://127.0.0.1:9090/health", interval: "10s", timeout: "2s" },
        ],
      },
    ]);
    expect(consulServiceDefinitions([service("")])).toBeUndefined();
    expect(consulServiceNames([web, service("")])).toEqual(["web"]);
  });

  it("sysctl lines: the services' in order, the role's own over them, sorted, or nothing", () => {
    const role = { services: [service("sysctl: { vm.overcommit_memory: 1, net.core.somaxconn: 512 }\n")], spec: { sysctl: { "net.core.somaxconn": 4096 } } };
    expect(sysctlLines(role)).toBe("net.core.somaxconn 4096\nvm.overcommit_memory 1\n");
    expect(sysctlLines({ services: [service("")], spec: { sysctl: {} } })).toBeUndefined();
  });
});

describe("the node's agent token policy", () => {
  it("writes its node and exactly the services its role registers; reads the rest", () => {
    expect(consulAgentPolicy("cache-1", ["redis", "redis"])).toBe(
      'node "cache-1" {\n  policy = "write"\n}\nnode_prefix "" {\n  policy = "read"\n}\nservice_prefix "" {\n  policy = "read"\n}\nservice "redis" {\n  policy = "write"\n}\n',
    );
    expect(consulAgentPolicy("resin-1")).not.toContain('service "');
  });
});

describe("registeredHealth", () => {
  it("gives each service on the node the worst status of its checks, Consul's own and other nodes' aside", () => {
    const c = (node: string, serviceName: string, status: string) => ({ node, serviceName, status, name: "", checkId: "", output: "" });
    expect(registeredHealth([c("n-1", "web", "passing"), c("n-1", "web", "critical"), c("n-1", "db", "passing"), c("n-1", "consul", "critical"), c("n-1", "", "passing"), c("n-2", "web", "passing")], "n-1")).toEqual([
      { service: "db", status: "passing" },
      { service: "web", status: "critical" },
    ]);
  });
});

describe("services/base/sysctl in stage 1", () => {
  const script = join(repo, "services", "base", "sysctl");
  const shells = [["sh"], [busybox, "sh"]];

  it.each(shells.map((s) => [s.join(" "), s] as const))("under %s: sets each key, and stops naming a key the kernel lacks", (_name, shell) => {
    const proc = join(scratch, `proc-${shell.length}`);
    mkdirSync(join(proc, "vm"), { recursive: true });
    mkdirSync(join(proc, "net", "core"), { recursive: true });
    writeFileSync(join(proc, "vm", "overcommit_memory"), "0\n");
    writeFileSync(join(proc, "net", "core", "somaxconn"), "128\n");
    const conf = join(scratch, `sysctl-${shell.length}`);
    writeFileSync(conf, "net.core.somaxconn 4096\nvm.overcommit_memory 1\n");
    const ok = spawnSync(shell[0]!, [...shell.slice(1), script, conf], { env: { PATH: process.env.PATH, PROC_SYS: proc }, encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toBe("sysctl net.core.somaxconn = 4096\nsysctl vm.overcommit_memory = 1\n");
    expect(readFileSync(join(proc, "vm", "overcommit_memory"), "utf8")).toBe("1\n");
    writeFileSync(conf, "vm.overcommit_memory 0\nvm.no_such_knob 1\n");
    const bad = spawnSync(shell[0]!, [...shell.slice(1), script, conf], { env: { PATH: process.env.PATH, PROC_SYS: proc }, encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toBe(`unknown kernel parameter vm.no_such_knob (no ${proc}/vm/no_such_knob): remove it from the role's sysctl:\n`);
  });
});
