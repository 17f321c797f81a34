// The image stage: turn a role (spec) and its locked packages (artifacts) into a kernel,
// an initramfs holding the whole root filesystem, and a manifest naming the origin of
// every file. Builds are skipped when nothing that goes into them changed.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import { shownPath, type Role, type Service } from "../spec/load.js";
import { renderTemplate } from "../spec/template.js";
import { lockKey, upstreamVersion, type Lock, type LockedDeb } from "../artifacts/lock.js";
import { unpackedDeb } from "../artifacts/cache.js";
import { hostCodename } from "../artifacts/apt.js";
import { cachedRelease, missingReleaseError, releaseEntries, type ReleaseIndex } from "../artifacts/official.js";
import { canonicalJson, sha256, sha256File } from "../util/hash.js";
import { ResinError } from "../util/errors.js";
import type { Log } from "../util/log.js";
import { Rootfs, type Provenance } from "./rootfs.js";
import { writeSquashfs } from "./squashfs.js";
import { kernelFiles, pciModuleAliases } from "./kernel.js";
import { modeInside, readInside } from "./package-files.js";
import { addLibraryClosure, PackageSearch, takePath, type Opener, type PackageRoot } from "./libraries.js";
import { writeCpio } from "./cpio.js";
import { efiStubPath, writeDisks } from "./disk.js";
import { targetRunner, type Arch } from "../spec/arch.js";
import { builderCode, imageToolVersions } from "./fingerprint.js";
import { CONSUL_SERVICES_FILE, consulServiceDefinitions, consulServiceNames, SYSCTL_FILE, sysctlLines } from "./registrations.js";
import { writeVerity } from "./verity.js";
import { digestParts, imageDigest, imagesDir, readManifest, type BuildCheckResult, type ImageBuilder, type ImageFile, type ImageManifest, type ServiceVersion } from "./manifest.js";

/** Bump when the image layout changes in a way the inputs below do not capture. */
const IMAGE_FORMAT = 4;

export interface BuiltImage {
  dir: string;
  manifest: ImageManifest;
  /** True when the image on disk was already up to date. */
  cached: boolean;
}

/** Locked package entries a role uses, keyed by the name the service asks for. */
async function lockedFor(role: Role, lock: Lock): Promise<Map<string, LockedDeb>> {
  const host = await hostCodename();
  const map = new Map<string, LockedDeb>();
  const take = (name: string, suite?: string) => {
    const key = lockKey(suite ?? host, name, role.arch);
    const entry = lock.debian[key];
    if (!entry) throw new ResinError(`resin.lock.json has no entry for ${key}`, "run `resin build` once with network access to resolve it");
    map.set(name, entry);
  };
  for (const s of role.services) {
    if (s.kernel) take(s.kernel.package);
    for (const p of s.packages) take(p.name, p.suite);
    for (const l of s.libraries ?? []) take(l);
  }
  return map;
}

/**
 * For each service without `libraries:`, what its packages Depend on (as resin.lock.json
 * pins it), nearest first: where its shared libraries and link targets are looked for.
 */
async function closuresFor(role: Role, debs: Map<string, LockedDeb>): Promise<Map<string, { name: string; suite: string }[]>> {
  const host = await hostCodename();
  const map = new Map<string, { name: string; suite: string }[]>();
  for (const s of role.services) {
    if (s.libraries) continue;
    const closure = new Map<string, string>();
    for (const p of s.packages) for (const d of debs.get(p.name)?.depends ?? []) if (!closure.has(d)) closure.set(d, p.suite ?? host);
    map.set(s.name, [...closure].map(([name, suite]) => ({ name, suite })));
  }
  return map;
}

/** The lock entries of the closure packages the lock has: they decide which files a build takes. */
function closureEntries(closures: Map<string, { name: string; suite: string }[]>, lock: Lock, arch: Arch): [string, LockedDeb][] {
  const keys = new Set([...closures.values()].flat().map((c) => lockKey(c.suite, c.name, arch)));
  return [...keys].sort().flatMap((k) => (lock.debian[k] ? [[k, lock.debian[k]] as [string, LockedDeb]] : []));
}

