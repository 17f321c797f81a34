// One Handlebars environment for every template Resin renders (image-time role config
// and boot-time node config). No HTML escaping: the output is HCL, JSON or shell.
import Handlebars from "handlebars";

/** Compare dotted versions numerically: "1.10.0" > "1.9.3". */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map((n) => parseInt(n, 10) || 0);
  const pb = b.split(".").map((n) => parseInt(n, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

const env = Handlebars.create();
// {{#if (since service.version "1.11")}} … {{/if}}: config keys that appeared in that release.
env.registerHelper("since", (version: unknown, min: unknown) => compareVersions(String(version), String(min)) >= 0);
// {{json value}}: a correctly quoted HCL/JSON string, list or number. Strict mode does
// not check a helper's arguments, so a value the context lacks (a secret the node's role
// does not get) is refused here rather than rendered as nothing.
env.registerHelper("json", (value: unknown, options: { loc?: { start?: { line?: number } } }) => {
  if (value === undefined) throw new Error(`{{json}} of a value the context does not have (line ${options.loc?.start?.line ?? "?"}): is it something this node's role does not get?`);
  return new env.SafeString(JSON.stringify(value));
});

export function renderTemplate(source: string, context: object, name: string): string {
  try {
    return env.compile(source, { noEscape: true, strict: true })(context);
  } catch (e) {
    throw new Error(`template ${name}: ${(e as Error).message}`);
  }
}
