// Text from outside (a guest's console and status endpoint, Consul's and Vault's answers,
// an image manifest) made safe for a terminal. Structured data from outside reaches the
// CLI through fromOutside only: parsed by its schema, then every string made inert.
import type { z } from "zod";
import { ResinError } from "./errors.js";

/**
 * Text from a guest, safe to print on a terminal: escape sequences and control
 * characters other than newline and tab are dropped, carriage returns too.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])?/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g, "");
}

/** One value's text, safe in a table cell or a one-line message: printable, and newlines and tabs as spaces. */
export function printableLine(text: string): string {
  return printable(text).replace(/[\n\t]/g, " ");
}

function inert(value: unknown): unknown {
  if (typeof value === "string") return printableLine(value);
  if (Array.isArray(value)) return value.map(inert);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [printableLine(k), inert(v)]));
  return value;
}

/**
 * The one way structured data from outside (a guest's status, Consul's or Vault's
 * answer, an image manifest) enters the CLI: checked against `schema`, numbers as
 * numbers and states from their list, then every string in it, keys too, made one
 * line of printable text. Anything that does not fit is a ResinError naming `what` and
 * the first field, itself printable (zod quotes the value it received).
 */
export function fromOutside<S extends z.ZodTypeAny>(schema: S, data: unknown, what: string, hint?: string): z.infer<S> {
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ResinError(`${what} is not valid: ${printableLine(issue.path.join(".")) || "(the whole answer)"}: ${printableLine(issue.message)}`, hint);
  }
  return inert(parsed.data) as z.infer<S>;
}

/** JSON from outside, parsed; a parse error's message (which quotes the text) made printable. */
export function parseOutsideJson(text: string, what: string, hint?: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ResinError(`${what} is not valid JSON: ${printableLine((e as Error).message)}`, hint);
  }
}