/** The version templates see: the release's, else the upstream version of the service's first package. */
export function serviceVersion(service: Service, debs: Map<string, LockedDeb>): string | undefined {
  if (service.release) return service.release.version;
  const first = service.packages[0];
  return first ? upstreamVersion(debs.get(first.name)!.version) : undefined;
}

/** The verified release archives a role uses, by product, from the cache index. */
async function releasesFor(role: Role): Promise<Map<string, ReleaseIndex>> {
  const map = new Map<string, ReleaseIndex>();
  for (const s of role.services) {
    if (!s.release) continue;
    const entry = await cachedRelease(s.release);
    if (!entry) throw missingReleaseError([s.release]);
    map.set(s.name, entry);
  }
  return map;
}

/**
 * What an image-time template may refer to: the role, its own service (version and
 * options), and every service of the role by name.
 */
export function imageTemplateContext(role: Role, serviceName: string, versions: Record<string, string>) {
  const services = Object.fromEntries(role.services.map((s) => [s.name, { version: versions[s.name] ?? "", options: role.options[s.name] }]));
  return { role: role.spec.role, service: { name: serviceName, ...services[serviceName] }, options: role.options[serviceName], services };
}

/** The build's cache key: a digest over everything that reaches the image's bytes. */
export async function inputDigest(role: Role, debs: Map<string, LockedDeb>, releases: Map<string, ReleaseIndex>, builder: ImageBuilder, closure: [string, LockedDeb][] = []): Promise<string> {
  const services = await Promise.all(
    role.services.map(async (s) => {
      // The initramfs files (/init) count too: a change to one must rebuild the image.
      // So do the node templates: a build check reads a sample node's config rendered from them.
      const sources = [...new Set([...s.files, ...(s.initramfs?.files ?? []), ...s.templates.image, ...s.templates.node].map((f) => f.src))].sort();
      const contents = await Promise.all(sources.map(async (src) => [src, sha256(await readFile(join(s.dir, src)))]));
      return { spec: { ...s, dir: undefined, file: undefined }, contents };
    }),
  );
  return sha256(
    canonicalJson({
      format: IMAGE_FORMAT,
      arch: role.arch,
      // The builder's own code and the host programs it runs make the bytes too.
      builder,
      role: role.spec,
      options: role.options,
      services,
      debs: [...debs.entries()].sort(([a], [b]) => a.localeCompare(b)),
      releases: [...releases.entries()].sort(([a], [b]) => a.localeCompare(b)),
      // Only where a service takes its libraries from its packages' Depends.
      ...(closure.length ? { closure } : {}),
    }),
  );
}

/**
 * Runs a role's build checks against a freshly packed image before it replaces the old
 * one, and says what each printed; throws when one fails. It is given to the build by
 * its caller (cli/bootstrap/build-checks.ts renders a sample node's metadata, which
 * this stage cannot).
 */
export type BuildCheck = (role: Role, image: { rootfs: string; services: ServiceVersion[] }, log: Log) => Promise<BuildCheckResult[]>;

/**
 * Build one role's image. `open` unpacks a package of a service's Depends closure,
 * locking and fetching it first when the lock has none (the lock is changed in place).
 */
