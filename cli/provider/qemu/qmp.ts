// The QEMU Machine Protocol over a unix socket: used to ask a guest to shut down
// cleanly (ctrl-alt-del, which runit turns into an orderly stage 3).
import { connect } from "node:net";

export async function qmpCommand(socket: string, command: object, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = connect(socket);
    let buffer = "";
    let stage = 0;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error("QMP timed out"));
    }, timeoutMs);
    conn.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    conn.on("data", (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const message = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
        buffer = buffer.slice(nl + 1);
        if (message.event) continue;
        if (stage === 0 && message.QMP) {
          conn.write(JSON.stringify({ execute: "qmp_capabilities" }) + "\n");
          stage = 1;
        } else if (stage === 1 && "return" in message) {
          conn.write(JSON.stringify(command) + "\n");
          stage = 2;
        } else if (stage === 2) {
          clearTimeout(timer);
          conn.end();
          if (message.error) reject(new Error(JSON.stringify(message.error)));
          else resolve(message.return);
        }
      }
    });
  });
}

export function ctrlAltDelete(socket: string): Promise<unknown> {
  const key = (data: string) => ({ type: "qcode", data });
  return qmpCommand(socket, { execute: "send-key", arguments: { keys: [key("ctrl"), key("alt"), key("delete")] } });
}
