// `resin ui` end to end: three real Consul 1.8.7 servers in QEMU (the consul-server
// role, which builds Consul's UI in), the real proxy, and Debian's Chromium, headless,
// driven over the Chrome DevTools Protocol (cdp.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request } from "undici";
import { consulClient, kvGet, kvPut } from "../../cli/cluster/consul.js";
import { CONSUL_UI_POLICY, type Secrets } from "../../cli/bootstrap/secrets.js";
import { launchChromium, type Browser } from "./cdp.js";
import { cliPath, consulAt, keepLogsOnFailure, killLeftovers, repoRoot, resin, resinAsync } from "./helpers.js";

const stateHome = mkdtempSync(join(tmpdir(), "resin-e2e-ui-"));
keepLogsOnFailure(stateHome, "ui");
const env = { RESIN_STATE_HOME: stateHome };
const name = "e2e-ui";
const KEY = "resin-ui/greeting";
// JSON, so that the UI's code view (JSON by default) shows it without a lint mark.
const VALUE = '{"written_by": "the e2e test", "for": "resin ui"}';

/** A running `resin ui`: its printed URL, what it said on stderr (with when), and its process. */
interface UiRun {
  child: ChildProcess;
  url: string;
  stderr: { at: number; line: string }[];
  exited: Promise<number | null>;
}

const runs: UiRun[] = [];

/** Start `resin ui --no-open …` and wait (at most 3 min on this busy machine) for the URL it prints. */
async function startUi(args: string[] = []): Promise<UiRun> {
  const child = spawn(process.execPath, [cliPath, "ui", "--name", name, "--no-open", ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: UiRun["stderr"] = [];
  let partial = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const line of lines) stderr.push({ at: Date.now(), line });
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`resin ui printed no URL within 180 s; stderr:\n${stderr.map((l) => l.line).join("\n")}`)), 180_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("\n")) {
        clearTimeout(timer);
        resolve(out.split("\n")[0]!);
      }
    });
    void exited.then((code) => reject(new Error(`resin ui exited (${code}) before printing a URL:\n${stderr.map((l) => l.line).join("\n")}`)));
  });
  const run = { child, url, stderr, exited };
  runs.push(run);
  return run;
}

