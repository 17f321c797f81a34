import { describe, it, expect } from "vitest";
import { parseAddress } from "../../cli/commands/bootstrap.js";

describe("parseAddress (resin bootstrap's --consul, --nomad, --vault)", () => {
  it("takes a host, a host:port, a name and a bracketed IPv6 address", () => {
    expect(parseAddress("10.0.1.5", 8501, "--consul")).toEqual({ host: "10.0.1.5", port: 8501 });
    expect(parseAddress("10.0.1.5:18501", 8501, "--consul")).toEqual({ host: "10.0.1.5", port: 18501 });
    expect(parseAddress("node-1.example", 4646, "--nomad")).toEqual({ host: "node-1.example", port: 4646 });
    expect(parseAddress("[fd00::5]:8200", 8200, "--vault")).toEqual({ host: "[fd00::5]", port: 8200 });
  });

  it("refuses what is not an address, naming the flag and an example", () => {
    expect(() => parseAddress("https://10.0.1.5", 8501, "--consul")).toThrow(/--consul https:\/\/10\.0\.1\.5 is not an address/);
    expect(() => parseAddress("10.0.1.5:0", 8200, "--vault")).toThrow(/--vault 10\.0\.1\.5:0 is not an address/);
    expect(() => parseAddress("10.0.1.5:99999", 8200, "--vault")).toThrow(/is not an address/);
  });
});
