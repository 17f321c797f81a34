// A fresh Debian 12 without Go: scripts/ensure-deps.sh takes Debian's golang-1.23-go from
// the release's backports, from the archive the machine's own apt sources name
// (scripts/backports-source.sh), and scripts/go-env.sh puts a go on PATH and, where that
// go is older than the wrapper modules need, pins the toolchain they need (GOTOOLCHAIN).
// Both are run here on fixtures: apt source trees (test/fixtures/apt) and stand-in go
// commands that only report a version.
import { describe, expect, it, afterAll } from "vitest";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "..", "..");
const FIXTURES = join(REPO, "test", "fixtures", "apt");

function backports(dir: string, codename = "bookworm") {
  return spawnSync("sh", [join(REPO, "scripts", "backports-source.sh"), codename, join(FIXTURES, dir)], { encoding: "utf8" });
}

describe("the backports source, from the machine's own apt configuration", () => {
  it("takes the first enabled deb entry for the release's main component from a deb822 file, with its keyring", () => {
    const r = backports("deb822");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("Types: deb\nURIs: http://archive.example.invalid/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n");
  });

  it("reads one-line entries with options (signed-by), skipping another suite", () => {
    const r = backports("oneline");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("Types: deb\nURIs: http://mirror.example.invalid/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/mirror.gpg\n");
  });

  it("falls back to one-line files when no deb822 stanza fits, and names no keyring it was not given", () => {
    const r = backports("mixed");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("Types: deb\nURIs: http://plain.example.invalid/debian\nSuites: bookworm-backports\nComponents: main\n");
  });

  it("prints nothing and exits 1 where no entry serves the release's main component", () => {
    expect(backports("none")).toMatchObject({ status: 1, stdout: "" });
    expect(backports("deb822", "trixie")).toMatchObject({ status: 1, stdout: "" });
  });
});

describe("scripts/go-env.sh", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** PATH and GOTOOLCHAIN after sourcing go-env.sh with a stand-in go of `version` first on PATH. */
  function sourced(version: string | undefined, env: Record<string, string> = {}): { path: string; toolchain: string } {
    const dir = mkdtempSync(join(tmpdir(), "resin-go-env-"));
    dirs.push(dir);
    const bin = join(dir, "bin");
    mkdirSync(bin);
    if (version) {
      // Answers `go env GOVERSION` as the go command does, and records the GOTOOLCHAIN it saw.
      writeFileSync(join(bin, "go"), `#!/bin/sh\necho "$GOTOOLCHAIN" > ${dir}/saw\necho ${version}\n`);
      chmodSync(join(bin, "go"), 0o755);
    }
    const r = spawnSync("sh", ["-c", `. ${join(REPO, "scripts", "go-env.sh")} && printf '%s\\n%s\\n' "$PATH" "\${GOTOOLCHAIN-unset}"`], {
      encoding: "utf8",
      env: { PATH: `${bin}:/usr/bin:/bin`, ...env },
    });
    expect(r.status, r.stderr).toBe(0);
    const [path, toolchain] = r.stdout.trimEnd().split("\n");
    if (version) expect(readFileSync(join(dir, "saw"), "utf8"), "asked its own version, not a switched one").toBe("local\n");
    return { path: path!, toolchain: toolchain! };
  }

  it("pins the toolchain the wrappers need for a go older than they need (Debian's 1.23)", () => {
    const need = /^go (\S+)$/m.exec(readFileSync(join(REPO, "test", "tools", "opentofu", "go.mod"), "utf8"))![1]!;
    expect(readFileSync(join(REPO, "scripts", "go-env.sh"), "utf8")).toContain(`RESIN_GO_NEEDS=go${need}\n`);
    const pinned = /^RESIN_GO_TOOLCHAIN=(go\S+)$/m.exec(readFileSync(join(REPO, "scripts", "go-env.sh"), "utf8"))![1]!;
    expect(sourced("go1.23.4").toolchain).toBe(pinned);
    expect(sourced("go1.26.5").toolchain).toBe(pinned);
  });

  it("leaves a go that is new enough, and a GOTOOLCHAIN the caller set, alone", () => {
    expect(sourced("go1.26.6").toolchain).toBe("unset");
    expect(sourced("go1.26.8").toolchain).toBe("unset");
    expect(sourced("go1.27.3").toolchain).toBe("unset");
    const r = spawnSync("sh", ["-c", `. ${join(REPO, "scripts", "go-env.sh")} && echo "$GOTOOLCHAIN"`], { encoding: "utf8", env: { PATH: "/usr/bin:/bin", GOTOOLCHAIN: "go1.27.3" } });
    expect(r.stdout).toBe("go1.27.3\n");
  });
});
