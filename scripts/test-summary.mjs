// Print vitest's JSON report as one plain closing line ("Tests: N passed, N failed,
// N skipped") that any CI reader understands, after the names of the skipped tests so a
// skip is never silent. Exits with the status given as $2.
//
// Counts come from each test's own status (assertionResults[].status), not from the
// report's totals: vitest's numPendingTests also holds tests that never finished, and a
// test that did not finish is neither passed nor skipped. "skipped" covers it.skip,
// it.skipIf, describe.skipIf, ctx.skip(reason) and todo; anything else that did not pass
// or fail ("pending": collected but never run to the end) is reported as unfinished.
import { readFileSync } from "node:fs";

/** The closing lines for a parsed vitest JSON report (pure, so it can be tested). */
export function summarize(report) {
  const count = { passed: 0, failed: 0, skipped: 0, unfinished: 0 };
  const skipped = [];
  for (const file of report.testResults ?? []) {
    for (const t of file.assertionResults ?? []) {
      if (t.status === "passed") count.passed++;
      else if (t.status === "failed") count.failed++;
      else if (t.status === "skipped" || t.status === "todo") {
        count.skipped++;
        skipped.push(t.fullName);
      } else count.unfinished++;
    }
    // A file that failed before its tests ran (an import error, a failing beforeAll with
    // no tests collected) has no assertion results: it counts as one failure.
    if (file.status === "failed" && !(file.assertionResults ?? []).some((t) => t.status === "failed")) count.failed++;
  }
  const lines = skipped.map((name) => `skipped: ${name}`);
  const unfinished = count.unfinished ? `, ${count.unfinished} unfinished` : "";
  lines.push(`Tests: ${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped${unfinished}`);
  return { count, lines };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, status = "0"] = process.argv.slice(2);
  try {
    const { lines } = summarize(JSON.parse(readFileSync(file, "utf8")));
    process.stdout.write(lines.join("\n") + "\n");
  } catch (e) {
    process.stdout.write(`Tests: no report (${e.message})\n`);
  }
  process.exit(Number(status));
}
