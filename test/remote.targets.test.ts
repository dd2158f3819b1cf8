/**
 * Remote push behaviour that belongs to one backend. What every target
 * promises (apply twice, storage classes, resync, history, pull) is the
 * conformance suite in test/remote.conformance.test.ts.
 */
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RemoteSync } from "../src/remote/index.js";
import { findWrangler } from "../src/remote/targets/d1.js";
import { useTempDirs } from "./helpers.js";
import { sourceReplica } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-remote-");

describe("remote push to Cloudflare D1 (wrangler's local D1)", () => {
  const wrangler = findWrangler();
  it.skipIf(wrangler === null)(
    "a failing wrangler: a clear error, the payload kept, no temporary file left",
    async () => {
      const dir = tempDir();
      const replica = sourceReplica(dir);
      const before = readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length;
      const sync = new RemoteSync(replica, { target: "d1:DB", d1: { config: join(dir, "missing.toml") } });
      try {
        await expect(sync.push()).rejects.toThrow(
          /^wrangler d1 execute DB failed for d1:DB\?local&config=.*missing\.toml: Could not read file: .*missing\.toml; the cursor did not move/,
        );
        expect(sync.pending()).toBe(1);
        expect(sync.cursor()).toBeUndefined();
      } finally {
        await sync.close();
        replica.close();
      }
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith("tidewire-d1-")).length).toBe(before);
    },
    60_000,
  );
  if (wrangler === null) console.warn("SKIPPED: D1 test, wrangler is not on PATH or in node_modules/.bin");
});
