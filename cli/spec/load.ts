// Load YAML specs, validate them with zod, and report every problem with the file,
// the line, the field and what would fix it.
import { readFile, readdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { LineCounter, parseDocument, isMap, isNode, isScalar } from "yaml";
import { ZodArray, ZodDefault, ZodObject, ZodOptional, ZodRecord, ZodUnion, type z, type ZodIssue } from "zod";
import { ResinError, SpecError } from "../util/errors.js";
import { installRoot } from "../util/paths.js";
import { DEFAULT_ARCH, resolveArch, UnknownArchVariable, type Arch } from "./arch.js";
import { MachineSchema, ServiceSchema, type Channel, type MachineSpec, type OptionValue, type ReleaseSpec, type ServiceSpec } from "./schema.js";

export interface Service extends ServiceSpec {
  /** Directory holding service.yml and the files it names. */
  dir: string;
  file: string;
  /** The project's own service, or Resin's stock one. */
  origin: Origin;
  /** The official release the chosen channel takes the program from, if any. */
  release?: ReleaseSpec;
}

export interface Role {
  spec: MachineSpec;
  file: string;
  /** The project's own role, or Resin's stock one. */
  origin: Origin;
  channel: Channel;
  /** The architecture it is built for: its services' package names and paths are resolved for it. */
  arch: Arch;
  /** Services in the order the role lists them. */
  services: Service[];
  /** Option values per service, defaults filled in. */
  options: Record<string, Record<string, OptionValue>>;
}

export interface Parsed<T> {
  data: T;
  /** Line of the value at `path` (or of its nearest parent) in the source, for later checks. */
  lineAt: (path: (string | number)[]) => number | undefined;
}

/** Parse one YAML file against a schema; syntax and schema problems become a SpecError. */
export async function loadYaml<S extends z.ZodTypeAny>(file: string, schema: S, shownAs = file): Promise<Parsed<z.infer<S>>> {
  const text = await readFile(file, "utf8");
  return parseYaml(text, schema, shownAs);
}

export function parseYaml<S extends z.ZodTypeAny>(text: string, schema: S, shownAs: string): Parsed<z.infer<S>> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    let at = e.pos[0];
    let field = "";
    if (e.code === "MISSING_CHAR" && /quote/.test(e.message)) {
      // The parser notices at end of input; the user needs the line where the quote opened.
      const quote = e.message.includes("'") ? "'" : '"';
      at = Math.max(0, text.lastIndexOf(quote, at - 1));
    }
    if (e.code === "DUPLICATE_KEY") field = text.slice(at).match(/^\s*([^:\s]+)/)?.[1] ?? "";
    throw new SpecError(shownAs, [
      { field, line: lineCounter.linePos(at).line, message: `YAML syntax error: ${e.message.split("\n")[0]}` },
    ]);
  }
  const lineOf = (node: unknown) => (isNode(node) && node.range ? lineCounter.linePos(node.range[0]).line : undefined);
  const lineAt = (path: (string | number)[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      // For a map entry, the line of its key: that is where the user wrote the name.
      const parent = n <= 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true);
      const key = path[n - 1];
      const pair = n > 0 && isMap(parent) ? parent.items.find((p) => isScalar(p.key) && p.key.value === key) : undefined;
      const line = lineOf(pair?.key) ?? lineOf(n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true));
      if (line) return line;
    }
    return undefined;
  };
  const result = schema.safeParse(doc.toJS() ?? {});
  if (result.success) return { data: result.data, lineAt };
  throw new SpecError(
    shownAs,
    result.error.issues.flatMap((issue: ZodIssue) => {
      if (issue.code === "unrecognized_keys") {
        // Point at each unknown key itself, and say which keys are allowed there.
        const map = issue.path.length > 0 ? doc.getIn(issue.path, true) : doc.contents;
        const allowed = allowedKeys(schema, issue.path);
        return issue.keys.map((key) => {
          const pair = isMap(map) ? map.items.find((p) => isScalar(p.key) && p.key.value === key) : undefined;
          return {
            field: fieldName([...issue.path, key]),
            line: lineOf(pair?.key) ?? lineOf(map),
            message: `unknown key: remove it or use one of: ${allowed.join(", ")}`,
          };
        });
      }
      const node = doc.getIn(issue.path, true);
      const parentNode = issue.path.length > 0 ? doc.getIn(issue.path.slice(0, -1), true) : doc.contents;
      return [{ field: fieldName(issue.path), line: lineOf(node) ?? lineOf(parentNode), message: explain(issue) }];
    }),
  );
}

