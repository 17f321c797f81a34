import { createServer } from "node:net";

/** Listen on 127.0.0.1:`port` (0: the kernel picks one) and close again; the port that was bound. */
function bindLoopback(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A TCP port on 127.0.0.1 that is free right now (the kernel picks it). */
export function freeLoopbackPort(): Promise<number> {
  return bindLoopback(0);
}

/** Whether nothing listens on 127.0.0.1:`port` right now. */
export function loopbackPortFree(port: number): Promise<boolean> {
  return bindLoopback(port).then(
    () => true,
    () => false,
  );
}

/**
 * Host ports for a node's forwards: each key keeps the port it has (so `resin env` lines
 * stay valid) unless another forward of the cluster has it or another program holds it
 * now; a key without one gets a fresh port. No two forwards ever share a port.
 * `reserved` holds every other port the cluster has recorded.
 */
export async function assignPorts(
  keys: string[],
  current: Record<string, number>,
  reserved: Set<number>,
  opts: { isFree?: (port: number) => Promise<boolean>; fresh?: () => Promise<number> } = {},
): Promise<{ ports: Record<string, number>; moved: { key: string; from: number; to: number }[] }> {
  const isFree = opts.isFree ?? loopbackPortFree;
  const fresh = opts.fresh ?? freeLoopbackPort;
  const used = new Set(reserved);
  const ports: Record<string, number> = {};
  const moved: { key: string; from: number; to: number }[] = [];
  for (const key of [...keys].sort()) {
    const had = current[key];
    if (had !== undefined && !used.has(had) && (await isFree(had))) {
      ports[key] = had;
    } else {
      let port = await fresh();
      for (let tries = 0; used.has(port); tries++) {
        if (tries > 100) throw new Error("no free loopback port");
        port = await fresh();
      }
      ports[key] = port;
      if (had !== undefined) moved.push({ key, from: had, to: port });
    }
    used.add(ports[key]!);
  }
  return { ports, moved };
}
