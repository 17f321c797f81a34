// Find the Debian archive this machine already uses, so that Resin can ask the same
// mirror for other suites (bullseye's consul) without a host name in the repository.

export interface AptSourceFile {
  path: string;
  text: string;
}

export interface DebianMirror {
  uri: string;
  /** Keyring from the machine's own entry, if it names one. */
  signedBy?: string;
}

interface Entry {
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** One-line format: `deb [opt=val ...] URI SUITE COMPONENT...` */
function parseOneLine(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!/^deb\s/.test(line)) continue;
    let rest = line.slice(3).trim();
    let signedBy: string | undefined;
    const options = rest.match(/^\[([^\]]*)\]\s*/);
    if (options) {
      rest = rest.slice(options[0].length);
      signedBy = options[1]!.split(/\s+/).find((o) => o.startsWith("signed-by="))?.slice("signed-by=".length);
    }
    const [uri, suite, ...components] = rest.split(/\s+/);
    if (uri && suite) entries.push({ uris: [uri], suites: [suite], components, signedBy });
  }
  return entries;
}

/** deb822 format (`*.sources`): stanzas of `Key: value` separated by blank lines. */
function parseDeb822(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = "";
    for (const line of stanza.split("\n")) {
      if (line.startsWith("#")) continue;
      if (/^\s/.test(line) && last) {
        fields.set(last, `${fields.get(last)} ${line.trim()}`);
        continue;
      }
      const m = line.match(/^([A-Za-z-]+):\s*(.*)$/);
      if (m) {
        last = m[1]!.toLowerCase();
        fields.set(last, m[2]!.trim());
      }
    }
    const types = (fields.get("types") ?? "").split(/\s+/);
    if (!types.includes("deb") || fields.get("enabled") === "no") continue;
    const words = (key: string) => (fields.get(key) ?? "").split(/\s+/).filter(Boolean);
    const signedBy = fields.get("signed-by");
    entries.push({
      uris: words("uris"),
      suites: words("suites"),
      components: words("components"),
      // An inline key block is not a path we can reuse; fall back to apt's default keyrings.
      signedBy: signedBy && signedBy.startsWith("/") ? signedBy : undefined,
    });
  }
  return entries;
}

export function parseAptSources(files: AptSourceFile[]): Entry[] {
  return files.flatMap((f) => (f.path.endsWith(".sources") ? parseDeb822(f.text) : parseOneLine(f.text)));
}

/**
 * The mirror serving `codename` (this machine's own suite, e.g. bookworm) with the main
 * component. Debian keeps older suites such as bullseye on the same archive.
 */
export function findDebianMirror(files: AptSourceFile[], codename: string): DebianMirror | undefined {
  for (const entry of parseAptSources(files)) {
    if (entry.suites.includes(codename) && entry.components.includes("main") && entry.uris[0]) {
      return { uri: entry.uris[0], signedBy: entry.signedBy };
    }
  }
  return undefined;
}

/** A private sources.list naming the same mirror once per suite Resin needs. */
export function renderSourcesList(mirror: DebianMirror, suites: string[]): string {
  const options = mirror.signedBy ? `[signed-by=${mirror.signedBy}] ` : "";
  return [...new Set(suites)]
    .sort()
    .map((suite) => `deb ${options}${mirror.uri} ${suite} main\n`)
    .join("");
}

/** `VERSION_CODENAME` from /etc/os-release text. */
export function osCodename(osRelease: string): string | undefined {
  return osRelease.match(/^VERSION_CODENAME=["']?([a-z]+)["']?$/m)?.[1];
}
