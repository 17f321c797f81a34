import { describe, it, expect } from "vitest";
import {
  findDebianMirror,
  osCodename,
  parseAptSources,
  renderSourcesList,
  type AptSourceFile,
} from "../../cli/artifacts/apt-sources.js";

// Resin finds the Debian mirror the host already uses (from /etc/apt) and asks it for
// other suites. Mirrors here are made up; nothing is fetched.

const MIRROR = "http://mirror.example/debian";
const SECURITY = "http://security.mirror.example/debian-security";
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

const sources = (text: string, path = "/etc/apt/sources.list.d/debian.sources"): AptSourceFile => ({ path, text });
const list = (text: string, path = "/etc/apt/sources.list"): AptSourceFile => ({ path, text });

describe("deb822 (.sources) files", () => {
  it("finds the mirror and keyring of the stanza serving the codename with main", () => {
    const file = sources(`Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main non-free-firmware
Signed-By: ${KEYRING}

Types: deb
URIs: ${SECURITY}
Suites: bookworm-security
Components: main non-free-firmware
Signed-By: ${KEYRING}
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: KEYRING });
  });

  it("does not take a security or updates stanza for the release itself", () => {
    const file = sources(`Types: deb
URIs: ${SECURITY}
Suites: bookworm-security
Components: main

Types: deb
URIs: http://updates.mirror.example/debian
Suites: bookworm-updates
Components: main

Types: deb
URIs: ${MIRROR}
Suites: bookworm
Components: main
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
  });

  it("returns undefined when only security and updates suites are configured", () => {
    const file = sources(`Types: deb
URIs: ${SECURITY}
Suites: bookworm-security
Components: main

Types: deb
URIs: ${MIRROR}
Suites: bookworm-updates bookworm-backports
Components: main
`);
    expect(findDebianMirror([file], "bookworm")).toBeUndefined();
  });

  it("skips disabled stanzas, deb-src only stanzas and stanzas without main", () => {
    const file = sources(`Types: deb
URIs: http://disabled.mirror.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://source.mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://contrib.mirror.example/debian
Suites: bookworm
Components: contrib non-free

Types: deb deb-src
URIs: ${MIRROR}
Suites: bookworm
Components: main
`);
    expect(findDebianMirror([file], "bookworm")?.uri).toBe(MIRROR);
  });

  it("ignores comment lines, including a commented-out stanza and comments inside one", () => {
    const file = sources(`# Modernized from /etc/apt/sources.list
# Types: deb
# URIs: http://commented.mirror.example/debian
# Suites: bookworm
# Components: main

Types: deb
# URIs: http://commented.mirror.example/debian
URIs: ${MIRROR}
Suites: bookworm
Components: main
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
  });

  it("drops an inline Signed-By key block (not a path) but keeps the fields after it", () => {
    const file = sources(`Types: deb
URIs: ${MIRROR}
Suites: bookworm
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w
 -----END PGP PUBLIC KEY BLOCK-----
Components: main
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
  });

  it("reads field names case-insensitively and takes the first of several URIs", () => {
    const file = sources(`types: deb
uris: ${MIRROR} http://second.mirror.example/debian
suites: bookworm
components: main
signed-by: ${KEYRING}
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: KEYRING });
  });

  it("parses every field of a stanza", () => {
    const entries = parseAptSources([
      sources(`Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: ${KEYRING}
`),
    ]);
    expect(entries).toEqual([
      { uris: [MIRROR], suites: ["bookworm", "bookworm-updates"], components: ["main", "contrib"], signedBy: KEYRING },
    ]);
  });
});

describe("one-line (.list) files", () => {
  it("finds a plain entry", () => {
    expect(findDebianMirror([list(`deb ${MIRROR} bookworm main\n`)], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
  });

  it("takes signed-by from the options, among other options", () => {
    const file = list(`deb [arch=amd64 signed-by=${KEYRING}] ${MIRROR} bookworm main contrib\n`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: KEYRING });
  });

  it("has no signed-by when the options name none", () => {
    const file = list(`deb [arch=amd64] ${MIRROR} bookworm main\n`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
  });

  it("ignores comments, commented-out entries and deb-src lines", () => {
    const file = list(`# deb http://commented.mirror.example/debian bookworm main
deb-src http://source.mirror.example/debian bookworm main
#deb http://commented2.mirror.example/debian bookworm main

deb ${MIRROR} bookworm main # the primary mirror
`);
    expect(findDebianMirror([file], "bookworm")).toEqual({ uri: MIRROR, signedBy: undefined });
    expect(parseAptSources([file])).toEqual([{ uris: [MIRROR], suites: ["bookworm"], components: ["main"], signedBy: undefined }]);
  });

  it("does not take the security or updates suites for the release", () => {
    const file = list(`deb ${SECURITY} bookworm-security main
deb http://updates.mirror.example/debian bookworm-updates main
deb ${MIRROR} bookworm main
`);
    expect(findDebianMirror([file], "bookworm")?.uri).toBe(MIRROR);
    expect(findDebianMirror([list(`deb ${SECURITY} bookworm-security main\n`)], "bookworm")).toBeUndefined();
  });

  it("does not take an entry without the main component", () => {
    expect(findDebianMirror([list(`deb ${MIRROR} bookworm contrib non-free\n`)], "bookworm")).toBeUndefined();
  });

  it("accepts tabs between the words, as apt does", () => {
    expect(findDebianMirror([list(`deb\t${MIRROR}\tbookworm\tmain\n`)], "bookworm")?.uri).toBe(MIRROR);
  });
});

describe("findDebianMirror across files", () => {
  it("chooses by file extension: a .sources file is deb822 even among .list files", () => {
    const files = [
      list(`deb ${SECURITY} bookworm-security main\n`),
      sources(`Types: deb\nURIs: ${MIRROR}\nSuites: bookworm\nComponents: main\n`),
    ];
    expect(findDebianMirror(files, "bookworm")?.uri).toBe(MIRROR);
    // The same deb822 text in a .list file is not an entry.
    expect(findDebianMirror([list(files[1]!.text)], "bookworm")).toBeUndefined();
  });

  it("takes the first matching entry in file order", () => {
    const files = [
      list(`deb http://first.mirror.example/debian bookworm main\n`, "/etc/apt/sources.list"),
      sources(`Types: deb\nURIs: http://second.mirror.example/debian\nSuites: bookworm\nComponents: main\n`),
    ];
    expect(findDebianMirror(files, "bookworm")?.uri).toBe("http://first.mirror.example/debian");
  });

  it("returns undefined for another codename or no files", () => {
    const file = list(`deb ${MIRROR} bookworm main\n`);
    expect(findDebianMirror([file], "trixie")).toBeUndefined();
    expect(findDebianMirror([], "bookworm")).toBeUndefined();
  });
});

describe("renderSourcesList", () => {
  it("writes one line per suite, sorted and without repeats", () => {
    expect(renderSourcesList({ uri: MIRROR }, ["bullseye", "bookworm", "bullseye"])).toBe(
      `deb ${MIRROR} bookworm main\ndeb ${MIRROR} bullseye main\n`,
    );
  });

  it("carries the keyring as signed-by", () => {
    expect(renderSourcesList({ uri: MIRROR, signedBy: KEYRING }, ["bullseye"])).toBe(`deb [signed-by=${KEYRING}] ${MIRROR} bullseye main\n`);
  });

  it("round-trips through the one-line parser", () => {
    const text = renderSourcesList({ uri: MIRROR, signedBy: KEYRING }, ["bullseye", "bookworm"]);
    expect(findDebianMirror([list(text)], "bullseye")).toEqual({ uri: MIRROR, signedBy: KEYRING });
    expect(findDebianMirror([list(text)], "bookworm")).toEqual({ uri: MIRROR, signedBy: KEYRING });
  });

  it("is empty for no suites", () => {
    expect(renderSourcesList({ uri: MIRROR }, [])).toBe("");
  });
});

describe("osCodename", () => {
  it("reads VERSION_CODENAME, quoted or not", () => {
    expect(osCodename('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')).toBe("bookworm");
    expect(osCodename('ID=debian\nVERSION_CODENAME="trixie"\n')).toBe("trixie");
  });

  it("is undefined when there is no codename", () => {
    expect(osCodename('PRETTY_NAME="Debian GNU/Linux trixie/sid"\nNAME="Debian GNU/Linux"\nID=debian\n')).toBeUndefined();
    expect(osCodename("VERSION_CODENAME=\n")).toBeUndefined();
    expect(osCodename("")).toBeUndefined();
  });

  it("does not confuse other keys ending in CODENAME", () => {
    expect(osCodename("UBUNTU_CODENAME=jammy\n")).toBeUndefined();
  });
});
