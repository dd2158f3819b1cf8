import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // better-sqlite3 is a native addon and several tests spawn processes: forks isolate both.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
