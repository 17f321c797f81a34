// Errors a user can act on. The CLI prints `message` (and `hint`) without a stack
// trace; anything else that escapes is a bug and is printed with its stack.

export class ResinError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "ResinError";
  }
}

/** A problem in a spec file: names the file, the field (and line when known) and the fix. */
export class SpecError extends ResinError {
  constructor(
    readonly file: string,
    readonly problems: { field: string; line?: number; message: string }[],
  ) {
    super(
      problems
        .map((p) => `${file}${p.line ? `:${p.line}` : ""}: ${p.field ? `${p.field}: ` : ""}${p.message}`)
        .join("\n"),
    );
    this.name = "SpecError";
  }
}
