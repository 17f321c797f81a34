// The bench's image without dm-verity (bench/verity.ts) differs from the stock base
// service in what dm-verity brings into the initramfs, and in nothing else.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { unverifiedBaseSpec } from "../../bench/verity.js";

const stockText = readFileSync(join(import.meta.dirname, "..", "..", "services", "base", "service.yml"), "utf8");

describe("the bench's base service without dm-verity", () => {
  const stock = parse(stockText);
  const edited = parse(unverifiedBaseSpec(stockText));

  it("has no dm_verity module, no dmsetup and none of dmsetup's libraries", () => {
    expect(stock.initramfs.modules).toContain("dm_verity");
    expect(edited.initramfs.modules).toEqual(stock.initramfs.modules.filter((m: string) => m !== "dm_verity"));
    expect(edited.packages.map((p: { name: string }) => p.name)).toEqual(stock.packages.map((p: { name: string }) => p.name).filter((n: string) => n !== "dmsetup"));
    expect(edited.libraries).toEqual(stock.libraries.filter((l: string) => !["libdevmapper1.02.1", "libselinux1", "libudev1", "libpcre2-8-0"].includes(l)));
  });

  it("keeps everything else as the stock spec has it", () => {
    const rest = (s: Record<string, unknown>) => ({ ...s, initramfs: { ...(s.initramfs as object), modules: undefined }, packages: undefined, libraries: undefined });
    expect(rest(edited)).toEqual(rest(stock));
  });

  it("refuses a spec that no longer has what it takes out", () => {
    expect(() => unverifiedBaseSpec(stockText.replace(/^ {2}- name: dmsetup$/m, "  - name: dmsetup-gone"))).toThrow(/no package dmsetup under packages/);
  });
});
