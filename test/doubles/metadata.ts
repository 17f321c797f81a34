// TEST DOUBLES of the services a cloud or a metal network serves node metadata from:
// AWS's instance metadata service (IMDSv2: a token from PUT /latest/api/token, then
// GET /latest/user-data with that token), an EC2-compatible service without tokens
// (OpenStack and other clouds), and a plain web server for resin.metadata=URL. They
// are loopback HTTP servers; QEMU forwards a guest address on the metadata network to
// them. Every request is recorded, so tests can see what the guest asked for.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
}

export interface MetadataDouble {
  port: number;
  requests: SeenRequest[];
  close(): Promise<void>;
}

type Reply = { status: number; body?: Buffer | string };

async function serve(handler: (req: SeenRequest) => Reply): Promise<MetadataDouble> {
  const requests: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const seen = { method: req.method ?? "", path: req.url ?? "", headers: req.headers };
      requests.push(seen);
      const reply = handler(seen);
      res.writeHead(reply.status, { "content-type": "application/octet-stream", connection: "close" });
      res.end(reply.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** AWS IMDSv2: user data only for a caller holding a session token. */
export function imdsV2Double(userData: Buffer): Promise<MetadataDouble> {
  const token = randomUUID();
  return serve((req) => {
    if (req.method === "PUT" && req.path === "/latest/api/token") {
      const ttl = Number(req.headers["x-aws-ec2-metadata-token-ttl-seconds"]);
      return ttl >= 1 && ttl <= 21600 ? { status: 200, body: token } : { status: 400 };
    }
    if (req.method === "GET" && req.path === "/latest/user-data") {
      return req.headers["x-aws-ec2-metadata-token"] === token ? { status: 200, body: userData } : { status: 401 };
    }
    return { status: 404 };
  });
}

/** An EC2-compatible metadata service without tokens: PUT is not a thing there. */
export function ec2CompatibleDouble(userData: Buffer): Promise<MetadataDouble> {
  return serve((req) => {
    if (req.method === "GET" && req.path === "/latest/user-data") return { status: 200, body: userData };
    return { status: req.method === "GET" ? 404 : 405 };
  });
}

/** A web server with one document at `path` (what resin.metadata=URL points at on metal). */
export function webDouble(path: string, document: Buffer): Promise<MetadataDouble> {
  return serve((req) => (req.method === "GET" && req.path === path ? { status: 200, body: document } : { status: 404 }));
}
