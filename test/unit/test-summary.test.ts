// scripts/test-summary.mjs against a real vitest JSON report: a fixture project
// (test/fixtures/summary) with one test of each outcome is run by this repository's own
// vitest, and the closing line must count every skip as skipped (collection-time
// skipIf, ctx.skip inside a test, a skipped suite, a todo) and a file that fails at
// import as a failure.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { summarize } from "../../scripts/test-summary.mjs";

const root = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

describe("the test summary line", () => {
  const dir = mkdtempSync(join(tmpdir(), "resin-summary-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("counts vitest's own report: passed, failed (with a file that fails at import), every kind of skip", async () => {
    const out = join(dir, "report.json");
    const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
    // The fixture has a failing test on purpose: vitest exits 1.
    await run(process.execPath, [vitest, "run", "--root", "test/fixtures/summary", "--config", "vitest.config.mjs", "--reporter=json", `--outputFile.json=${out}`], { cwd: root }).catch(
      (e: { code?: number }) => expect(e.code, String(e)).toBe(1),
    );
    const report = JSON.parse(readFileSync(out, "utf8"));
    const { count, lines } = summarize(report);
    expect(count).toEqual({ passed: 1, failed: 2, skipped: 5, unfinished: 0 });
    expect(lines.at(-1)).toBe("Tests: 1 passed, 2 failed, 5 skipped");
    expect(lines).toContain("skipped: skipped inside the test");
    expect(lines).toContain("skipped: a skipped suite its second test");
    // The script run as CI runs it prints the same and keeps the status it is given.
    const cli = await run(process.execPath, [join(root, "scripts", "test-summary.mjs"), out, "0"]);
    expect(cli.stdout.trimEnd().split("\n")).toEqual(lines);
    // vitest's status, passed on: a failed run stays failed after the summary.
    const failed = await run(process.execPath, [join(root, "scripts", "test-summary.mjs"), out, "1"]).then(() => 0, (e: { code?: number }) => e.code);
    expect(failed).toBe(1);
  }, 60_000);

  it("reports a test that never finished as unfinished, not as skipped", () => {
    const report = { testResults: [{ status: "passed", assertionResults: [{ status: "passed", fullName: "a" }, { status: "pending", fullName: "b" }] }] };
    expect(summarize(report).lines.at(-1)).toBe("Tests: 1 passed, 0 failed, 0 skipped, 1 unfinished");
  });
});
