/**
 * Convergence of both-way sync with a SQLite target (RemoteSync.sync,
 * direction "both"): random inserts, updates, deletes and composite-key
 * edits made on both sides between cycles — locally through the app's
 * connection, on the target through another connection, as another program
 * would — end with both sides holding the same rows once a cycle finds
 * after each cycle. A cycle with nothing new moves nothing (no echo, no
 * re-apply).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { expect, it } from "vitest";
import { RemoteSync } from "../src/remote/remote-sync.js";
import { useTempDirs } from "./helpers.js";
import { dumpSqlite, opArb, runOps, sourceReplica } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-pull-prop-");

const roundsArb = fc.array(
  fc.record({
    local: fc.array(opArb, { maxLength: 12 }),
    remote: fc.array(opArb, { maxLength: 12 }),
  }),
  { minLength: 1, maxLength: 4 },
);

it("random edits on both sides between cycles converge, and a quiet cycle moves nothing", async () => {
  await fc.assert(
    fc.asyncProperty(roundsArb, async (rounds) => {
      const dir = tempDir();
      const path = join(dir, "mirror.db");
      const replica = sourceReplica(dir);
      const sync = new RemoteSync(replica, { target: `sqlite:${path}` });
      let other: Database.Database | null = null;
      try {
        await sync.sync(); // creates the target's tables and installs capture
        other = new Database(path);
        other.pragma("busy_timeout = 10000");
        for (const r of rounds) {
          runOps(replica.store.db, r.local);
          runOps(other, r.remote);
          await sync.sync();
          // One cycle (pull, then push) leaves both sides equal.
          expect(dumpSqlite(other)).toEqual(dumpSqlite(replica.store.db));
        }
        const quiet = await sync.sync();
        expect(quiet.pull?.entries).toBe(0);
        expect(quiet.push?.mutations).toBe(0);
      } finally {
        other?.close();
        await sync.close();
        replica.close();
      }
    }),
    { numRuns: 40 },
  );
}, 180_000);