/** Wait (with a hang guard, not a speed limit) until `resin ui` has said something matching. */
async function saidOnStderr(run: UiRun, pattern: RegExp, timeoutMs = 300_000): Promise<{ at: number; line: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = run.stderr.find((l) => pattern.test(l.line));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`resin ui never said ${pattern} within ${timeoutMs / 1000} s:\n${run.stderr.map((l) => l.line).join("\n")}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function readOnlyToken(): string {
  const r = resin(["env", "--ui", "--name", name], env);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe("resin ui: Consul's web UI in a real browser through the local mTLS proxy", () => {
  let browser: Browser;
  let ui: UiRun;

  beforeAll(async () => {
    const result = await resinAsync(["up", "--name", name, "--nodes", "3", "--role", "consul-server", "--channel", "debian", "--timeout", "600"], env);
    if (result.status !== 0) throw new Error(`resin up failed (exit ${result.status}):\n${result.stderr}`);
    await kvPut(consulAt(stateHome, name, `${name}-1`), KEY, VALUE);
    mkdirSync(join(repoRoot, "out"), { recursive: true });
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    for (const run of runs) if (run.child.exitCode === null) run.child.kill("SIGKILL");
    await resinAsync(["destroy", name, "--yes"], env);
    killLeftovers(stateHome);
    rmSync(stateHome, { recursive: true, force: true });
  });

  it("creates a read-only UI token with read on nodes, services and keys only; resin env --ui prints it", async () => {
    const token = readOnlyToken();
    expect(token).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const consul = consulClient(consulAt(stateHome, name, `${name}-2`));
    const self = await consul.get("/v1/acl/token/self", { token });
    expect(self.status).toBe(200);
    const policies = self.json<{ Policies: { Name: string; ID: string }[] }>().Policies;
    expect(policies.map((p) => p.Name)).toEqual(["resin-ui-read"]);
    const policy = await consul.get(`/v1/acl/policy/${policies[0]!.ID}`);
    expect(policy.json<{ Rules: string }>().Rules).toBe(CONSUL_UI_POLICY);
  });

  it("gives a cluster made before the UI token one at its next resin up", async () => {
    // Make the cluster look older: no uiToken in its bundle, and no such token in Consul.
    const path = join(stateHome, "clusters", name, "secrets.json");
    const bundle = JSON.parse(readFileSync(path, "utf8")) as Secrets;
    const old = bundle.consul.uiToken!;
    const consul = consulClient(consulAt(stateHome, name, `${name}-1`));
    const accessor = (await consul.get("/v1/acl/token/self", { token: old })).json<{ AccessorID: string }>().AccessorID;
    expect((await consul.delete(`/v1/acl/token/${accessor}`)).status).toBe(200);
    delete bundle.consul.uiToken;
    writeFileSync(path, `${JSON.stringify(bundle, null, 2)}\n`, { mode: 0o600 });
    const none = resin(["env", "--ui", "--name", name], env);
    expect(none.status).toBe(1);
    expect(none.stderr).toBe(`resin: cluster '${name}' has no read-only UI token yet\n  \`resin up --name ${name}\` creates it (the cluster's other secrets stay as they are)\n`);

    const up = await resinAsync(["up", "--name", name, "--timeout", "600"], env);
    expect(up.status, up.stderr).toBe(0);
    expect(up.stderr).toContain("read-only UI token created");
    const token = readOnlyToken();
    expect(token).not.toBe(old);
    const after = JSON.parse(readFileSync(path, "utf8")) as Secrets;
    expect({ ...after, consul: { ...after.consul, uiToken: undefined } }).toEqual({ ...bundle, consul: { ...bundle.consul, uiToken: undefined } });
    const self = await consul.get("/v1/acl/token/self", { token });
    expect(self.status).toBe(200);
    expect(self.json<{ Policies: { Name: string }[] }>().Policies.map((p) => p.Name)).toEqual(["resin-ui-read"]);
  });

  it("refuses a request without the cookie and a wrong secret with 403; the secret works once", async () => {
    const run = await startUi();
    const url = new URL(run.url);
    expect(url.hostname).toBe("127.0.0.1");
    expect(url.searchParams.get("secret")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const noCookie = await request(`${url.origin}/v1/catalog/nodes`);
    expect(noCookie.statusCode).toBe(403);
    await noCookie.body.dump();
    const ui = await request(`${url.origin}/ui/`);
    expect(ui.statusCode).toBe(403);
    await ui.body.dump();
    const wrong = new URL(url);
    wrong.searchParams.set("secret", "A".repeat(43));
    const wrongSecret = await request(wrong);
    expect(wrongSecret.statusCode).toBe(403);
    await wrongSecret.body.dump();
    // The right secret, once: a session cookie, HttpOnly and SameSite=Strict, and a redirect without the secret.
    const first = await request(url);
    expect(first.statusCode).toBe(303);
    expect(first.headers.location).toBe("/ui/");
    const setCookie = String(first.headers["set-cookie"]);
    expect(setCookie).toMatch(new RegExp(`^resin_ui_${url.port}=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict$`));
    await first.body.dump();
    const again = await request(url);
    expect(again.statusCode).toBe(403);
    await again.body.dump();
    // The cookie lets requests through, and the proxy adds no token: Consul denies the anonymous write.
    const cookie = setCookie.split(";")[0]!;
    const page = await request(`${url.origin}/ui/`, { headers: { cookie } });
    expect(page.statusCode).toBe(200);
    expect(page.headers["cache-control"]).toBe("no-store");
    expect(await page.body.text()).toContain("CONSUL_VERSION: 1.8.7");
    const anonymous = await request(`${url.origin}/v1/kv/${KEY}`, { method: "PUT", body: "x", headers: { cookie } });
    expect(anonymous.statusCode).toBe(403);
    await anonymous.body.dump();
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
  });

  it("shows the nodes, the consul service as healthy and a key to the read-only token, and refuses its write", async () => {
    ui = await startUi();
    const token = readOnlyToken();
    await browser.navigate(ui.url);
    // The redirect dropped the secret from the address bar.
    expect(await browser.evaluate<string>("location.href")).toBe(`${new URL(ui.url).origin}/ui/`);
    // Log in through the UI's own form (Consul 1.8.7 keeps the token in localStorage as consul:token).
    await browser.waitFor("document.querySelector('input[name=\"auth[SecretID]\"]')", "the login form");
    await browser.evaluate(`(() => {
      const input = document.querySelector('input[name="auth[SecretID]"]');
      Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, ${JSON.stringify(token)});
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.form.querySelector("button[type=submit]").click();
      return true;
    })()`);
    const stored = await browser.waitFor<string>("localStorage.getItem('consul:token')", "the token kept after logging in");
    expect(JSON.parse(stored).SecretID).toBe(token);
    // The list it had loaded before the login was the anonymous (empty) one: load it again.
    await browser.navigate(await browser.evaluate<string>("location.href"));

    // Services: consul, three instances, its health passing.
    const service = await browser.waitFor<{ text: string; health: string }>(
      `(() => { const a = document.querySelector('a[href$="/services/consul/instances"]'); const li = a && a.closest("li");
        return li && li.innerText.includes("3 Instances") ? { text: li.innerText, health: li.querySelector("dl")?.className } : null; })()`,
      "the consul service with 3 instances",
    );
    expect(service.health).toBe("passing");
    expect(await browser.evaluate<string>("document.body.innerText")).toMatch(/Services\s+1 total/);
    writeFileSync(join(repoRoot, "out", "ui-services.png"), await browser.screenshot());

    // Nodes: all three, under "Healthy Nodes", each with its check passing.
    await browser.evaluate(`document.querySelector('a[href$="/nodes"]').click()`);
    const healthy = await browser.waitFor<string[]>(
      `(() => { const cards = [...document.querySelectorAll(".healthy a[href*='/nodes/']")].map((a) => a.querySelector("strong")?.textContent.trim()); return cards.length === 3 ? cards : null; })()`,
      "three healthy nodes",
    );
    expect(healthy.sort()).toEqual([`${name}-1`, `${name}-2`, `${name}-3`]);
    expect(await browser.evaluate<string[]>(`[...document.querySelectorAll(".healthy [data-tooltip^='All']")].map((s) => s.dataset.tooltip)`)).toEqual(["All 1 check passing", "All 1 check passing", "All 1 check passing"]);
    writeFileSync(join(repoRoot, "out", "ui-nodes.png"), await browser.screenshot());

    // Key/Value: the key the test wrote, opened from the list.
    await browser.evaluate(`document.querySelector('a[href$="/kv"]').click()`);
    const folder = `[...document.querySelectorAll("a")].find((a) => a.textContent.trim().startsWith("resin-ui") || a.getAttribute("href")?.endsWith("/kv/resin-ui/"))`;
    await browser.waitFor(folder, "the resin-ui folder");
    await browser.evaluate(`${folder}.click()`);
    const key = `[...document.querySelectorAll("a")].find((a) => a.textContent.trim() === "greeting" || a.getAttribute("href")?.endsWith("/kv/resin-ui/greeting/edit"))`;
    await browser.waitFor(key, "the greeting key");
    await browser.evaluate(`${key}.click()`);
    await browser.waitFor(`document.body.innerText.includes(${JSON.stringify(VALUE)})`, "the key's value");
    const screenshot = join(repoRoot, "out", "ui-screenshot.png");
    writeFileSync(screenshot, await browser.screenshot());
    process.stderr.write(`e2e: resin ui: screenshot of the key in Consul's UI in ${screenshot}\n`);

    // A write with the read-only token, from the page, through the proxy: Consul refuses it.
    const write = await browser.evaluate<{ status: number; text: string }>(
      `fetch("/v1/kv/${KEY}", { method: "PUT", headers: { "X-Consul-Token": ${JSON.stringify(token)} }, body: "overwritten" }).then(async (r) => ({ status: r.status, text: await r.text() }))`,
    );
    // (a follower forwards the write to the leader, and says so: "rpc error making call: Permission denied")
    expect(write.status).toBe(403);
    expect(write.text).toMatch(/Permission denied$/);
    expect(await kvGet(consulAt(stateHome, name, `${name}-3`), KEY)).toBe(VALUE);
  });

  it("moves to another running node when its node is stopped, and says so", async () => {
    const token = readOnlyToken();
    const through = (await saidOnStderr(ui, /through (\S+), on 127\.0\.0\.1/)).line.match(/through (\S+),/)![1]!;
    const stopStarted = Date.now();
    const stop = await resinAsync(["stop", through, "--name", name], env);
    expect(stop.status, stop.stderr).toBe(0);
    const stopDone = Date.now();
    const moved = await saidOnStderr(ui, new RegExp(`^resin ui: consul on ${through} stopped answering .*; now through (${name}-\\d)`));
    const to = moved.line.match(/now through (\S+) /)![1]!;
    expect(to).not.toBe(through);
    process.stderr.write(
      `e2e: resin ui: moved from ${through} to ${to} ${((moved.at - stopStarted) / 1000).toFixed(1)} s after \`resin stop\` began (it took ${((stopDone - stopStarted) / 1000).toFixed(1)} s to return): "${moved.line}"\n`,
    );
    // The same browser session goes on through the new node (once Consul has a leader
    // again, if the stopped node led: until then Consul itself answers 500 "rpc error").
    const nodes = await browser.waitFor<string[]>(
      `fetch("/v1/catalog/nodes", { headers: { "X-Consul-Token": ${JSON.stringify(token)} } }).then(async (r) => (r.status === 200 ? (await r.json()).map((n) => n.Node) : null))`,
      "the catalog's nodes through the new node",
    );
    expect(nodes.sort()).toEqual([`${name}-1`, `${name}-2`, `${name}-3`]);
    expect(await browser.evaluate<string>(`fetch("/v1/kv/${KEY}?raw", { headers: { "X-Consul-Token": ${JSON.stringify(token)} } }).then((r) => r.text())`)).toBe(VALUE);
  });

  it("stops on Ctrl-C and leaves nothing listening", async () => {
    const origin = new URL(ui.url).origin;
    ui.child.kill("SIGINT");
    expect(await ui.exited).toBe(0);
    await expect(request(`${origin}/ui/`)).rejects.toThrow(/ECONNREFUSED/);
  });

  it("bad input: an unknown service, a node that does not run it, a port in use; a one-line error, and the command exits", async () => {
    const oneLine = (r: { status: number; stdout: string; stderr: string }) => {
      expect(r.status).toBe(1);
      expect(r.stdout).toBe("");
      // (execa drops the last newline, spawnSync keeps it)
      expect(r.stderr).toMatch(/^resin: [^\n]+\n  [^\n]+\n?$/);
      return r.stderr.trimEnd();
    };
    expect(oneLine(resin(["ui", "--name", name, "--no-open", "--service", "postgres"], env))).toMatch(/^resin: unknown service 'postgres' for --service\n  .*consul, nomad, vault/);
    expect(oneLine(resin(["ui", "--name", name, "--no-open", "--service", "nomad", "--node", `${name}-1`], env))).toMatch(new RegExp(`^resin: node ${name}-1 does not run nomad\\n`));
    expect(oneLine(resin(["ui", "--name", name, "--no-open", "--node", "nope-9"], env))).toMatch(new RegExp(`^resin: cluster '${name}' has no node 'nope-9'\\n`));
    // A port something else holds.
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()));
    const port = (holder.address() as { port: number }).port;
    try {
      expect(oneLine(await resinAsync(["ui", "--name", name, "--no-open", "--port", String(port)], env, 180_000))).toBe(`resin: 127.0.0.1:${port} is in use\n  choose another --port, or leave --port out to take a free one`);
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  });
});
