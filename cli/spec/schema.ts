// The shapes of machines/*.yml (roles) and services/*/service.yml (service images).
// Unknown keys are errors everywhere: a typo must fail the build, not be ignored.
import { z } from "zod";

const name = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,38}$/, "must be lowercase letters, digits and '-', starting with a letter (at most 39 characters)");

// Package names and paths may name the architecture by variable ($ARCH, $MULTIARCH,
// $EFI_ARCH: cli/spec/arch.ts), so that a spec says once what differs per architecture.
const ARCH_VAR = String.raw`\$[A-Z][A-Z_]*`;

const debianPackage = z
  .string()
  .regex(new RegExp(`^[a-z0-9](?:[a-z0-9+.-]|${ARCH_VAR})+$`), "must be a Debian package name such as 'busybox-static' (or 'linux-image-$ARCH')");

const relativePath = z
  .string()
  .regex(/^[A-Za-z0-9_.+-][A-Za-z0-9_.+\/-]*$/, "must be a relative path without a leading '/'")
  .refine((p) => !p.split("/").includes(".."), "must not contain '..'");

/** A path inside a package (or a release zip's file in the image): may name the architecture. */
const packagePath = z
  .string()
  .regex(new RegExp(`^(?:[A-Za-z0-9_.+-]|${ARCH_VAR})(?:[A-Za-z0-9_.+/-]|${ARCH_VAR})*$`), "must be a relative path without a leading '/' (such as usr/lib/$MULTIARCH/libfoo.so.1)")
  .refine((p) => !p.split("/").includes(".."), "must not contain '..'");

const mode = z.string().regex(/^0[0-7]{3}$/, "must be an octal mode string such as \"0755\"");

export const PackageSchema = z
  .object({
    name: debianPackage,
    suite: z.string().regex(/^[a-z]+$/, "must be a Debian suite name such as 'bullseye'").optional(),
    paths: z.array(packagePath).min(1, "list the files to take from the package"),
    /** For busybox: link every applet it lists to the first path, where no package provides that file. */
    applets: z.boolean().default(false),
    /** Put the listed files in this directory (by their base name) instead of their path in the package. */
    install_to: packagePath.optional(),
    /**
     * Files the image builder uses but the root filesystem must not hold (the UEFI stub
     * a disk image's unified kernel image is made from). Listed in the manifest's packages.
     */
    build_only: z.boolean().default(false),
    /**
     * Files the initramfs needs and the root filesystem does not (dmsetup, which opens the
     * root through dm-verity): they go into the initramfs with the shared libraries they
     * load, found in the service's libraries, and not into the root filesystem.
     */
    initramfs: z.boolean().default(false),
  })
  .strict()
  .refine((p) => !(p.initramfs && (p.build_only || p.install_to || p.applets)), "initramfs: true cannot be combined with build_only, install_to or applets");

export const FileSchema = z.object({ src: relativePath, dst: relativePath, mode: mode.default("0644") }).strict();

export const TemplateSchema = z.object({ src: relativePath, dst: relativePath, mode: mode.default("0644") }).strict();

export const OptionSchema = z
  .object({
    type: z.enum(["boolean", "string", "integer"]),
    default: z.union([z.boolean(), z.string(), z.number().int()]),
    /** For string options: the only values allowed. */
    values: z.array(z.string()).min(1).optional(),
    /** For integer options: the smallest and largest values allowed. */
    min: z.number().int().optional(),
    max: z.number().int().optional(),
    description: z.string().min(1),
  })
  .strict()
  .refine((o) => (o.min === undefined && o.max === undefined) || o.type === "integer", "min and max are for integer options")
  .refine((o) => typeof o.default !== "number" || ((o.min ?? -Infinity) <= o.default && o.default <= (o.max ?? Infinity)), "the default lies outside min..max");

export const ReleaseSchema = z
  .object({
    product: z.enum(["consul", "nomad", "vault"]),
    version: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, "must be a release version such as 1.11.0"),
    /** Files of the release zip → where they go in the image. */
    files: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, "a file name inside the release zip"), packagePath),
  })
  .strict();

/**
 * A program built here from its Go module (cli/artifacts/gomodule.ts): a wrapper
 * module (its `dir` holds go.mod and go.sum, the hash lock the go command checks)
 * requires `module` at `v<version>`, and `go build` makes `binary` from it.
 */
