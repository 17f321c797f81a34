// One DNS question over TCP (RFC 1035 §4.2.2: a two-byte length before each message), for
// asking a real Consul's DNS interface: through a node's TCP port forward from the host, or
// on a loopback agent. Messages are encoded and decoded by dns-packet, not by hand.
import { connect } from "node:net";
import dnsPacket from "dns-packet";

export interface DnsAnswer {
  /** The response code: NOERROR, NXDOMAIN, REFUSED, … */
  rcode: string;
  /** The A records' addresses, sorted. */
  addresses: string[];
}

/** Ask `host:port` for the A records of `name`; rejects on no answer within `timeoutMs`. */
export function dnsQueryTcp(host: string, port: number, name: string, timeoutMs = 5000): Promise<DnsAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error(`no DNS answer from ${host}:${port} for ${name} within ${timeoutMs} ms`)), timeoutMs);
    socket.once("connect", () => {
      socket.write(dnsPacket.streamEncode({ type: "query", id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] }));
    });
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2 || received.length < 2 + received.readUInt16BE(0)) return;
      clearTimeout(timer);
      socket.end();
      // dns-packet decodes the response code as `rcode`, which its published types leave out.
      const answer = dnsPacket.streamDecode(received) as dnsPacket.DecodedPacket & { rcode?: string };
      const addresses = (answer.answers ?? []).flatMap((a) => (a.type === "A" ? [a.data] : [])).sort();
      resolve({ rcode: answer.rcode ?? "", addresses });
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.once("close", () => {
      clearTimeout(timer);
      reject(new Error(`${host}:${port} closed the connection before a whole DNS answer for ${name}`));
    });
  });
}
