import { describe, it, expect, afterEach } from "vitest";
import { whichProgram } from "../../cli/util/tools.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// services/base/metadata.awk turns the metadata JSON (LinuxKit's tree format)
// into files under /run/config at boot. The image only has busybox, but the
// script is plain POSIX awk, so it is checked under every awk we can find.

const SCRIPT = fileURLToPath(new URL("../../services/base/metadata.awk", import.meta.url));

interface Awk {
  name: string;
  cmd: string;
  args: string[];
  env?: Record<string, string>;
}

const candidates: { awk: Awk; missing?: string }[] = [];
{
  const mawk = existsSync("/usr/bin/mawk") ? "/usr/bin/mawk" : whichProgram("mawk");
  candidates.push(mawk ? { awk: { name: "mawk", cmd: mawk, args: [] } } : { awk: { name: "mawk", cmd: "", args: [] }, missing: "mawk not installed (apt-get install mawk)" });
  // gawk's string model depends on the locale (characters vs bytes, and what
  // %c produces), so run it both ways.
  const gawk = whichProgram("gawk");
  for (const locale of ["C.UTF-8", "C"]) {
    const name = `gawk (LC_ALL=${locale})`;
    candidates.push(gawk ? { awk: { name, cmd: gawk, args: [], env: { LC_ALL: locale } } } : { awk: { name, cmd: "", args: [] }, missing: "gawk not installed (apt-get install gawk)" });
  }
  const busybox = whichProgram("busybox");
  candidates.push(
    busybox
      ? { awk: { name: "busybox awk", cmd: busybox, args: ["awk"] } }
      : { awk: { name: "busybox awk", cmd: "", args: [] }, missing: "busybox not installed (apt-get install busybox)" },
  );
}
const available = candidates.filter((c) => !c.missing).map((c) => c.awk);

// Every awk here is on every machine the suite runs on (mawk is Debian's required awk;
// gawk and busybox are in scripts/apt-packages.txt), so a missing one is a failure that
// says how to install it, not a skip.
describe("the awks metadata.awk is checked under", () => {
  it.each(candidates.map((c) => [c.awk.name, c.missing] as const))("%s is installed", (name, missing) => {
    expect(missing, `${name}: ${missing ?? ""}`).toBeUndefined();
  });
});

// ---- helpers ----------------------------------------------------------------

