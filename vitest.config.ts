import { defineConfig } from "vitest/config";

// Two projects: fast unit tests (their global setup makes the real Debian packages they
// run present, see test/unit/global-setup.ts), and the QEMU e2e suite that shares one image set
// built in its global setup (see test/e2e/global-setup.ts).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          globalSetup: ["test/unit/global-setup.ts"],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: ["test/e2e/global-setup.ts"],
          testTimeout: 15 * 60_000,
          hookTimeout: 20 * 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
