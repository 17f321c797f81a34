// Print vitest's JSON report as one plain closing line ("Tests: N passed, N failed,
// N skipped") that any CI reader understands. Exits with the status given as $2.
import { readFileSync } from "node:fs";

const [file, status = "0"] = process.argv.slice(2);
try {
  const report = JSON.parse(readFileSync(file, "utf8"));
  const skipped = report.numPendingTests + report.numTodoTests;
  process.stdout.write(`Tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped\n`);
} catch (e) {
  process.stdout.write(`Tests: no report (${e.message})\n`);
}
process.exit(Number(status));