/** The keys an object schema accepts at `path` (through arrays, records, defaults and optionals). */
function allowedKeys(schema: z.ZodTypeAny, path: (string | number)[]): string[] {
  let current: z.ZodTypeAny | undefined = schema;
  const unwrap = (s: z.ZodTypeAny): z.ZodTypeAny =>
    s instanceof ZodDefault || s instanceof ZodOptional ? unwrap(s._def.innerType as z.ZodTypeAny) : s;
  for (const part of path) {
    if (!current) return [];
    current = unwrap(current);
    if (current instanceof ZodObject) current = (current.shape as Record<string, z.ZodTypeAny>)[String(part)];
    else if (current instanceof ZodArray) current = current.element as z.ZodTypeAny;
    else if (current instanceof ZodRecord) current = current.valueSchema as z.ZodTypeAny;
    else return [];
  }
  const target = current ? unwrap(current) : undefined;
  // A union of objects (a Consul check: tcp, http or https) allows what any of them does.
  const objects = target instanceof ZodUnion ? (target.options as z.ZodTypeAny[]) : [target];
  return [...new Set(objects.flatMap((o) => (o instanceof ZodObject ? Object.keys(o.shape as object) : [])))];
}

/** A path as the user would type it: relative to the working directory when inside it. */
export function shownPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith("..") ? rel : file;
}

function fieldName(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

function explain(issue: ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return issue.received === "undefined"
        ? `is required (expected ${issue.expected})`
        : `expected ${issue.expected}, got ${issue.received}`;
    case "invalid_enum_value":
      return `'${String(issue.received)}' is not allowed; use one of: ${issue.options.join(", ")}`;
    default:
      return issue.message;
  }
}

/**
 * Where specs come from: the project's own `machines/` and `services/`, and beneath
 * them Resin's stock ones (from the installation). A project that is the installation
 * itself (this repository) has the stock layer only.
 */
export type Origin = "project" | "stock";

interface Found {
  file: string;
  origin: Origin;
}

const layers = (project: string, stock: string): { root: string; origin: Origin }[] =>
  resolve(project) === resolve(stock) ? [{ root: stock, origin: "stock" }] : [{ root: project, origin: "project" }, { root: stock, origin: "stock" }];

async function rolesIn(root: string): Promise<string[]> {
  const dir = join(root, "machines");
  if (!existsSync(dir)) return [];
  return (await readdir(dir))
    .filter((f) => f.endsWith(".yml"))
    .map((f) => f.slice(0, -".yml".length))
    .sort();
}

async function servicesIn(root: string): Promise<string[]> {
  const dir = join(root, "services");
  if (!existsSync(dir)) return [];
  const names = await readdir(dir);
  return names.filter((n) => existsSync(join(dir, n, "service.yml"))).sort();
}

/** The project's own roles (the stock ones when the project is the installation): what "all roles" means. */
export async function listRoles(project: string, stock = installRoot()): Promise<string[]> {
  return rolesIn(layers(project, stock)[0]!.root);
}

/** Every role a build may name: the project's and the stock ones. */
export async function availableRoles(project: string, stock = installRoot()): Promise<string[]> {
  const all = await Promise.all(layers(project, stock).map((l) => rolesIn(l.root)));
  return [...new Set(all.flat())].sort();
}

/** Every service a role may list: the project's and the stock ones. */
export async function listServices(project: string, stock = installRoot()): Promise<string[]> {
  const all = await Promise.all(layers(project, stock).map((l) => servicesIn(l.root)));
  return [...new Set(all.flat())].sort();
}