const tmpDirs: string[] = [];
afterEach(() => {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh root path; created (empty) only when asked, as /run/config may or may not exist. */
function freshRoot(create = false): string {
  const dir = mkdtempSync(join(tmpdir(), "resin-metadata-"));
  tmpDirs.push(dir);
  const root = join(dir, "config");
  if (create) mkdirSync(root);
  return root;
}

function runAwk(awk: Awk, input: string | Buffer, root: string | undefined, opts: { umask?: string } = {}) {
  const awkArgs = [...awk.args, ...(root === undefined ? [] : ["-v", `root=${root}`]), "-f", SCRIPT];
  const [cmd, args] = opts.umask
    ? ["/bin/sh", ["-c", `umask ${opts.umask} && exec "$@"`, "sh", awk.cmd, ...awkArgs]]
    : [awk.cmd, awkArgs];
  const r = spawnSync(cmd as string, args as string[], {
    input,
    env: { ...process.env, ...awk.env },
    maxBuffer: 64 << 20,
    timeout: 50_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") };
}

const mode = (p: string) => statSync(p).mode & 0o7777;

/** Every path under root, relative, sorted (directories included). */
function listTree(root: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, prefix)).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    out.push(rel);
    if (statSync(join(root, rel)).isDirectory()) out.push(...listTree(root, rel));
  }
  return out.sort();
}

type MetaNode = { content?: string; entries?: Record<string, MetaNode>; perm?: string; [k: string]: unknown };

/** Check root holds exactly what the metadata document describes: bytes, modes, nothing extra. */
function expectMatches(root: string, doc: Record<string, MetaNode>) {
  const want: string[] = [];
  const walk = (entries: Record<string, MetaNode>, dir: string) => {
    for (const [name, node] of Object.entries(entries)) {
      const rel = dir ? `${dir}/${name}` : name;
      const p = join(root, rel);
      want.push(rel);
      if (node.content !== undefined) {
        expect(statSync(p).isFile(), rel).toBe(true);
        expect(readFileSync(p).equals(Buffer.from(node.content, "utf8")), `content of ${rel}`).toBe(true);
        expect(mode(p), `mode of ${rel}`).toBe(parseInt(node.perm ?? "0644", 8));
      } else {
        expect(statSync(p).isDirectory(), rel).toBe(true);
        expect(mode(p), `mode of ${rel}`).toBe(parseInt(node.perm ?? "0755", 8));
        walk(node.entries!, rel);
      }
    }
  };
  walk(doc, "");
  expect(listTree(root)).toEqual(want.sort());
}

/** Run on input that must be accepted; returns the root it wrote to. */
function accept(awk: Awk, input: string, opts: { umask?: string } = {}): string {
  const root = freshRoot();
  const r = runAwk(awk, input, root, opts);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  expect(r.stdout).toBe("");
  expect(mode(root)).toBe(0o755);
  return root;
}

/** Run on input that must be rejected, leaving a pre-existing, empty root untouched. */
function reject(awk: Awk, input: string, message?: RegExp) {
  const root = freshRoot(true);
  const r = runAwk(awk, input, root);
  expect(r.stderr).toMatch(/^metadata: /);
  if (message) expect(r.stderr).toMatch(message);
  expect(r.status).toBe(1);
  expect(readdirSync(root)).toEqual([]);
  return r.stderr;
}

/** JSON.stringify plus the escaping other producers do: Python's ensure_ascii (\uXXXX for all non-ASCII). */
const asciiJSON = (v: unknown) =>
  JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
/** ... and Go's encoding/json, which escapes <, > and & for HTML safety. */
const goJSON = (v: unknown) =>
  JSON.stringify(v).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

/** Deterministic pseudo-random text full of characters that need escaping. */
function bigText(chars: number): string {
  const alphabet = ['a', 'b', 'c', ' ', ' ', '"', "\\", "\n", "\t", "%", "-", "'", "é", "€", "😀", "{", "}", "/", "\u0001", "x", "y", "z"];
  let seed = 42;
  let s = "";
  while (s.length < chars) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const word = alphabet[seed % alphabet.length]!;
    s += word.repeat(1 + (seed >> 16) % 7);
  }
  return s;
}

const EXAMPLE = '{"hostname":{"content":"node-1\\n"},"consul":{"entries":{"10-node.hcl":{"content":"node_name = \\"node-1\\"\\n","perm":"0600"}}}}';

// ---- tests ------------------------------------------------------------------