export const GoModuleSchema = z
  .object({
    product: z.enum(["nomad", "vault", "opentofu"]),
    version: z.string().regex(/^\d+\.\d+\.\d+$/, "must be a release version such as 1.14.8"),
    module: z.string().regex(/^[a-z0-9.-]+(\/[A-Za-z0-9_.-]+)+$/, "must be a Go module path such as github.com/hashicorp/vault"),
    /** The main package to build, when it is not the module's root (inside the module). */
    package: z.string().regex(/^[a-z0-9.-]+(\/[A-Za-z0-9_.-]+)+$/, "must be a Go package path such as github.com/opentofu/opentofu/cmd/tofu").optional(),
    /** The wrapper module's directory, relative to the service's. */
    dir: relativePath,
    cgo: z.boolean().default(false),
    tags: z.array(z.string().regex(/^[a-z0-9_]+$/, "must be a Go build tag such as 'release'")).default([]),
    /** -X settings (package.Var=value): version and commit stamps. */
    x: z.record(z.string().regex(/^[A-Za-z0-9_./-]+\.[A-Za-z_][A-Za-z0-9_]*$/, "must be package.Variable"), z.string().regex(/^[A-Za-z0-9_.:+-]*$/, "must be a plain value (letters, digits, . : + - _)")).default({}),
    /** Where the built program goes in the image. */
    binary: relativePath,
  })
  .strict();

/** Where a service's program comes from. Roles pick one per build (`--channel`). */
export const ChannelSchema = z
  .object({
    packages: z.array(PackageSchema).default([]),
    /** As the service's own `libraries`: given here or there, it replaces Debian's Depends. */
    libraries: z.array(debianPackage).optional(),
    release: ReleaseSchema.optional(),
  })
  .strict();

const portName = z.string().regex(/^[a-z][a-z0-9_-]*$/, "must be a name from the service's ports, such as 'api'");
const interval = z.string().regex(/^[1-9][0-9]*(ms|s|m)$/, "must be a duration such as 5s, 500ms or 1m").default("10s");

/** A health check Consul runs on the node against one of the service's ports. */
export const ConsulCheckSchema = z.union([
  z.object({ tcp: portName, interval }).strict(),
  z.object({ http: portName, path: z.string().regex(/^\/[^\s]*$/, "must be a path such as /health").default("/"), interval }).strict(),
  z
    .object({ https: portName, path: z.string().regex(/^\/[^\s]*$/, "must be a path such as /health").default("/"), interval, tls_skip_verify: z.boolean().default(false) })
    .strict(),
], { errorMap: () => ({ message: "a check is one of { tcp: PORT, interval: 5s }, { http: PORT, path: /health, interval: 5s }, { https: PORT, path: /health, interval: 5s }, PORT a name from ports" }) });

/** A service the node's Consul agent registers, from a config file fixed in the image. */
export const ConsulServiceSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "must be a DNS label: lowercase letters, digits and '-'"),
    port: portName,
    tags: z.array(z.string().regex(/^[A-Za-z0-9_.:=-]+$/, "must be a plain tag such as 'web' or 'v1'")).default([]),
    checks: z.array(ConsulCheckSchema).default([]),
  })
  .strict();

/**
 * Kernel parameters stage 1 sets before any service starts: dotted names as sysctl
 * writes them (vm.overcommit_memory), values numbers or plain words.
 */
export const SysctlSchema = z.record(
  z.string().regex(/^[a-z0-9_]+(\.[a-z0-9_-]+)+$/, "must be a dotted kernel parameter such as vm.overcommit_memory (no '/', no '..')"),
  z.union([z.number().int(), z.string().regex(/^[A-Za-z0-9_.: -]+$/, "must be a number or plain words")]),
);

/** A TCP port, 1 to 65535. */
export const PortSchema = z.number().int("must be a whole number").min(1, "must be a port, 1 to 65535").max(65535, "must be a port, 1 to 65535");

export const CHANNELS = ["official", "debian"] as const;
export type Channel = (typeof CHANNELS)[number];