/** The file a role or service is read from: the project's own, else the stock one. */
function findSpec(kind: "role" | "service", project: string, stock: string, name: string): Found | undefined {
  const path = (root: string) => (kind === "role" ? join(root, "machines", `${name}.yml`) : join(root, "services", name, "service.yml"));
  for (const { root, origin } of layers(project, stock)) if (existsSync(path(root))) return { file: path(root), origin };
  return undefined;
}

/**
 * A project's spec with a stock name must say `override: true`, so that nobody replaces
 * (or keeps a stale copy of) a stock role or service without knowing; and `override`
 * where nothing is replaced is a mistake too.
 */
function checkOverride(kind: "role" | "service", found: Found, stockFile: string | undefined, override: boolean | undefined, lineAt: (p: (string | number)[]) => number | undefined): void {
  if (found.origin !== "project") return;
  const shown = shownPath(found.file);
  const field = kind === "role" ? "role" : "name";
  if (stockFile && !override) {
    throw new SpecError(shown, [
      { field, line: lineAt([field]), message: `Resin has a stock ${kind} of this name (${shownPath(stockFile)}): rename yours, or add 'override: true' to replace the stock one in this project` },
    ]);
  }
  if (!stockFile && override) {
    throw new SpecError(shown, [{ field: "override", line: lineAt(["override"]), message: `there is no stock ${kind} of this name to replace: remove 'override'` }]);
  }
}

export async function loadService(project: string, name: string, stock = installRoot()): Promise<Service> {
  const found = findSpec("service", project, stock, name);
  if (!found) throw new SpecError(join("services", name, "service.yml"), [{ field: "", message: `no such service; the services are: ${(await listServices(project, stock)).join(", ")}` }]);
  const { file, origin } = found;
  const dir = dirname(file);
  const shown = shownPath(file);
  const { data: spec, lineAt } = await loadYaml(file, ServiceSchema, shown);
  if (spec.name !== name) {
    throw new SpecError(shown, [{ field: "name", line: lineAt(["name"]), message: `is '${spec.name}' but the directory is '${name}': make them equal` }]);
  }
  const stockFile = join(stock, "services", name, "service.yml");
  checkOverride("service", found, existsSync(stockFile) ? stockFile : undefined, spec.override, lineAt);
  for (const [key, option] of Object.entries(spec.options)) {
    if (!matchesType(option.default, option.type)) {
      throw new SpecError(shown, [{ field: `options.${key}.default`, line: lineAt(["options", key, "default"]), message: `must be a ${option.type}` }]);
    }
  }
  // A Consul registration names its ports by the service's own names for them.
  const portProblems = (spec.consul?.services ?? []).flatMap((c, i) => [
    ...(c.port in spec.ports ? [] : [{ field: `consul.services[${i}].port`, line: lineAt(["consul", "services", i, "port"]), message: `'${c.port}' is not one of this service's ports (${Object.keys(spec.ports).join(", ") || "it has none: add ports:"})` }]),
    ...c.checks.flatMap((check, j) => {
      const port = "tcp" in check ? check.tcp : "http" in check ? check.http : check.https;
      return port in spec.ports ? [] : [{ field: `consul.services[${i}].checks[${j}]`, line: lineAt(["consul", "services", i, "checks", j]), message: `'${port}' is not one of this service's ports (${Object.keys(spec.ports).join(", ") || "none"})` }];
    }),
  ]);
  if (portProblems.length) throw new SpecError(shown, portProblems);
  for (const f of [...spec.files, ...(spec.initramfs?.files ?? []), ...spec.templates.image, ...spec.templates.node]) {
    if (!existsSync(join(dir, f.src))) {
      throw new SpecError(shown, [{ field: "files", message: `'${f.src}' does not exist in ${shownPath(dir)}/` }]);
    }
  }
  return { ...spec, dir, file, origin };
}

/**
 * A service as built on one channel: the channel's packages and libraries join the
 * service's own, and its release (if any) is where the program comes from. A service
 * without channels (its top-level `packages`) is the same on every channel.
 */
