import { describe, expect, it } from "vitest";
import { pciModuleAliases } from "../../cli/image/kernel.js";
import { ResinError } from "../../cli/util/errors.js";

// etc/modules.pci, which the boot script's pci-modules matches against the machine's
// devices: taken from depmod's modules.alias for the base service's hardware_modules.
const ALIAS = [
  "# Aliases extracted from modules themselves.",
  "alias pci:v00001D0Fd0000EC21sv*sd*bc*sc*i* ena",
  "alias pci:v00001D0Fd0000EC20sv*sd*bc*sc*i* ena",
  "alias virtio:d00000001v* virtio_net",
  "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci",
  "alias fs-vfat vfat",
  "",
].join("\n");

describe("pciModuleAliases", () => {
  it("keeps the PCI aliases of the hardware modules only, sorted, one 'PATTERN MODULE' line each", () => {
    expect(pciModuleAliases(ALIAS, ["ena"])).toBe("pci:v00001D0Fd0000EC20sv*sd*bc*sc*i* ena\npci:v00001D0Fd0000EC21sv*sd*bc*sc*i* ena\n");
    expect(pciModuleAliases(ALIAS, [])).toBe("");
  });

  it("refuses a hardware module that drives no PCI device, naming it and where to list it instead", () => {
    expect(() => pciModuleAliases(ALIAS, ["vfat"], "services/base/service.yml")).toThrow(ResinError);
    expect(() => pciModuleAliases(ALIAS, ["vfat"], "services/base/service.yml")).toThrow(
      "services/base/service.yml: kernel.hardware_modules: 'vfat' drives no PCI device (modules.alias has no pci: alias for it)",
    );
  });

  it("refuses a pattern that is more than the alias alphabet and '*' (it becomes a shell glob)", () => {
    expect(() => pciModuleAliases("alias pci:v0000[1-9]* ena\n", ["ena"])).toThrow(/unexpected PCI alias/);
  });
});
