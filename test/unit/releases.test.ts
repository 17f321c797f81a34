import { describe, it, expect } from "vitest";
import {
  checkRef,
  formatRef,
  isValidVersion,
  parseReleaseFileName,
  parseReleaseRef,
  parseSha256Sums,
  releaseFiles,
  releaseRef,
  releaseUrls,
  type Product,
} from "../../cli/artifacts/releases.js";
import { ResinError } from "../../cli/util/errors.js";

// The pure naming and parsing rules of the official-release channel. These decide which
// URL is fetched, which cache path is written and which sums line an archive is checked
// against, so each is pinned exactly.

const A = "a".repeat(64);
const B = "0123456789abcdef".repeat(4);

describe("release names", () => {
  it("names the linux_amd64 archive, its sums and their signature", () => {
    expect(releaseFiles({ product: "nomad", version: "1.9.3" })).toEqual({
      zip: "nomad_1.9.3_linux_amd64.zip",
      sums: "nomad_1.9.3_SHA256SUMS",
      sig: "nomad_1.9.3_SHA256SUMS.sig",
      keySig: "nomad_1.9.3_SHA256SUMS.72D7468F.sig",
    });
  });

  it("names the linux_arm64 archive for an arm64 ref (the platform from spec/arch.ts); the sums are the release's, whatever the architecture", () => {
    expect(releaseFiles({ product: "consul", version: "1.18.2", arch: "arm64" })).toEqual({
      zip: "consul_1.18.2_linux_arm64.zip",
      sums: "consul_1.18.2_SHA256SUMS",
      sig: "consul_1.18.2_SHA256SUMS.sig",
      keySig: "consul_1.18.2_SHA256SUMS.72D7468F.sig",
    });
    expect(releaseFiles({ product: "consul", version: "1.18.2", arch: "amd64" }).zip).toBe("consul_1.18.2_linux_amd64.zip");
    // A service's release for an architecture: amd64 stays implicit, so amd64 refs are those from before arm64.
    expect(releaseRef({ product: "nomad", version: "1.6.5" }, "amd64")).toEqual({ product: "nomad", version: "1.6.5" });
    expect(releaseRef({ product: "nomad", version: "1.6.5" }, "arm64")).toEqual({ product: "nomad", version: "1.6.5", arch: "arm64" });
  });

  it("builds URLs under <base>/<product>/<version>/, ignoring a trailing slash on the base", () => {
    const urls = releaseUrls({ product: "vault", version: "1.15.2+ent" }, "http://127.0.0.1:8080/mirror/");
    expect(urls).toEqual({
      zip: "http://127.0.0.1:8080/mirror/vault/1.15.2+ent/vault_1.15.2+ent_linux_amd64.zip",
      sums: "http://127.0.0.1:8080/mirror/vault/1.15.2+ent/vault_1.15.2+ent_SHA256SUMS",
      sig: "http://127.0.0.1:8080/mirror/vault/1.15.2+ent/vault_1.15.2+ent_SHA256SUMS.sig",
      keySig: "http://127.0.0.1:8080/mirror/vault/1.15.2+ent/vault_1.15.2+ent_SHA256SUMS.72D7468F.sig",
    });
  });

  it("parses product@version and refuses unknown products and odd versions", () => {
    expect(parseReleaseRef("consul@1.8.7")).toEqual({ product: "consul", version: "1.8.7" });
    expect(formatRef({ product: "consul", version: "1.8.7" })).toBe("consul@1.8.7");
    expect(() => parseReleaseRef("nomad")).toThrow(/product>@<version/);
    expect(() => parseReleaseRef("terraform@1.6.0")).toThrow(/unknown HashiCorp product "terraform"/);
    expect(() => parseReleaseRef("nomad@1.9")).toThrow(/invalid nomad version "1.9"/);
    expect(() => checkRef({ product: "boundary" as Product, version: "1.0.0" })).toThrow(ResinError);
  });

  it("accepts release versions and rejects anything that could escape a path or URL", () => {
    for (const v of ["1.9.3", "0.1.0", "1.10.0-beta.1", "1.16.0-rc1", "1.15.2+ent", "1.15.2-rc.1+ent"]) {
      expect(isValidVersion(v), v).toBe(true);
    }
    for (const v of ["", "1.9", "v1.9.3", "1.9.3+oss", "1.9.3/../x", "1.9.3 ", "1.9.3\n", "1.9.3_linux", "1.9.3-"]) {
      expect(isValidVersion(v), JSON.stringify(v)).toBe(false);
    }
  });

  it("reads product and version back from an archive's file name", () => {
    expect(parseReleaseFileName("nomad_1.9.3_linux_amd64.zip")).toEqual({ product: "nomad", version: "1.9.3" });
    expect(parseReleaseFileName("vault_1.15.2+ent_linux_amd64.zip")).toEqual({ product: "vault", version: "1.15.2+ent" });
    expect(parseReleaseFileName("nomad_1.9.3_linux_arm64.zip")).toEqual({ product: "nomad", version: "1.9.3", arch: "arm64" });
    expect(parseReleaseFileName("nomad_1.9.3_linux_386.zip")).toBeUndefined();
    expect(parseReleaseFileName("nomad_1.9.3_darwin_arm64.zip")).toBeUndefined();
    expect(parseReleaseFileName("terraform_1.6.0_linux_amd64.zip")).toBeUndefined();
    expect(parseReleaseFileName("nomad_latest_linux_amd64.zip")).toBeUndefined();
  });
});

describe("parseSha256Sums", () => {
  it("maps each file name to its sha256", () => {
    const text = `${A}  nomad_1.9.3_darwin_arm64.zip\n${B}  nomad_1.9.3_linux_amd64.zip\n`;
    const sums = parseSha256Sums(text);
    expect(sums.size).toBe(2);
    expect(sums.get("nomad_1.9.3_linux_amd64.zip")).toBe(B);
    expect(sums.get("nomad_1.9.3_darwin_arm64.zip")).toBe(A);
  });

  it("accepts a file without its final newline", () => {
    expect(parseSha256Sums(`${A}  x.zip`).get("x.zip")).toBe(A);
  });

  it.each([
    ["an empty file", ""],
    ["upper-case hex", `${A.toUpperCase()}  x.zip\n`],
    ["a short hash", `${A.slice(1)}  x.zip\n`],
    ["one space", `${A} x.zip\n`],
    ["a binary-mode star", `${A} *x.zip\n`],
    ["a path", `${A}  dir/x.zip\n`],
    ["a parent path", `${A}  ../x.zip\n`],
    ["CRLF line ends", `${A}  x.zip\r\n`],
    ["a blank line", `${A}  x.zip\n\n${B}  y.zip\n`],
    ["trailing spaces", `${A}  x.zip \n`],
    ["a duplicate file", `${A}  x.zip\n${B}  x.zip\n`],
  ])("rejects %s", (_what, text) => {
    expect(() => parseSha256Sums(text)).toThrow(ResinError);
  });

  it("names the offending line", () => {
    expect(() => parseSha256Sums(`${A}  x.zip\nnot a line\n`)).toThrow(/line 2 is not "<sha256>  <file name>": "not a line"/);
    expect(() => parseSha256Sums(`${A}  x.zip\n${B}  x.zip\n`)).toThrow(/line 2 names x.zip a second time/);
  });
});
