// A private apt setup in Resin's cache: its own sources.list (derived from the
// machine's), its own package lists. It downloads .deb files; it installs nothing
// and never touches the machine's apt state.
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ResinError } from "../util/errors.js";
import { cacheHome } from "../util/paths.js";
import { indexPackages, parsePackages, type PackagesIndex } from "./depends.js";
import { findDebianMirror, osCodename, renderSourcesList, type AptSourceFile } from "./apt-sources.js";
import type { Arch } from "../spec/arch.js";

export async function hostCodename(): Promise<string> {
  const text = await readFile("/etc/os-release", "utf8").catch(() => "");
  const codename = osCodename(text);
  if (!codename) throw new ResinError("cannot tell this machine's Debian release: /etc/os-release has no VERSION_CODENAME", "Resin builds on Debian 12 (bookworm)");
  return codename;
}

async function readHostSources(): Promise<AptSourceFile[]> {
  const files: AptSourceFile[] = [];
  if (existsSync("/etc/apt/sources.list")) files.push({ path: "/etc/apt/sources.list", text: await readFile("/etc/apt/sources.list", "utf8") });
  const dir = "/etc/apt/sources.list.d";
  if (existsSync(dir)) {
    for (const name of (await readdir(dir)).sort()) {
      if (name.endsWith(".list") || name.endsWith(".sources")) files.push({ path: join(dir, name), text: await readFile(join(dir, name), "utf8") });
    }
  }
  return files;
}

export class Apt {
  private updated = false;
  private readonly indexes = new Map<string, PackagesIndex>();
  private constructor(
    private readonly options: string[],
    private readonly lists: string,
    private readonly arch: Arch,
  ) {}

  /**
   * Prepare the private apt root for these suites and one architecture's packages (the
   * lists are fetched lazily). Each architecture has its own root: its own lists.
   */
  static async open(suites: string[], arch: Arch, root = join(cacheHome(), "apt", arch)): Promise<Apt> {
    const codename = await hostCodename();
    const mirror = findDebianMirror(await readHostSources(), codename);
    if (!mirror) {
      throw new ResinError(
        `this machine's apt configuration has no Debian '${codename}' source with the main component`,
        "Resin asks the machine's own Debian mirror for packages: add the standard Debian source to /etc/apt/sources.list.d/",
      );
    }
    for (const d of ["lists/partial", "cache/archives/partial", "etc/parts", "etc/prefs"]) await mkdir(join(root, d), { recursive: true });
    const sourcesList = join(root, "etc", "sources.list");
    const text = renderSourcesList(mirror, [codename, ...suites]);
    const previous = existsSync(sourcesList) ? await readFile(sourcesList, "utf8") : "";
    if (previous !== text) {
      await writeFile(sourcesList, text);
      await rm(join(root, "lists"), { recursive: true, force: true });
      await mkdir(join(root, "lists", "partial"), { recursive: true });
    }
    const options = [
      `Dir::Etc::SourceList=${sourcesList}`,
      `Dir::Etc::SourceParts=${join(root, "etc", "parts")}`,
      `Dir::Etc::PreferencesParts=${join(root, "etc", "prefs")}`,
      `Dir::State::Lists=${join(root, "lists")}`,
      `Dir::Cache=${join(root, "cache")}`,
      `APT::Architecture=${arch}`,
      `APT::Architectures=${arch}`,
      "APT::Sandbox::User=root",
    ].flatMap((o) => ["-o", o]);
    return new Apt(options, join(root, "lists"), arch);
  }

  /** A suite's Packages index (main, this architecture), from the private lists apt-get update fetched. */
  async index(suite: string): Promise<PackagesIndex> {
    await this.update();
    const cached = this.indexes.get(suite);
    if (cached) return cached;
    const files = (await readdir(this.lists)).filter((f) => f.includes(`_dists_${suite}_main_binary-${this.arch}_Packages`)).sort();
    if (!files.length) throw new ResinError(`Resin's private package lists have no Packages index for '${suite}'`, "check the suite name; run the build again with network access");
    // apt keeps its lists compressed (lz4, gz, …); apt-helper reads any of them.
    const texts = await Promise.all(files.map(async (f) => (await execa("/usr/lib/apt/apt-helper", ["cat-file", join(this.lists, f)], { maxBuffer: 1 << 30 })).stdout));
    const index = indexPackages(texts.flatMap(parsePackages));
    this.indexes.set(suite, index);
    return index;
  }

  private async update(): Promise<void> {
    if (this.updated) return;
    const result = await execa("apt-get", [...this.options, "-q", "update"], { reject: false });
    if (result.exitCode !== 0) {
      throw new ResinError(`apt-get update (Resin's private package lists) failed:\n${result.stderr.trim()}`, "check that this machine reaches its Debian mirror, or work offline with a fully cached resin.lock.json");
    }
    this.updated = true;
  }

  /** The newest version of `name` in `suite`, as "madison" lists it. */
  async candidate(name: string, suite: string): Promise<string> {
    await this.update();
    const { stdout } = await execa("apt-cache", [...this.options, "madison", name], { reject: false });
    for (const line of stdout.split("\n")) {
      const [pkg, version, source] = line.split("|").map((s) => s.trim());
      if (pkg === name && version && source && source.split(/\s+/)[1]?.startsWith(`${suite}/`)) return version;
    }
    throw new ResinError(`Debian package '${name}' is not in suite '${suite}'`, `check the name (apt-cache search ${name}) and the suite`);
  }

  /** Fields of one package version (Depends, Filename, SHA256, Size …). */
  async show(name: string, version: string): Promise<Record<string, string>> {
    await this.update();
    const { stdout } = await execa("apt-cache", [...this.options, "show", `${name}=${version}`]);
    const fields: Record<string, string> = {};
    for (const line of stdout.split("\n\n")[0]!.split("\n")) {
      const m = line.match(/^([A-Za-z0-9-]+):\s*(.*)$/);
      if (m) fields[m[1]!] = m[2]!;
    }
    return fields;
  }

  /** Download one exact package version into `dir`; returns the file path. */
  async download(name: string, version: string, dir: string): Promise<string> {
    await this.update();
    await mkdir(dir, { recursive: true });
    const result = await execa("apt-get", [...this.options, "-q", "download", `${name}=${version}`], { cwd: dir, reject: false });
    const file = (await readdir(dir)).find((f) => f.startsWith(`${name}_`) && f.endsWith(".deb"));
    if (result.exitCode !== 0 || !file) {
      throw new ResinError(`apt-get download ${name}=${version} failed:\n${result.stderr.trim()}`, "the mirror may no longer carry this version: run `resin build --update-lock` to re-resolve");
    }
    return join(dir, file);
  }
}