export async function buildImage(project: string, role: Role, lock: Lock, log: Log, check: BuildCheck, open?: Opener): Promise<BuiltImage> {
  const name = role.spec.role;
  const dir = join(imagesDir(project, role.channel, role.arch), name);
  const debs = await lockedFor(role, lock);
  const releases = await releasesFor(role);
  const builder: ImageBuilder = { code: await builderCode(), tools: await imageToolVersions() };
  const closures = await closuresFor(role, debs);
  let digestOfInputs = await inputDigest(role, debs, releases, builder, closureEntries(closures, lock, role.arch));
  // A previous manifest that does not pass its schema is simply rebuilt over.
  const previous = await readManifest(dir).catch(() => undefined);
  if (
    previous?.inputDigest === digestOfInputs &&
    [previous.kernel, previous.initrd, previous.rootfs, previous.verity, previous.disk?.raw, previous.disk?.qcow2, previous.disk?.iso].every((f) => f && existsSync(join(dir, f.file)))
  ) {
    return { dir, manifest: previous, cached: true };
  }

  log(`  assemble ${name}`);
  const rootfs = new Rootfs();
  for (const d of ["dev", "proc", "sys", "run", "var/lib", "etc", "mnt"]) rootfs.dir(d);
  rootfs.dir("tmp", 0o1777);
  rootfs.dir("root", 0o700);

  const unpacked = new Map<string, string>();
  for (const [requested, deb] of debs) unpacked.set(requested, await unpackedDeb(deb.sha256, `${deb.package} ${deb.version}`));
  const debLabel = (requested: string) => `${debs.get(requested)!.package} ${debs.get(requested)!.version}`;

  // Kernel and the chosen modules: all of them in the root filesystem, the few that
  // reach the root disk also in the initramfs.
  const base = role.services.find((s) => s.kernel)!;
  const kernelRoot = unpacked.get(base.kernel!.package)!;
  const kernelLabel = { kind: "deb", source: debLabel(base.kernel!.package) };
  const { modules, hardware_modules: hardware, on_demand_modules: onDemand } = base.kernel!;
  const bootModules = [...new Set([...modules, ...role.services.flatMap((s) => s.modules)])];
  const kernel = await kernelFiles(kernelRoot, [...base.initramfs!.modules, ...bootModules, ...hardware, ...onDemand]);
  for (const [path, data] of kernel.files) rootfs.file(path, data, 0o644, kernelLabel);
  // The boot script loads these with one modprobe; their dependencies come from modules.dep.
  const fromBase = { kind: "service", source: `${base.name}/service.yml` };
  rootfs.file("etc/modules", Buffer.from(bootModules.join("\n") + "\n"), 0o644, fromBase);
  // And these only where a PCI device matches one of their aliases.
  const aliases = kernel.files.get(join("lib", "modules", kernel.version, "modules.alias"))!.toString("utf8");
  rootfs.file("etc/modules.pci", Buffer.from(pciModuleAliases(aliases, hardware, shownPath(base.file))), 0o644, fromBase);

  // Files taken from packages, then the shared libraries they load. Each service's files
  // are searched for what they need in its own packages (see libraries.ts).
  const rootOf = (requested: string): PackageRoot => ({ name: requested, root: unpacked.get(requested)!, label: debLabel(requested) });
  const listed = role.services.flatMap((s) => s.libraries ?? []).map(rootOf);
  const pooled = new PackageSearch("the role's libraries", role.services.flatMap((s) => [...(s.libraries ?? []), ...s.packages.map((p) => p.name)]).map(rootOf));
  const searches = new Map<string, PackageSearch>();
  for (const s of role.services) {
    const closure = closures.get(s.name);
    searches.set(s.name, closure ? new PackageSearch(`service '${s.name}'`, [...s.packages.map((p) => rootOf(p.name)), ...listed], closure, open) : pooled);
  }
  const owners = new Map<string, PackageSearch>();
  const usedDebs = new Map<string, LockedDeb>();
  const used = (from: PackageRoot) => {
    if (from.deb) usedDebs.set(from.deb.package, from.deb);
  };
  const appletBinaries: { path: string; root: string }[] = [];
  // Files the builder itself uses (the UEFI stub), kept out of the root filesystem.
  const buildOnly = new Map<string, { data: Buffer; from: string }>();
  // Package files only the initramfs holds (dmsetup), with the search for their libraries.
  const initramfsPaths: InitramfsPath[] = [];
  for (const service of role.services) {
    const search = searches.get(service.name)!;
    for (const pkg of service.packages) {
      const root = unpacked.get(pkg.name)!;
      for (const path of pkg.paths) {
        if (pkg.initramfs) {
          initramfsPaths.push({ where: shownPath(service.file), pkg: rootOf(pkg.name), path, search });
          continue;
        }
        if (!pkg.build_only && !pkg.install_to) {
          await takePath(rootfs, { where: shownPath(service.file), pkg: rootOf(pkg.name), path, search, owners, used });
          continue;
        }
        const data = await readInside(root, path);
        if (!data) throw new ResinError(`${shownPath(service.file)}: packages: ${pkg.name} has no file '${path}'`, `list the package's files with: dpkg-deb -c <the .deb>, or look in ${root}`);
        if (pkg.build_only) {
          buildOnly.set(path, { data, from: `deb:${debLabel(pkg.name)}` });
          continue;
        }
        const target = `${pkg.install_to}/${path.split("/").pop()}`;
        rootfs.file(target, data, await modeInside(root, path), { kind: "deb", source: debLabel(pkg.name) });
        owners.set(target, search);
      }
      if (pkg.applets) appletBinaries.push({ path: pkg.paths[0]!, root });
    }
  }
  // The disk image's UKI is made from this stub; without it there is no disk image.
  const stubPath = efiStubPath(role.arch);
  const stub = buildOnly.get(stubPath);
  if (!stub) {
    throw new ResinError(
      `${shownPath(base.file)}: no package provides the UEFI stub '${stubPath}' the disk image boots with`,
      `add to its packages: { name: systemd-boot-efi, paths: [usr/lib/systemd/boot/efi/linux$EFI_ARCH.efi.stub], build_only: true }`,
    );
  }
  // Programs from official releases (verified when they entered the cache, re-hashed here).
  for (const service of role.services) {
    const release = service.release;
    if (!release) continue;
    const entries = await releaseEntries(release, (name) => name in release.files);
    for (const [inZip, path] of Object.entries(release.files)) {
      const data = entries.get(inZip);
      if (!data) throw new ResinError(`${shownPath(service.file)}: the ${release.product} ${release.version} release has no file '${inZip}'`, `its files are: ${[...entries.keys()].join(", ") || "(none matched)"}`);
      rootfs.file(path, data, 0o755, { kind: "release", source: `${release.product} ${release.version} (${releases.get(service.name)!.file})` });
      owners.set(path, searches.get(service.name)!);
    }
  }
  const lockBefore = canonicalJson(closureEntries(closures, lock, role.arch));
  await addLibraryClosure(rootfs, owners, pooled, used, role.arch);
  // Packages the closure opened for the first time are in the lock now: the next build's
  // inputs include them, so this one's digest must too, or it would never be up to date.
  if (canonicalJson(closureEntries(closures, lock, role.arch)) !== lockBefore) digestOfInputs = await inputDigest(role, debs, releases, builder, closureEntries(closures, lock, role.arch));

  // Users, service files and image-time templates.
  const users = role.services.flatMap((s) => (s.user ? [s.user] : []));
  rootfs.file("etc/passwd", Buffer.from(["root:x:0:0:root:/root:/bin/sh", ...users.map((u) => `${u.name}:x:${u.uid}:${u.uid}:${u.name}:/var/lib/${u.name}:/bin/false`)].join("\n") + "\n"), 0o644, { kind: "generated", source: "users" });
  rootfs.file("etc/group", Buffer.from(["root:x:0:", ...users.map((u) => `${u.name}:x:${u.uid}:`)].join("\n") + "\n"), 0o644, { kind: "generated", source: "users" });

  const versions = Object.fromEntries(role.services.map((s) => [s.name, serviceVersion(s, debs) ?? ""]));
  for (const service of role.services) {
    for (const f of service.files) {
      rootfs.file(f.dst, await readFile(join(service.dir, f.src)), parseInt(f.mode, 8), { kind: "service", source: `${service.name}/${f.src}` });
    }
    for (const t of service.templates.image) {
      const context = imageTemplateContext(role, service.name, versions);
      const text = renderTemplate(await readFile(join(service.dir, t.src), "utf8"), context, `${service.name}/${t.src}`);
      rootfs.file(t.dst, Buffer.from(text), parseInt(t.mode, 8), { kind: "template", source: `${service.name}/${t.src}` });
    }
  }
  // What the services ask of Consul and of the kernel (`consul.services`, `sysctl:`).
  const definitions = consulServiceDefinitions(role.services);
  if (definitions) rootfs.file(CONSUL_SERVICES_FILE, Buffer.from(definitions), 0o644, { kind: "generated", source: "consul.services of the role's services" });
  const sysctl = sysctlLines(role);
  if (sysctl) rootfs.file(SYSCTL_FILE, Buffer.from(sysctl), 0o644, { kind: "generated", source: "sysctl of the role and its services" });

  // Every supervised service gets the same plumbing: runsv's state on /run (the image
  // stays read-only), a finish script that counts restarts, and a logger.
  const runit = { kind: "generated", source: "runit" };
  for (const entry of rootfs.list()) {
    const name = entry.path.match(/^etc\/service\/([^/]+)\/run$/)?.[1];
    if (!name) continue;
    rootfs.symlink(`etc/service/${name}/supervise`, `/run/runit/supervise.${name}`, runit);
    rootfs.symlink(`etc/service/${name}/finish`, "/usr/lib/resin/finish", runit, true);
    rootfs.symlink(`etc/service/${name}/log/run`, "/usr/lib/resin/log-run", runit, true);
    rootfs.symlink(`etc/service/${name}/log/supervise`, `/run/runit/supervise.${name}.log`, runit);
  }

  // busybox applets fill in whatever no package provides.
  // An applet never shadows a real program of the same name elsewhere on PATH (mke2fs).
  const programs = new Set(rootfs.list().filter((e) => e.type === "file" && /^(usr\/)?s?bin\//.test(e.path)).map((e) => e.path.split("/").pop()));
  for (const { path, root } of appletBinaries) {
    const stdout = await appletList(join(root, path), role.arch);
    for (const applet of stdout.split("\n").filter(Boolean).sort()) {
      if (programs.has(applet.split("/").pop())) continue;
      rootfs.symlink(applet.replace(/^\/+/, ""), `/${path}`, { kind: "deb", source: `applet of ${path}` }, true);
    }
  }

  const initramfs = await assembleInitramfs(base, kernelRoot, kernelLabel, appletBinaries[0]!, initramfsPaths, used, role.arch);

  // Pack. gzip from zlib writes no timestamp or name, so equal trees give equal bytes.
  const initrd = gzipSync(writeCpio(initramfs.list()), { level: 9 });
  const scratch = `${dir}.tmp-${process.pid}`;
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  // The disk images are written from these files, which are never read whole again.
  const at = (file: string) => join(scratch, file);
  await writeFile(at("vmlinuz"), kernel.vmlinuz);
  await writeFile(at("initrd.img"), initrd);
  await writeSquashfs(rootfs.list(), at("rootfs.squashfs"));
  const described = async (file: string): Promise<ImageFile> => ({ file, sha256: await sha256File(at(file)), size: (await stat(at(file))).size });
  const [vmlinuz, initrdFile, squashfs] = [await described("vmlinuz"), await described("initrd.img"), await described("rootfs.squashfs")];
  // The dm-verity hash tree over the root filesystem, salted from its content (verity.ts).
  const verityParams = await writeVerity(at("rootfs.squashfs"), squashfs.sha256, at("rootfs.verity"));
  const verity = { ...(await described("rootfs.verity")), ...verityParams };
  const digest = imageDigest(digestParts({ kernel: vmlinuz, initrd: initrdFile, rootfs: squashfs, verity }), role.arch);
  const disk = await writeDisks({ dir: scratch, digest, role: name, channel: role.channel, arch: role.arch, kernel: at("vmlinuz"), initrd: at("initrd.img"), rootfs: at("rootfs.squashfs"), verity: at("rootfs.verity"), verityParams, stub });
  const services = role.services.map((s) => ({ name: s.name, version: serviceVersion(s, debs), ports: s.ports, ...(s.consul ? { registers: consulServiceNames([s]) } : {}) }));
  // A failing check leaves the previous image in place: the new one is never installed.
  const checks = await check(role, { rootfs: at("rootfs.squashfs"), services }, log).catch(async (e: unknown) => {
    await rm(scratch, { recursive: true, force: true });
    throw e;
  });
  const manifest: ImageManifest = {
    role: name,
    channel: role.channel,
    arch: role.arch,
    inputDigest: digestOfInputs,
    builder,
    digest,
    kernel: { ...vmlinuz, version: kernel.version, modules: kernel.modules },
    initrd: initrdFile,
    rootfs: squashfs,
    verity,
    disk,
    services,
    packages: [...new Map([...debs.values(), ...usedDebs.values()].map((d) => [d.package, d])).values()].sort((a, b) => a.package.localeCompare(b.package)),
    releases: [...releases.values()].sort((a, b) => a.product.localeCompare(b.product)),
    files: rootfs.manifest(),
    initramfsFiles: initramfs.manifest(),
    checks,
  };

  // Replace the old image only once the new one is complete.
  await writeFile(at("manifest.json"), `${canonicalJson(manifest)}\n`);
  await rm(dir, { recursive: true, force: true });
  await rename(scratch, dir);
  return { dir, manifest, cached: false };
}

/** A package file for the initramfs only, and where its shared libraries are looked for. */
interface InitramfsPath {
  where: string;
  pkg: PackageRoot;
  path: string;
  search: PackageSearch;
}

/** busybox, the modules that reach the root disk (with their own modules.dep), the package files marked initramfs (with their libraries), and /init. */
async function assembleInitramfs(
  base: Service,
  kernelRoot: string,
  kernelLabel: Provenance,
  busybox: { path: string; root: string },
  packaged: InitramfsPath[],
  used: (from: PackageRoot) => void,
  arch: Arch,
): Promise<Rootfs> {
  const tree = new Rootfs();
  for (const d of ["dev", "proc", "sys", "run", "mnt"]) tree.dir(d);
  const { modules, other_root_modules: otherRoots } = base.initramfs!;
  const kernel = await kernelFiles(kernelRoot, [...modules, ...otherRoots]);
  for (const [path, data] of kernel.files) tree.file(path, data, 0o644, kernelLabel);
  const moduleList = (names: string[]) => Buffer.from(names.map((m) => `${m}\n`).join(""));
  tree.file("etc/modules", moduleList(modules), 0o644, { kind: "service", source: `${base.name}/service.yml` });
  tree.file("etc/modules.other-roots", moduleList(otherRoots), 0o644, { kind: "service", source: `${base.name}/service.yml` });
  const data = await readInside(busybox.root, busybox.path);
  tree.file(busybox.path, data!, 0o755, { kind: "deb", source: `busybox (${base.name})` });
  const stdout = await appletList(join(busybox.root, busybox.path), arch);
  for (const applet of stdout.split("\n").filter(Boolean).sort()) tree.symlink(applet.replace(/^\/+/, ""), `/${busybox.path}`, { kind: "deb", source: `applet of ${busybox.path}` }, true);
  const owners = new Map<string, PackageSearch>();
  for (const p of packaged) await takePath(tree, { ...p, owners, used });
  if (packaged.length) await addLibraryClosure(tree, owners, packaged[0]!.search, used, arch);
  for (const f of base.initramfs!.files) {
    tree.file(f.dst, await readFile(join(base.dir, f.src)), parseInt(f.mode, 8), { kind: "service", source: `${base.name}/${f.src}` });
  }
  return tree;
}

/**
 * What busybox's --list-full prints: the one build step that runs a program of the image.
 * For another architecture than the host's it runs under qemu-user (Debian's
 * qemu-user-static), which needs no binfmt registration: the emulator is named.
 */
async function appletList(busybox: string, arch: Arch): Promise<string> {
  const [runner, ...args] = [...targetRunner(arch), busybox, "--list-full"];
  const result = await execa(runner!, args, { reject: false });
  if (result.exitCode !== 0) {
    const missing = (result as { code?: string }).code === "ENOENT";
    throw new ResinError(
      `${busybox} --list-full failed${targetRunner(arch).length ? ` under ${runner}` : ""}: ${(result.stderr || result.stdout || `exit ${result.exitCode}`).toString().trim()}`,
      missing ? "install qemu-user-static (apt-get install qemu-user-static) to build images for another architecture" : "the busybox package may be damaged: delete it from the cache and build again",
    );
  }
  return result.stdout;
}
