// A careful client's view of a Consul cluster under change, shared by the bench and the
// e2e suites that measure the same things: a writer that puts a key every 100 ms through
// whichever node answers, a watcher that times the windows in which no node knows a
// leader, the keys acknowledged and later missing, and the time from a leader's death
// to the first write a new leader accepts.
import { consulView, kvGet, kvPut, type ConsulEndpoint } from "../cli/cluster/consul.js";

export interface LoadResult {
  /** Every key Consul acknowledged, with the value written. */
  acked: Map<string, string>;
  /** Writes no node accepted (the writer moved on to the next key). */
  refused: number;
  /** The longest time in which no node named a leader, in seconds (a node that still names a dead leader counts as naming one). */
  longestLeaderlessSeconds: number;
  /** The longest time between two acknowledged writes, in seconds: the outage a writing client saw. */
  longestWriteGapSeconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Write `<prefix>/<n>` every 100 ms through the first of `nodes()` that takes it, and
 * ask every node for its leader every 250 ms, until stop(). `nodes` is called each
 * time, so the caller's view of the cluster (ports, nodes replaced) stays current.
 */
export function startLoad(nodes: () => ConsulEndpoint[], prefix: string): { stop: () => Promise<LoadResult> } {
  const acked = new Map<string, string>();
  let refused = 0;
  let running = true;
  let longest = 0;
  let gapStart: number | undefined;
  let lastAck: number | undefined;
  let longestWriteGap = 0;
  const writer = (async () => {
    for (let i = 0; running; i++) {
      const key = `${prefix}/${String(i).padStart(6, "0")}`;
      let ok = false;
      for (const ep of nodes()) {
        try {
          await kvPut(ep, key, key);
          acked.set(key, key);
          const now = Date.now();
          if (lastAck !== undefined) longestWriteGap = Math.max(longestWriteGap, now - lastAck);
          lastAck = now;
          ok = true;
          break;
        } catch {
          // that node is down or has no leader: try the next
        }
      }
      if (!ok) refused++;
      await sleep(100);
    }
  })();
  const watcher = (async () => {
    while (running) {
      const views = await Promise.all(nodes().map((ep) => consulView(ep, 1000).catch(() => ({ leader: undefined }))));
      const now = Date.now();
      if (views.some((v) => v.leader)) {
        if (gapStart !== undefined) longest = Math.max(longest, now - gapStart);
        gapStart = undefined;
      } else gapStart ??= now;
      await sleep(250);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await Promise.all([writer, watcher]);
      if (gapStart !== undefined) longest = Math.max(longest, Date.now() - gapStart);
      return { acked, refused, longestLeaderlessSeconds: longest / 1000, longestWriteGapSeconds: longestWriteGap / 1000 };
    },
  };
}

/** The acknowledged keys that `node` no longer returns with the value written. */
export async function lostWrites(node: ConsulEndpoint, acked: Map<string, string>): Promise<string[]> {
  const lost: string[] = [];
  for (const [key, value] of acked) if ((await kvGet(node, key)) !== value) lost.push(key);
  return lost;
}

/**
 * When (Date.now()) one of `survivors` first accepts a write: a leader serves writes
 * again. A write sent while the old leader is still believed alive can hang until its
 * connection times out, so a new attempt goes to every survivor every 250 ms without
 * waiting for the earlier ones: the time is the cluster's, not one request's timeout.
 */
export function firstAcceptedWrite(survivors: ConsulEndpoint[], key: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let done = false;
  let inFlight = 0;
  return new Promise((resolve, reject) => {
    const attempt = (ep: ConsulEndpoint) => {
      inFlight++;
      kvPut(ep, key, String(Date.now()))
        .then(
          () => {
            if (!done) {
              done = true;
              resolve(Date.now());
            }
          },
          () => {
            // no leader yet, or this survivor is still waiting on the dead one
          },
        )
        .finally(() => inFlight--);
    };
    const tick = () => {
      if (done) return;
      if (Date.now() > deadline) {
        done = true;
        reject(new Error(`no survivor accepted a write within ${timeoutMs / 1000}s`));
        return;
      }
      if (inFlight < 40) for (const ep of survivors) attempt(ep);
      setTimeout(tick, 250);
    };
    tick();
  });
}
