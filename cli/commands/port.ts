// `resin port NODE SERVICE.PORT`: where on this host a node's forwarded port is, as
// 127.0.0.1:PORT, for scripts (a project's tests/) that talk to a service in a node.
import { requireNode, type ClusterHandle } from "../state/state.js";
import { ResinError } from "../util/errors.js";

export async function portCommand(cluster: ClusterHandle, nodeName: string, key: string): Promise<string> {
  const state = await cluster.require();
  const node = requireNode(state, nodeName);
  const port = node.ports[key];
  const known = Object.keys(node.ports).sort().join(", ");
  if (!/^[a-z][a-z0-9-]*\.[a-z][a-z0-9_-]*$/.test(key)) throw new ResinError(`'${key}' is not SERVICE.PORT`, `e.g. consul.https; ${nodeName} forwards: ${known || "nothing yet (it has not started)"}`);
  if (!port) throw new ResinError(`node ${nodeName} forwards no port '${key}'`, `it forwards: ${known || "nothing yet (it has not started)"}`);
  return `127.0.0.1:${port}`;
}
