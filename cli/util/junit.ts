// JUnit XML, the report format every CI system reads: one <testsuite> of <testcase>s,
// each passed, failed (<failure>) or skipped (<skipped>), with its output. Pure: the
// caller writes the text where it likes.

export interface TestCase {
  name: string;
  /** Groups cases in CI's report, e.g. "resin.cluster", "resin.consul", "resin.tests". */
  classname: string;
  seconds: number;
  outcome: "passed" | "failed" | "skipped";
  /** One line: why it failed or was skipped. */
  message?: string;
  /** What the case printed (a script's stdout and stderr, a command's log). */
  output?: string;
}

export interface TestSuite {
  name: string;
  /** ISO 8601, when the suite started. */
  timestamp: string;
  hostname: string;
  cases: TestCase[];
}

// XML 1.0 allows tab, LF, CR and everything from U+0020 on except the surrogates and
// U+FFFE/U+FFFF; anything else (a terminal escape in a script's output) cannot be
// written even escaped, so it becomes U+FFFD.
// eslint-disable-next-line no-control-regex
const NOT_XML = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function xmlText(s: string): string {
  return s.replace(NOT_XML, "\uFFFD").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const attr = (s: string) => xmlText(s).replace(/"/g, "&quot;").replace(/\n/g, "&#10;").replace(/\r/g, "&#13;").replace(/\t/g, "&#9;");
const secs = (n: number) => n.toFixed(3);

export function junitXml(suite: TestSuite): string {
  const count = (o: TestCase["outcome"]) => suite.cases.filter((c) => c.outcome === o).length;
  const total = suite.cases.reduce((t, c) => t + c.seconds, 0);
  const head = `tests="${suite.cases.length}" failures="${count("failed")}" errors="0" skipped="${count("skipped")}" time="${secs(total)}"`;
  const cases = suite.cases.map((c) => {
    const inner = [
      c.outcome === "failed" ? `      <failure message="${attr(c.message ?? "failed")}" type="failure">${xmlText(c.message ?? "")}</failure>` : "",
      c.outcome === "skipped" ? `      <skipped message="${attr(c.message ?? "skipped")}"/>` : "",
      c.output ? `      <system-out>${xmlText(c.output)}</system-out>` : "",
    ].filter(Boolean);
    const open = `    <testcase name="${attr(c.name)}" classname="${attr(c.classname)}" time="${secs(c.seconds)}"`;
    return inner.length ? `${open}>\n${inner.join("\n")}\n    </testcase>` : `${open}/>`;
  });
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="${attr(suite.name)}" ${head}>`,
    `  <testsuite name="${attr(suite.name)}" ${head} timestamp="${attr(suite.timestamp)}" hostname="${attr(suite.hostname)}">`,
    ...cases,
    `  </testsuite>`,
    `</testsuites>`,
    ``,
  ].join("\n");
}