describe.each(available)("metadata.awk under $name", (awk) => {
  describe("writes", () => {
    it("the documented example byte-exact with the right modes", () => {
      const root = accept(awk, EXAMPLE);
      expect(readFileSync(join(root, "hostname")).toString("utf8")).toBe("node-1\n");
      expect(readFileSync(join(root, "consul/10-node.hcl")).toString("utf8")).toBe('node_name = "node-1"\n');
      expect(mode(join(root, "hostname"))).toBe(0o644);
      expect(mode(join(root, "consul"))).toBe(0o755);
      expect(mode(join(root, "consul/10-node.hcl"))).toBe(0o600);
      expect(listTree(root)).toEqual(["consul", "consul/10-node.hcl", "hostname"]);
    });

    it("nested directories, including empty and restrictive ones", () => {
      const doc = {
        etc: {
          entries: {
            ssh: {
              perm: "0700",
              entries: { keys: { entries: { host_key: { content: "KEY\n", perm: "0400" } } }, empty: { entries: {} } },
            },
            "motd": { content: "hi\n" },
          },
        },
        locked: { perm: "0500", entries: { deep: { entries: { deeper: { entries: { leaf: { content: "x" } } } } } } },
      };
      expectMatches(accept(awk, JSON.stringify(doc)), doc);
    });

    it("default perms regardless of umask, and explicit 3-5 digit octal perms", () => {
      const doc = {
        file: { content: "a" },
        dir: { entries: { inner: { content: "b" } } },
        three: { content: "c", perm: "640" },
        four: { content: "d", perm: "0600" },
        five: { content: "e", perm: "00444" },
        setuid: { content: "f", perm: "4755" },
        sticky: { perm: "01777", entries: {} },
        d750: { perm: "750", entries: { f: { content: "g", perm: "0" + "640" } } },
      };
      expectMatches(accept(awk, JSON.stringify(doc), { umask: "077" }), doc);
      expectMatches(accept(awk, JSON.stringify(doc), { umask: "000" }), doc);
    });

    it("string escapes as JSON.stringify emits them (quotes, backslashes, control chars, raw UTF-8)", () => {
      const content = 'say "hi" \\ back\\\\slash\nline2\r\n\ttab \b\f/ \u0001\u001f del\u007f é € 😀 中文 \\n not-a-newline \\"';
      const doc = { "escapes.txt": { content }, "naïve-名前 😀": { content: "unicode name" } };
      expectMatches(accept(awk, JSON.stringify(doc)), doc);
    });

    it("\\u escapes, including surrogate pairs and UTF-8 length boundaries (Python ensure_ascii style)", () => {
      const content = "é € 😀 ü 中 \u007f|\u0080|\u07ff|\u0800|\ud7ff|\ue000|\uffff|\u{10000}|\u{10ffff}|\u0001";
      const doc = { "u.txt": { content }, "café": { entries: { "日本": { content: "ok" } } } };
      const input = asciiJSON(doc);
      expect(input).toMatch(/\\ud83d\\ude00/); // the emoji really is a surrogate pair here
      expectMatches(accept(awk, input), doc);
    });

    it("Go-style escaping of <, > and & (\\u003c...)", () => {
      const doc = { "page.html": { content: "<a href=\"x?a=1&b=2\">\u2028</a>" } };
      const input = goJSON(doc);
      expect(input).toContain("\\u003c");
      expectMatches(accept(awk, input), doc);
    });

    it("hand-written escapes other producers use: \\/, upper-case hex, escaped backslash before u", () => {
      const input = String.raw`{"a":{"content":"http:\/\/x\/ \u00E9\u20AC\uD83D\uDE00 \\u0041 \\\" \\\\ end\\"},"b":{"content":"\"\"\"\\"},"c":{"content":"\\\\\\\\"}}`;
      expectMatches(accept(awk, input), JSON.parse(input));
    });

    it("literal %, a leading -, and names that need shell quoting", () => {
      const doc = {
        "-rf": { content: "-n %s %d %% 100%\n" },
        "%s%n": { content: "-" },
        "it's a file": { content: "'quoted' \"twice\"" },
        "$(touch pwned)": { content: "`touch pwned2`" },
        "a b\tc": { entries: { "--": { content: "%%" }, "new\nline": { content: "x" } } },
        ";rm -rf *": { content: "" },
      };
      const root = accept(awk, JSON.stringify(doc));
      expectMatches(root, doc);
      expect(readFileSync(join(root, ";rm -rf *")).length).toBe(0);
    });

    it("ignores unknown keys of any JSON type inside nodes", () => {
      const doc = {
        f: { content: "x", uid: 0, gid: null, mtime: -1.5e9, ok: true, no: false, tags: ["a", { b: [true, false, null, -0.5e-3, 0, 10e+2] }], meta: {} },
        d: { entries: { g: { content: "y", extra: [[[]]] } }, owner: { name: "root" }, perm: "0711" },
      };
      const root = accept(awk, JSON.stringify(doc));
      expectMatches(root, { f: { content: "x" }, d: { entries: { g: { content: "y" } }, perm: "0711" } });
    });

    it("any whitespace layout: pretty-printed, tabs, CRLF, no trailing newline", () => {
      const doc = { a: { entries: { b: { content: "x\ny" } } }, c: { content: "  spaced  " } };
      for (const input of [
        JSON.stringify(doc, null, 2) + "\n",
        JSON.stringify(doc, null, "\t"),
        JSON.stringify(doc, null, 2).replace(/\n/g, "\r\n") + "\r\n",
        "\n\n  " + JSON.stringify(doc) + "  \n\n",
      ]) {
        expectMatches(accept(awk, input), doc);
      }
    });

    it("an empty document {} creates just the root", () => {
      const root = accept(awk, "{}");
      expect(readdirSync(root)).toEqual([]);
    });

    it("large content (200 KB of escape-heavy text) byte-exact", () => {
      const content = bigText(200 * 1024);
      const doc = { big: { content }, small: { content: "after" } };
      const start = Date.now();
      expectMatches(accept(awk, JSON.stringify(doc)), doc);
      expect(Date.now() - start).toBeLessThan(20_000);
    });

    it("a large pretty-printed tree (many lines and files)", () => {
      const doc: Record<string, MetaNode> = {};
      for (let d = 0; d < 20; d++) {
        const entries: Record<string, MetaNode> = {};
        for (let f = 0; f < 25; f++) entries[`file-${f}.conf`] = { content: `d=${d} f=${f}\n`.repeat(f + 1), perm: f % 2 ? "0600" : "0644" };
        doc[`dir-${d}`] = { entries };
      }
      expectMatches(accept(awk, JSON.stringify(doc, null, 2)), doc);
    });
  });

  describe("rejects without writing anything", () => {
    it.each<[string, string, RegExp]>([
      ["empty input", "", /offset 0: unexpected end of input/],
      ["only whitespace", "  \n\t\n", /unexpected end of input/],
      ["truncated document", '{"a":{"content":"x"}', /offset 20: unexpected end of input/],
      ["missing colon", '{"a" {"content":"x"}}', /offset 5: expected ':'/],
      ["trailing data", '{"a":{"content":"x"}} {}', /offset 22: unexpected data after the document/],
      ["trailing word", '{"a":{"content":"x"}}x', /offset 21/],
      ["trailing comma in object", '{"a":{"content":"x"},}', /offset 21: expected a string key/],
      ["trailing comma in node", '{"a":{"content":"x",}}', /offset 20/],
      ["missing comma", '{"a":{"content":"x"} "b":{"content":"y"}}', /offset 21: expected '}'/],
      ["single-quoted key", "{'a':{\"content\":\"x\"}}", /offset 1: unexpected character/],
      ["non-string key", '{1:{"content":"x"}}', /offset 1: expected a string key/],
      ["backslash outside a string", '{\\"a":{"content":"x"}}', /offset 1: unexpected character/],
      ["byte order mark", '\ufeff{"a":{"content":"x"}}', /offset 0: unexpected character/],
      ["unterminated string", '{"a":{"content":"x}}', /offset 16: unterminated string/],
      ["unterminated string ending in an escaped quote", '{"a":{"content":"x\\"}}', /offset 16: unterminated string/],
      ["raw newline in a string", '{"a":{"content":"x\ny"}}', /offset 18: control character/],
      ["raw tab in a string", '{"a":{"content":"\t"}}', /offset 17: control character/],
      ["unknown escape", '{"a":{"content":"ab\\x"}}', /offset 19: invalid escape/],
      ["bad hex in \\u", '{"a":{"content":"\\u12G4"}}', /offset 17: invalid \\u escape/],
      ["short \\u at end of string", '{"a":{"content":"\\u12"}}', /invalid \\u escape/],
      ["lone high surrogate", '{"a":{"content":"\\ud83d"}}', /offset 17: unpaired surrogate/],
      ["high surrogate then text", '{"a":{"content":"\\ud83dx\\ude00"}}', /unpaired surrogate/],
      ["high surrogate then non-surrogate", '{"a":{"content":"\\ud83d\\u0041"}}', /unpaired surrogate/],
      ["lone low surrogate", '{"a":{"content":"x\\ude00"}}', /offset 18: unpaired surrogate/],
      ["\\u0000 (unsupported: NUL cannot be written from busybox awk)", '{"a":{"content":"a\\u0000b"}}', /\\u0000 is not supported/],
      ["misspelled literal", '{"a":{"content":"x","b":tru}}', /offset 24: invalid literal 'tru'/],
      ["capitalised literal", '{"a":{"content":"x","b":True}}', /invalid literal/],
      ["leading zero", '{"a":{"content":"x","n":01}}', /invalid literal '01'/],
      ["bare fraction", '{"a":{"content":"x","n":.5}}', /invalid literal/],
      ["trailing dot", '{"a":{"content":"x","n":1.}}', /invalid literal/],
      ["plus sign", '{"a":{"content":"x","n":+1}}', /invalid literal/],
      ["hex number", '{"a":{"content":"x","n":0x10}}', /invalid literal/],
      ["NaN", '{"a":{"content":"x","n":NaN}}', /invalid literal/],
      ["empty exponent", '{"a":{"content":"x","n":1e}}', /invalid literal/],
      ["trailing comma in array", '{"a":{"content":"x","l":[1,]}}', /offset 27/],
      ["missing comma in array", '{"a":{"content":"x","l":[1 2]}}', /offset 27: expected ']'/],
      ["unclosed array", '{"a":{"content":"x","l":[1', /unexpected end of input/],
      ["duplicate key", '{"a":{"content":"x"},"a":{"content":"y"}}', /duplicate key "a"/],
      ["nesting too deep", `{"a":{"content":"x","n":${"[".repeat(100)}${"]".repeat(100)}}}`, /nested too deeply/],
    ])("malformed JSON: %s", (_label, input, message) => {
      reject(awk, input, message);
    });

    it.each<[string, unknown]>([
      ["array", [{ a: { content: "x" } }]],
      ["string", "x"],
      ["number", 42],
      ["null", null],
      ["true", true],
    ])("top-level value that is not an object: %s", (_label, value) => {
      reject(awk, JSON.stringify(value), /top-level value must be an object/);
    });

    it.each<[string, unknown, RegExp]>([
      ["both content and entries", { a: { content: "x", entries: {} } }, /a: has both "content" and "entries"/],
      ["neither content nor entries", { a: {} }, /a: has neither/],
      ["only a perm", { a: { perm: "0644" } }, /a: has neither/],
      ["neither, nested", { d: { entries: { f: { uid: 0 } } } }, /d\/f: has neither/],
      ["node is a string", { a: "x" }, /a: must be an object/],
      ["node is null", { a: null }, /a: must be an object/],
      ["node is an array", { a: [{ content: "x" }] }, /a: must be an object/],
      ["entries is an array", { a: { entries: [] } }, /a: "entries" must be an object/],
      ["entries is a string", { a: { entries: "x" } }, /a: "entries" must be an object/],
      ["empty name", { "": { content: "x" } }, /invalid name ""/],
      ["name .", { ".": { content: "x" } }, /invalid name "\."/],
      ["name ..", { "..": { content: "x" } }, /invalid name "\.\."/],
      ["name with a slash", { "a/b": { content: "x" } }, /invalid name "a\/b"/],
      ["absolute name", { "/etc/passwd": { content: "x" } }, /invalid name/],
      ["bad name deep inside, after valid entries", { ok: { content: "1" }, d: { entries: { fine: { content: "2" }, sub: { entries: { "../escape": { content: "x" } } } } } }, /invalid name "\.\.\/escape" in d\/sub/],
      ["numeric content", { a: { content: 42 } }, /a: "content" must be a string/],
      ["boolean content", { a: { content: true } }, /"content" must be a string/],
      ["null content", { a: { content: null } }, /"content" must be a string/],
      ["object content", { a: { content: {} } }, /"content" must be a string/],
      ["array content", { a: { content: ["x"] } }, /"content" must be a string/],
      ...(
        [["numeric perm", 644], ["null perm", null], ["empty perm", ""], ["non-octal digit", "0999"], ["symbolic", "rwxr-xr-x"], ["u+x", "u+x"],
         ["trailing junk", "644x"], ["too short", "77"], ["one digit", "7"], ["too long", "000644"], ["five digits without a leading 0", "12345"],
         ["negative", "-644"], ["0o prefix", "0o644"], ["leading space", " 644"], ["trailing newline", "0644\n"], ["shell injection", "0644; touch /tmp/x"]] as [string, unknown][]
      ).map(([label, perm]): [string, unknown, RegExp] => [`bad perm: ${label}`, { d: { entries: { a: { content: "x", perm } } } }, /d\/a: invalid perm/]),
      ["bad perm on a directory", { d: { perm: "755 ", entries: {} } }, /d: invalid perm/],
    ])("%s", (_label, doc, message) => {
      reject(awk, JSON.stringify(doc), message);
    });

    it("an error at the very end of a large document", () => {
      const doc: Record<string, unknown> = { big: { content: bigText(100_000) } };
      for (let i = 0; i < 50; i++) doc[`f${i}`] = { content: `${i}` };
      doc.zzz = { content: 1 };
      reject(awk, JSON.stringify(doc), /zzz: "content" must be a string/);
    });

    it("leaves a missing root uncreated", () => {
      const root = freshRoot();
      const r = runAwk(awk, '{"a":{"content":"x","perm":"9"}}', root);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^metadata: a: invalid perm/);
      expect(existsSync(root)).toBe(false);
    });

    it("refuses to run without -v root", () => {
      const r = runAwk(awk, EXAMPLE, undefined);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe("metadata: root is not set (use -v root=DIR)\n");
    });
  });
});