export function onChannel(service: Service, channel: Channel): Service {
  if (!service.channels) return service;
  const chosen = service.channels[channel];
  if (!chosen) {
    const offered = Object.keys(service.channels).join(", ");
    throw new ResinError(
      `service '${service.name}' has no '${channel}' channel (it offers: ${offered})`,
      `build with --channel ${Object.keys(service.channels)[0]}, or choose a role without ${service.name}`,
    );
  }
  // `libraries` given in either place replaces Debian's Depends for the whole service.
  const libraries = service.libraries || chosen.libraries ? [...(service.libraries ?? []), ...(chosen.libraries ?? [])] : undefined;
  return {
    ...service,
    packages: [...service.packages, ...chosen.packages],
    libraries,
    release: chosen.release,
  };
}

/**
 * A service as built for one architecture: $ARCH, $MULTIARCH and $EFI_ARCH in its package
 * names and paths (kernel, packages, libraries, release files) resolved (cli/spec/arch.ts).
 * Apply after onChannel, which brings in the channel's packages.
 */
export function forArch(service: Service, arch: Arch): Service {
  const at = (field: string) => (text: string) => {
    try {
      return resolveArch(text, arch, field);
    } catch (e) {
      if (!(e instanceof UnknownArchVariable)) throw e;
      throw new SpecError(shownPath(service.file), [{ field, message: `unknown variable $${e.variable} in '${text}'; use ${e.known.map((k) => `$${k}`).join(", ")}` }]);
    }
  };
  return {
    ...service,
    ...(service.kernel ? { kernel: { ...service.kernel, package: at("kernel.package")(service.kernel.package) } } : {}),
    packages: service.packages.map((p, i) => ({
      ...p,
      name: at(`packages[${i}].name`)(p.name),
      paths: p.paths.map(at(`packages[${i}].paths`)),
      ...(p.install_to ? { install_to: at(`packages[${i}].install_to`)(p.install_to) } : {}),
    })),
    ...(service.libraries ? { libraries: service.libraries.map(at("libraries")) } : {}),
    ...(service.release ? { release: { ...service.release, files: Object.fromEntries(Object.entries(service.release.files).map(([k, v]) => [k, at(`release.files.${k}`)(v)])) } } : {}),
  };
}

