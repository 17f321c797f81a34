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

export interface FailoverResult {
  /** Every key a client saw acknowledged, before, during and after the failover, with its value. */
  acked: Map<string, string>;
  /** Writes that failed or timed out (not acknowledged, so not required to survive). */
  unacknowledged: number;
  /**
   * Writes that were sent before the kill and acknowledged after it: in flight through
   * the failover (each lost-write check covers them like any other acknowledged write).
   */
  straddling: number;
  /** From the kill to the first write a survivor accepted (see firstAcceptedWrite), in seconds. */
  failoverSeconds: number;
  /** The longest time between two acknowledged client writes, in seconds. */
  longestWriteGapSeconds: number;
}

/**
 * Leader failover with writes in flight: `clientsPerNode` clients on each survivor write
 * `<prefix>/<client>-<n>` back to back (each waits for its answer, then writes the next;
 * a follower forwards each write to the leader), `kill()` is called while they write,
 * and they go on until every client has had a write acknowledged after the new leader
 * served its first one. Survivors are the nodes other than the leader to be killed.
 */
export async function failoverUnderWrites(opts: {
  survivors: ConsulEndpoint[];
  clientsPerNode: number;
  prefix: string;
  kill: () => void;
  timeoutMs: number;
}): Promise<FailoverResult> {
  const acked = new Map<string, string>();
  let unacknowledged = 0;
  let running = true;
  let killedAt = Number.POSITIVE_INFINITY;
  let inFlight = 0;
  let lastAck: number | undefined;
  let longestGap = 0;
  const clients = opts.survivors.flatMap((ep, node) => Array.from({ length: opts.clientsPerNode }, (_, c) => ({ ep, id: `${node}${String.fromCharCode(97 + c)}`, ackedAt: [] as number[], sentAt: [] as number[] })));
  const writers = clients.map(async (client) => {
    for (let n = 0; running; n++) {
      const key = `${opts.prefix}/${client.id}-${String(n).padStart(6, "0")}`;
      const sent = Date.now();
      inFlight++;
      try {
        await kvPut(client.ep, key, `${key}@${sent}`);
        const now = Date.now();
        acked.set(key, `${key}@${sent}`);
        client.ackedAt.push(now);
        client.sentAt.push(sent);
        if (lastAck !== undefined) longestGap = Math.max(longestGap, now - lastAck);
        lastAck = now;
      } catch {
        unacknowledged++;
        await sleep(100);
      }
    }
  });
  try {
    // Every client has written before the kill.
    const warm = Date.now() + opts.timeoutMs;
    while (clients.some((c) => c.ackedAt.length < 3)) {
      if (Date.now() > warm) throw new Error(`not every client had 3 writes acknowledged within ${opts.timeoutMs / 1000}s before the kill`);
      await sleep(100);
    }
    killedAt = Date.now();
    opts.kill();
    const servedAt = await firstAcceptedWrite(opts.survivors, `${opts.prefix}-probe`, opts.timeoutMs);
    // Every client writes through the new leader too before the writers stop.
    const settle = Date.now() + opts.timeoutMs;
    while (clients.some((c) => !c.sentAt.some((s) => s > servedAt))) {
      if (Date.now() > settle) throw new Error(`a client had no write acknowledged within ${opts.timeoutMs / 1000}s after the new leader served its first`);
      await sleep(100);
    }
    running = false;
    await Promise.all(writers);
    return {
      acked,
      unacknowledged,
      straddling: clients.reduce((sum, c) => sum + c.sentAt.filter((s, i) => s < killedAt && c.ackedAt[i]! > killedAt).length, 0),
      failoverSeconds: (servedAt - killedAt) / 1000,
      longestWriteGapSeconds: longestGap / 1000,
    };
  } finally {
    running = false;
    await Promise.all(writers);
  }
}
