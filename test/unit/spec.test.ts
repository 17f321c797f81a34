import { describe, it, expect, afterEach } from "vitest";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadRole } from "../../cli/spec/load.js";
import { ResinError, SpecError } from "../../cli/util/errors.js";

// Role specs (machines/<role>.yml) are the user's main input, so every mistake in one
// must come back as a SpecError shaped `file:LINE: field: message`, naming the file,
// the field and (where the field is written) its line.
//
// The corpus in test/fixtures/specs/bad holds one malformed role per file. The file's
// first line states what the error must say:
//   # expect: {"field": "vm.cpus", "line": 6, "says": "integer"}
// field: the field the message must name (null for plain YAML syntax errors);
// line:  the line (or lines) the message may point at (null: no line is required,
//        e.g. for a required field that is absent);
// says:  text the message must contain.
// Each fixture is loaded as machines/<fixture name>.yml in a scratch project, with
// Resin's stock services beneath it.

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const BAD = fileURLToPath(new URL("../fixtures/specs/bad/", import.meta.url));

interface Expectation {
  field: string | null;
  line: number | number[] | null;
  says: string;
}

interface Fixture {
  role: string;
  text: string;
  expect: Expectation;
}

function readFixtures(): Fixture[] {
  return readdirSync(BAD)
    .filter((f) => f.endsWith(".yml"))
    .sort()
    .map((f) => {
      const text = readFileSync(join(BAD, f), "utf8");
      const header = text.split("\n")[0]!.match(/^# expect: (\{.*\})\s*$/);
      if (!header) throw new Error(`${f}: the first line must be '# expect: {...}'`);
      return { role: f.slice(0, -".yml".length), text, expect: JSON.parse(header[1]!) as Expectation };
    });
}

const fixtures = readFixtures();

const scratch: string[] = [];
afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A scratch project with the given machines/<role>.yml files (the stock services beneath them). */
function project(machines: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-spec-"));
  scratch.push(dir);
  mkdirSync(join(dir, "machines"));
  for (const [role, text] of Object.entries(machines)) writeFileSync(join(dir, "machines", `${role}.yml`), text);
  return dir;
}

async function loadError(dir: string, role: string): Promise<SpecError> {
  try {
    await loadRole(dir, role);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return e as SpecError;
  }
  throw new Error(`machines/${role}.yml loaded, but it should have been rejected`);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

interface Problem {
  file: string;
  line?: number;
  text: string;
}

/** Split a SpecError message into its `file[:line]: text` lines; every line must have that shape. */
function problems(err: SpecError, role: string): Problem[] {
  const shape = new RegExp(`^(\\S*machines/${escape(role)}\\.yml)(?::(\\d+))?: (.+)$`);
  return err.message.split("\n").map((l) => {
    const m = l.match(shape);
    expect(m, `message line does not look like 'machines/${role}.yml:LINE: field: message': ${l}`).not.toBeNull();
    return { file: m![1]!, line: m![2] ? Number(m![2]) : undefined, text: m![3]! };
  });
}

/** The problem naming the expected field (or, for syntax errors, saying `says`). */
function relevant(list: Problem[], e: Expectation): Problem | undefined {
  if (e.field) return list.find((p) => p.text.startsWith(`${e.field}: `));
  return list.find((p) => p.text.includes(e.says));
}

/** For the line check: the problem about the field, else any problem saying `says`. */
function located(list: Problem[], e: Expectation): Problem | undefined {
  return relevant(list, e) ?? list.find((p) => p.text.includes(e.says));
}

describe("the bad role corpus", () => {
  it("has at least 15 malformed specs, each with an expectation", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(15);
    for (const f of fixtures) expect(typeof f.expect.says, f.role).toBe("string");
  });
});

for (const { role, text, expect: want } of fixtures) describe(`machines/${role}.yml`, () => {
  it(`is rejected with a SpecError naming the file${want.field ? ` and '${want.field}'` : ""}`, async () => {
    const err = await loadError(project({ [role]: text }), role);
    expect(err).toBeInstanceOf(ResinError);
    expect(err.name).toBe("SpecError");
    expect(err.file.replace(/\\/g, "/")).toMatch(new RegExp(`(^|/)machines/${escape(role)}\\.yml$`));
    const list = problems(err, role);
    expect(list.length).toBeGreaterThan(0);
    const p = relevant(list, want);
    expect(p, `no problem ${want.field ? `starts with '${want.field}: '` : `says '${want.says}'`} in:\n${err.message}`).toBeDefined();
    expect(p!.text).toContain(want.says);
  });

  it("reads as a message for people: no stack trace, no 'undefined'", async () => {
    const err = await loadError(project({ [role]: text }), role);
    expect(err.message).not.toMatch(/\n\s+at /);
    expect(err.message).not.toMatch(/\bundefined\b|\[object Object\]|\bNaN\b/);
    for (const p of err.problems) {
      expect(typeof p.message).toBe("string");
      expect(p.message.length).toBeGreaterThan(0);
    }
  });

  if (want.line !== null) {
    const lines = Array.isArray(want.line) ? want.line : [want.line];
    it(`points at line ${lines.join(" or ")}`, async () => {
      const err = await loadError(project({ [role]: text }), role);
      const p = located(problems(err, role), want);
      expect(p, err.message).toBeDefined();
      expect(p!.line, `expected ${p!.file}:${lines.join("|")}: …, got:\n${err.message}`).toBeDefined();
      expect(lines).toContain(p!.line);
      // The line exists in the file (not the empty "line" after the last newline).
      const lineCount = text.replace(/\n$/, "").split("\n").length;
      expect(p!.line!).toBeLessThanOrEqual(lineCount);
    });
  }
});

describe("good role specs", () => {
  it("loads the stock machines/consul-server.yml with option defaults filled in", async () => {
    const role = await loadRole(REPO, "consul-server");
    expect(role.spec.role).toBe("consul-server");
    expect(role.file.replace(/\\/g, "/")).toMatch(/machines\/consul-server\.yml$/);
    expect(role.services.map((s) => s.name)).toEqual(["base", "consul"]);
    expect(role.services.filter((s) => s.kernel).map((s) => s.name)).toEqual(["base"]);
    // server and ui come from the role, log_level from consul's default.
    expect(role.options.consul).toEqual({ server: true, ui: true, log_level: "INFO", raft_multiplier: 1, server_stabilization_seconds: 10 });
    expect(role.options.base).toEqual({});
  });

  it("fills in vm and config defaults for a minimal role", async () => {
    const dir = project({ minimal: "role: minimal\ndescription: the least a role can say\nservices: [base, consul]\n" });
    const role = await loadRole(dir, "minimal");
    expect(role.spec.vm).toEqual({ memory_mib: 1024, cpus: 1, persist_disk_gib: 2 });
    expect(role.spec.config).toEqual({});
    expect(role.options.consul).toEqual({ server: false, ui: false, log_level: "INFO", raft_multiplier: 1, server_stabilization_seconds: 10 });
  });

  it("takes option values from config over the defaults", async () => {
    const dir = project({
      client: "role: client\ndescription: a chatty client\nservices: [base, consul]\nconfig:\n  consul:\n    log_level: DEBUG\n",
    });
    const role = await loadRole(dir, "client");
    expect(role.options.consul).toEqual({ server: false, ui: false, log_level: "DEBUG", raft_multiplier: 1, server_stabilization_seconds: 10 });
  });

  it("keeps the services in the order the role lists them", async () => {
    const dir = project({ ordered: "role: ordered\ndescription: consul first\nservices: [consul, base]\n" });
    const role = await loadRole(dir, "ordered");
    expect(role.services.map((s) => s.name)).toEqual(["consul", "base"]);
  });
});

describe("unknown roles", () => {
  it("lists the roles there are: the project's and the stock ones", async () => {
    const dir = project({
      "my-server": "role: my-server\ndescription: d\nservices: [base, consul]\n",
      "my-client": "role: my-client\ndescription: d\nservices: [base, consul]\n",
    });
    const err = await loadError(dir, "no-such-server");
    expect(err.message).toMatch(/machines\/no-such-server\.yml/);
    expect(err.message).toContain("no such role");
    expect(err.message).toContain("consul-server, control-plane, my-client, my-server, nomad-client");
    expect(err.message).not.toMatch(/\bundefined\b/);
  });

  it("says '(none)' when neither the project nor the stock layer has roles", async () => {
    const emptyStock = project({});
    const dir = project({});
    const err = await loadRole(dir, "consul-server", "official", emptyStock).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).message).toContain("(none)");
  });
});