export const ServiceSchema = z
  .object({
    name,
    description: z.string().min(1),
    kernel: z
      .object({
        package: debianPackage,
        /** Loaded at every boot, by one modprobe. */
        modules: z.array(z.string().regex(/^[a-z0-9_]+$/, "must be a kernel module name such as 'virtio_net'")).min(1),
        /**
         * Drivers loaded at boot only on a machine with a PCI device they drive (matched by
         * their PCI aliases, e.g. AWS's ENA NIC): a local VM does not load them.
         */
        hardware_modules: z.array(z.string().regex(/^[a-z0-9_]+$/, "must be a kernel module name such as 'ena'")).default([]),
        /** In the image but not loaded at boot: the script that needs one loads it (e.g. vfat for a FAT config drive). */
        on_demand_modules: z.array(z.string().regex(/^[A-Za-z0-9_]+$/, "must be a kernel module name such as 'vfat'")).default([]),
      })
      .strict()
      .optional(),
    /**
     * What the initramfs holds besides the busybox of this service: just enough to
     * mount the read-only root filesystem image and switch to it.
     */
    initramfs: z
      .object({
        modules: z.array(z.string().regex(/^[a-z0-9_]+$/, "must be a kernel module name such as 'squashfs'")).min(1),
        /**
         * Loaded only when the root is not Resin's own virtio disk (a UEFI disk on NVMe or
         * SATA, the ISO): a local VM does not wait for controllers it does not have.
         */
        other_root_modules: z.array(z.string().regex(/^[a-z0-9_]+$/, "must be a kernel module name such as 'nvme'")).default([]),
        files: z.array(FileSchema).min(1, "the initramfs needs at least its /init"),
      })
      .strict()
      .optional(),
    /** Extra kernel modules this service needs loaded at boot (e.g. br_netfilter). */
    modules: z.array(z.string().regex(/^[A-Za-z0-9_]+$/, "must be a kernel module name such as 'br_netfilter'")).default([]),
    /** Packages every channel takes; `channels` adds what differs per channel. */
    packages: z.array(PackageSchema).default([]),
    /**
     * The packages the shared libraries of this service's files come from. Without it,
     * the libraries come from what its packages Depend/Pre-Depend on (Debian's own data).
     */
    libraries: z.array(debianPackage).optional(),
    /** A project's service of the same name as a stock one replaces it only when it says so. */
    override: z.boolean().optional(),
    /** Sources per channel; a service without channels is the same on every channel. */
    channels: z.object({ official: ChannelSchema.optional(), debian: ChannelSchema.optional() }).strict().optional(),
    user: z.object({ name, uid: z.number().int().min(1).max(65533) }).strict().optional(),
    files: z.array(FileSchema).default([]),
    templates: z
      .object({ image: z.array(TemplateSchema).default([]), node: z.array(TemplateSchema).default([]) })
      .strict()
      .default({}),
    options: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/, "option names are snake_case"), OptionSchema).default({}),
    ports: z.record(z.string(), z.number().int().min(1).max(65535)).default({}),
    /**
     * Commands run when the image is built, against its root filesystem with its own
     * programs, after a sample node's metadata is written to /run/config as stage 1 does
     * it: in a private mount namespace, with no network (cli/bootstrap/build-checks.ts).
     * A check that fails stops the build.
     */
    checks: z
      .object({ build: z.array(z.string().min(1, "a build check is a shell command such as 'consul validate /etc/consul.d'")).default([]) })
      .strict()
      .default({}),
    /** Services the node's Consul agent registers, with their health checks (rendered into the image). */
    consul: z.object({ services: z.array(ConsulServiceSchema).min(1, "list at least one service, or drop consul:") }).strict().optional(),
    sysctl: SysctlSchema.default({}),
  })
  .strict();

export const MachineSchema = z
  .object({
    role: name,
    description: z.string().min(1),
    /** A project's role of the same name as a stock one replaces it only when it says so. */
    override: z.boolean().optional(),
    services: z.array(name).min(1, "a role needs at least the 'base' service"),
    config: z.record(name, z.record(z.string(), z.unknown())).default({}),
    /** Kernel parameters for this role, over those its services set. */
    sysctl: SysctlSchema.default({}),
    vm: z
      .object({
        memory_mib: z.number().int().min(256).max(65536).default(1024),
        cpus: z.number().int().min(1).max(64).default(1),
        persist_disk_gib: z.number().int().min(1).max(4096).default(2),
      })
      .strict()
      .default({}),
  })
  .strict();

export type ServiceSpec = z.infer<typeof ServiceSchema>;
export type MachineSpec = z.infer<typeof MachineSchema>;
export type PackageSpec = z.infer<typeof PackageSchema>;
export type ReleaseSpec = z.infer<typeof ReleaseSchema>;
export type GoModuleSpec = z.infer<typeof GoModuleSchema>;
export type OptionValue = boolean | string | number;
export type ConsulServiceSpec = z.infer<typeof ConsulServiceSchema>;
