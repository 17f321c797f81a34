// Debian's own dependency data, read from a suite's Packages index: what a package
// Depends or Pre-Depends on, transitively, within that suite. A service without a
// `libraries:` list takes its shared libraries from these packages. Pure: no apt, no files.

export interface PackageStanza {
  name: string;
  version: string;
  depends: string;
  preDepends: string;
  provides: string;
}

/** One alternative of a dependency: `name (op version)`. */
export interface Relation {
  name: string;
  op?: "<<" | "<=" | "=" | ">=" | ">>";
  version?: string;
}

export interface PackagesIndex {
  /** The newest version of each real package. */
  real: Map<string, PackageStanza>;
  /** Virtual package name → the real packages that provide it (with the version they provide, if any). */
  providers: Map<string, { name: string; version?: string }[]>;
}

/** The stanzas of a Packages file (only the fields dependency resolution reads). */
export function parsePackages(text: string): PackageStanza[] {
  const stanzas: PackageStanza[] = [];
  for (const block of text.split(/\n[ \t]*\n/)) {
    const fields: Record<string, string> = {};
    let last = "";
    for (const line of block.split("\n")) {
      if (/^[ \t]/.test(line)) {
        // A continuation line (Description's body, a folded Depends).
        if (last) fields[last] += ` ${line.trim()}`;
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      last = line.slice(0, colon);
      fields[last] = line.slice(colon + 1).trim();
    }
    if (fields.Package && fields.Version) {
      stanzas.push({ name: fields.Package, version: fields.Version, depends: fields.Depends ?? "", preDepends: fields["Pre-Depends"] ?? "", provides: fields.Provides ?? "" });
    }
  }
  return stanzas;
}

/** `a (>= 1) | b, c:any` → [[a >= 1, b], [c]]. Architecture qualifiers are dropped. */
export function parseRelations(field: string): Relation[][] {
  if (!field.trim()) return [];
  return field.split(",").map((group) =>
    group.split("|").map((alt) => {
      const m = alt.trim().match(/^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?/);
      if (!m) throw new Error(`cannot read the dependency '${alt.trim()}'`);
      // '<' and '>' are dpkg's obsolete spellings of '<=' and '>='.
      const op = m[2] === "<" ? "<=" : m[2] === ">" ? ">=" : (m[2] as Relation["op"]);
      return op ? { name: m[1]!, op, version: m[3]! } : { name: m[1]! };
    }),
  );
}

/** dpkg's version order: epoch, then upstream version and Debian revision, each by dpkg's string rules. */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const colon = v.indexOf(":");
    const epoch = colon > 0 ? Number(v.slice(0, colon)) : 0;
    const rest = colon > 0 ? v.slice(colon + 1) : v;
    const dash = rest.lastIndexOf("-");
    return { epoch, upstream: dash >= 0 ? rest.slice(0, dash) : rest, revision: dash >= 0 ? rest.slice(dash + 1) : "0" };
  };
  const x = split(a);
  const y = split(b);
  if (x.epoch !== y.epoch) return x.epoch < y.epoch ? -1 : 1;
  return comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision);
}

/** '~' sorts before everything, even the end; letters before other characters. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // The non-digit prefix, character by character.
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ca = i < a.length && !/\d/.test(a[i]!) ? a[i] : undefined;
      const cb = j < b.length && !/\d/.test(b[j]!) ? b[j] : undefined;
      const d = order(ca) - order(cb);
      if (d) return d < 0 ? -1 : 1;
      i++;
      j++;
    }
    // Then the numeric part, as a number.
    let na = "";
    let nb = "";
    while (i < a.length && /\d/.test(a[i]!)) na += a[i++];
    while (j < b.length && /\d/.test(b[j]!)) nb += b[j++];
    const d = BigInt(na || "0") - BigInt(nb || "0");
    if (d) return d < 0n ? -1 : 1;
  }
  return 0;
}

function satisfies(version: string | undefined, r: Relation): boolean {
  if (!r.op) return true;
  if (version === undefined) return false;
  const c = compareVersions(version, r.version!);
  return r.op === "<<" ? c < 0 : r.op === "<=" ? c <= 0 : r.op === "=" ? c === 0 : r.op === ">=" ? c >= 0 : c > 0;
}

export function indexPackages(stanzas: PackageStanza[]): PackagesIndex {
  const real = new Map<string, PackageStanza>();
  for (const s of stanzas) {
    const had = real.get(s.name);
    if (!had || compareVersions(s.version, had.version) > 0) real.set(s.name, s);
  }
  const providers = new Map<string, { name: string; version?: string }[]>();
  for (const s of [...real.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const group of parseRelations(s.provides)) {
      for (const p of group) providers.set(p.name, [...(providers.get(p.name) ?? []), { name: s.name, version: p.version }]);
    }
  }
  return { real, providers };
}

export interface Closure {
  /** Every package the roots need, roots excluded, nearest first (breadth-first, in field order). */
  packages: string[];
  /** Dependencies nothing in the suite satisfies, as written ("foo (>= 2)"). */
  unsatisfied: string[];
}

/**
 * The Depends and Pre-Depends closure of `roots`. Of alternatives `a | b`, one already
 * chosen wins, else the first that the suite satisfies; a virtual package is satisfied
 * by a provider already chosen, else the first by name.
 */
export function dependencyClosure(index: PackagesIndex, roots: string[]): Closure {
  const chosen = new Set<string>(roots);
  const order: string[] = [];
  const unsatisfied: string[] = [];
  const queue = [...roots];
  const candidates = (r: Relation): string[] => {
    const real = index.real.get(r.name);
    const direct = real && satisfies(real.version, r) ? [r.name] : [];
    // A versioned dependency on a virtual package needs a versioned Provides.
    const provided = (index.providers.get(r.name) ?? []).filter((p) => satisfies(p.version, r)).map((p) => p.name);
    return [...direct, ...provided];
  };
  while (queue.length) {
    const stanza = index.real.get(queue.shift()!);
    if (!stanza) continue;
    for (const group of [...parseRelations(stanza.preDepends), ...parseRelations(stanza.depends)]) {
      const options = group.map(candidates);
      if (options.some((o) => o.some((n) => chosen.has(n)))) continue;
      const pick = options.find((o) => o.length)?.[0];
      if (!pick) {
        const text = group.map((r) => (r.op ? `${r.name} (${r.op} ${r.version})` : r.name)).join(" | ");
        if (!unsatisfied.includes(text)) unsatisfied.push(text);
        continue;
      }
      chosen.add(pick);
      order.push(pick);
      queue.push(pick);
    }
  }
  return { packages: order, unsatisfied };
}
