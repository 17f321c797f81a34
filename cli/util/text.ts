// Text from outside (a guest's console, a node's answers) made safe for a terminal.

/**
 * Text from a guest, safe to print on a terminal: escape sequences and control
 * characters other than newline and tab are dropped, carriage returns too.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])?/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g, "");
}