/** Load machines/<role>.yml with the services it includes, and check how they fit together. */
export async function loadRole(project: string, role: string, channel: Channel = "official", stock = installRoot(), arch: Arch = DEFAULT_ARCH): Promise<Role> {
  const found = findSpec("role", project, stock, role);
  if (!found) {
    const roles = await availableRoles(project, stock);
    throw new SpecError(join("machines", `${role}.yml`), [
      { field: "", message: `no such role; the roles are: ${roles.join(", ") || "(none)"}` },
    ]);
  }
  const { file, origin } = found;
  const shown = shownPath(file);
  const { data: spec, lineAt } = await loadYaml(file, MachineSchema, shown);
  if (spec.role !== role) {
    throw new SpecError(shown, [{ field: "role", line: lineAt(["role"]), message: `is '${spec.role}' but the file is named '${role}.yml': make them equal` }]);
  }
  const stockFile = join(stock, "machines", `${role}.yml`);
  checkOverride("role", found, existsSync(stockFile) ? stockFile : undefined, spec.override, lineAt);

  const available = await listServices(project, stock);
  const problems: { field: string; line?: number; message: string }[] = [];
  spec.services.forEach((s, i) => {
    if (!available.includes(s)) problems.push({ field: `services[${i}]`, line: lineAt(["services", i]), message: `unknown service '${s}'; the services are: ${available.join(", ")}` });
  });
  if (problems.length) throw new SpecError(shown, problems);
  if (new Set(spec.services).size !== spec.services.length) {
    const repeat = spec.services.findIndex((s, i) => spec.services.indexOf(s) !== i);
    throw new SpecError(shown, [{ field: `services[${repeat}]`, line: lineAt(["services", repeat]), message: `lists '${spec.services[repeat]}' twice: remove the repeat` }]);
  }

  const services = (await Promise.all(spec.services.map((s) => loadService(project, s, stock)))).map((s) => forArch(onChannel(s, channel), arch));
  const kernels = services.filter((s) => s.kernel);
  if (kernels.length !== 1) {
    throw new SpecError(shown, [
      { field: "services", line: lineAt(["services"]), message: `exactly one service must provide the kernel (has ${kernels.map((s) => s.name).join(", ") || "none"}); include 'base'` },
    ]);
  }
  const base = kernels[0]!;
  if (!base.initramfs || !base.packages.some((p) => p.applets)) {
    throw new SpecError(shownPath(base.file), [
      { field: "initramfs", message: "the service that provides the kernel must also define the initramfs and a busybox package with 'applets: true'" },
    ]);
  }

  const options: Record<string, Record<string, OptionValue>> = {};
  for (const service of services) {
    options[service.name] = Object.fromEntries(Object.entries(service.options).map(([k, o]) => [k, o.default]));
  }
  for (const [serviceName, values] of Object.entries(spec.config)) {
    const service = services.find((s) => s.name === serviceName);
    if (!service) {
      problems.push({ field: `config.${serviceName}`, line: lineAt(["config", serviceName]), message: `the role does not include service '${serviceName}'; configurable here: ${services.map((s) => s.name).join(", ")}` });
      continue;
    }
    for (const [key, value] of Object.entries(values)) {
      const option = service.options[key];
      if (!option) {
        const known = Object.keys(service.options);
        problems.push({ field: `config.${serviceName}.${key}`, line: lineAt(["config", serviceName, key]), message: `unknown option; '${serviceName}' has: ${known.join(", ") || "no options"}` });
      } else if (!matchesType(value, option.type)) {
        problems.push({ field: `config.${serviceName}.${key}`, line: lineAt(["config", serviceName, key]), message: `must be a ${option.type} (${option.description})` });
      } else if (option.values && !option.values.includes(String(value))) {
        problems.push({ field: `config.${serviceName}.${key}`, line: lineAt(["config", serviceName, key]), message: `'${String(value)}' is not allowed; use one of: ${option.values.join(", ")}` });
      } else if (typeof value === "number" && ((option.min !== undefined && value < option.min) || (option.max !== undefined && value > option.max))) {
        problems.push({ field: `config.${serviceName}.${key}`, line: lineAt(["config", serviceName, key]), message: `${value} is out of range; use ${option.min ?? "any"} to ${option.max ?? "any"} (${option.description})` });
      } else {
        options[serviceName]![key] = value as OptionValue;
      }
    }
  }
  const registering = services.filter((s) => s.consul);
  if (registering.length && !services.some((s) => s.name === "consul")) {
    problems.push({ field: "services", line: lineAt(["services"]), message: `${registering.map((s) => s.name).join(", ")} register in Consul, but the role has no 'consul' service: add it` });
  }
  // One Consul name per role: Consul would keep only the last definition of a repeated one.
  const registeredBy = new Map<string, string>();
  for (const s of registering) {
    for (const c of s.consul!.services) {
      const first = registeredBy.get(c.name);
      if (first) problems.push({ field: "services", line: lineAt(["services"]), message: `services ${first} and ${s.name} both register '${c.name}' in Consul: rename one (consul.services[].name in its service.yml)` });
      else registeredBy.set(c.name, s.name);
    }
  }
  // Two services that want one kernel parameter set differently: the role decides, not their order.
  const sysctlBy = new Map<string, { service: string; value: string }>();
  for (const s of services) {
    for (const [key, value] of Object.entries(s.sysctl)) {
      const first = sysctlBy.get(key);
      if (first && first.value !== String(value) && !(key in spec.sysctl)) {
        problems.push({ field: "sysctl", line: lineAt(["services"]), message: `services ${first.service} and ${s.name} set ${key} differently (${first.value}, ${String(value)}): choose one under the role's own sysctl:` });
      } else if (!first) sysctlBy.set(key, { service: s.name, value: String(value) });
    }
  }
  if (problems.length) throw new SpecError(shown, problems);
  return { spec, file, origin, channel, arch, services, options };
}

function matchesType(value: unknown, type: "boolean" | "string" | "integer"): boolean {
  if (type === "integer") return Number.isInteger(value);
  return typeof value === type;
}
