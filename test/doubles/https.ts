// TEST DOUBLE plumbing, not a HashiCorp program: a loopback HTTPS server (127.0.0.1,
// a free port) for the Nomad and Vault test doubles, with certificates from Resin's
// own PKI (cli/bootstrap/pki.ts). It can require a client certificate signed by the
// CA, as an agent with verify_incoming does.
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface DoubleTls {
  /** PEM: the CA that signed `cert` (and the client certificates to accept). */
  ca: string;
  cert: string;
  key: string;
  /** Refuse a TLS client that does not present a certificate signed by `ca`. */
  requireClientCert?: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
  /** Whether the client presented a certificate the CA signed. */
  authorizedClient: boolean;
}

export interface RunningDouble {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Handler = (req: RecordedRequest) => { status: number; body: unknown; contentType?: string };

export async function serveHttps(tls: DoubleTls, handler: Handler): Promise<RunningDouble> {
  const requests: RecordedRequest[] = [];
  const server: Server = createServer(
    { ca: tls.ca, cert: tls.cert, key: tls.key, requestCert: true, rejectUnauthorized: tls.requireClientCert === true },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const socket = req.socket as import("node:tls").TLSSocket;
        const recorded: RecordedRequest = {
          method: req.method ?? "",
          path: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          authorizedClient: socket.authorized === true,
        };
        requests.push(recorded);
        let answer: ReturnType<Handler>;
        try {
          answer = handler(recorded);
        } catch (e) {
          answer = { status: 500, body: `test double: ${(e as Error).message}`, contentType: "text/plain" };
        }
        const text = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
        res.writeHead(answer.status, { "content-type": answer.contentType ?? (typeof answer.body === "string" ? "text/plain" : "application/json") });
        res.end(text);
      });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
