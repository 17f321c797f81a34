// A headless Chromium driven over the Chrome DevTools Protocol, for the e2e suites that
// need a real browser (resin ui). Debian's `chromium` package, no automation library:
// one page, its WebSocket (undici's client), and the few commands the tests use.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "undici";

export interface Browser {
  /** Go to a URL and wait for its load event. */
  navigate(url: string, timeoutMs?: number): Promise<void>;
  /** Evaluate an expression in the page (a promise is awaited); its value, as JSON. */
  evaluate<T = unknown>(expression: string): Promise<T>;
  /** Evaluate until the expression is truthy; its value. */
  waitFor<T = unknown>(expression: string, what: string, timeoutMs?: number): Promise<T>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Buffer>;
  close(): Promise<void>;
}

interface Pending {
  resolve(value: Record<string, unknown>): void;
  reject(e: Error): void;
}

/** Start headless Chromium with a fresh profile and a 1280×900 window; open one page. */
export async function launchChromium(binary = "chromium", timeoutMs = 60_000): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "resin-chromium-"));
  const child: ChildProcess = spawn(
    binary,
    ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--window-size=1280,900", `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  // Stop Chromium (its own helper processes go with it) and wait before removing its profile.
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
  };
  try {
    // Chromium says where its DevTools endpoint is on stderr.
    const browserWs = await new Promise<string>((resolve, reject) => {
      let text = "";
      const timer = setTimeout(() => reject(new Error(`chromium did not start within ${timeoutMs} ms:\n${text}`)), timeoutMs);
      child.stderr!.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.on("exit", (code) => reject(new Error(`chromium exited (${code}):\n${text}`)));
    });
    const http = browserWs.replace(/^ws:/, "http:").replace(/\/devtools\/browser\/.*$/, "");
    const targets = (await (await fetch(`${http}/json/list`)).json()) as { type: string; webSocketDebuggerUrl: string }[];
    const page = targets.find((t) => t.type === "page");
    if (!page) throw new Error("chromium opened no page");
    return await connectPage(page.webSocketDebuggerUrl, cleanup);
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function connectPage(url: string, onClose: () => Promise<void>): Promise<Browser> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error(`cannot open ${url}`)));
  });
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const listeners: ((method: string, params: Record<string, unknown>) => void)[] = [];
  ws.addEventListener("message", (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown>; error?: { message: string }; method?: string; params?: Record<string, unknown> };
    if (msg.id !== undefined) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p?.reject(new Error(msg.error.message));
      else p?.resolve(msg.result ?? {});
    } else if (msg.method) for (const l of listeners) l(msg.method, msg.params ?? {});
  });
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Page.enable");
  await send("Runtime.enable");

  const evaluate = async <T>(expression: string): Promise<T> => {
    const r = (await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true })) as { result: { value?: T }; exceptionDetails?: { text: string; exception?: { description?: string } } };
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  };

  return {
    async navigate(target, timeoutMs = 120_000) {
      const loaded = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${target} did not load within ${timeoutMs} ms`)), timeoutMs);
        listeners.push((method) => {
          if (method === "Page.loadEventFired") {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const r = (await send("Page.navigate", { url: target })) as { errorText?: string };
      if (r.errorText) throw new Error(`navigating to ${target}: ${r.errorText}`);
      await loaded;
      listeners.length = 0;
    },
    evaluate,
    async waitFor<T>(expression: string, what: string, timeoutMs = 120_000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      for (;;) {
        try {
          last = await evaluate<T>(expression);
          if (last) return last as T;
        } catch (e) {
          last = e;
        }
        if (Date.now() > deadline) throw new Error(`the page never showed ${what} within ${timeoutMs} ms (last: ${String(last)})`);
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    async screenshot() {
      const r = (await send("Page.captureScreenshot", { format: "png" })) as { data: string };
      return Buffer.from(r.data, "base64");
    },
    async close() {
      ws.close();
      await onClose();
    },
  };
}
