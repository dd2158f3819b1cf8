/**
 * Foreign keys across a hub: a relay that stored a pusher's batches out of
 * order (children logged before their parents, as two pushes in flight can
 * arrive), and a new, empty replica joining by initial sync in small pages:
 * every child arrives once its parent does, `PRAGMA foreign_key_check` is
 * empty, and nothing is left in quarantine.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Hub } from "../src/hub/hub.js";
import { Replica } from "../src/replica/replica.js";
import { FULL_SCOPE } from "../src/scope.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-sync-fk-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const SCHEMA = `
  CREATE TABLE author (id TEXT PRIMARY KEY, name TEXT NOT NULL);
  CREATE TABLE book (id TEXT PRIMARY KEY, author_id TEXT NOT NULL REFERENCES author (id), title TEXT NOT NULL);
  CREATE TABLE chapter (id TEXT PRIMARY KEY, book_id TEXT NOT NULL REFERENCES book (id) ON DELETE CASCADE, n INTEGER NOT NULL);
`;

function app(dir: string, nodeId: string): Replica {
  const r = Replica.open(join(dir, `${nodeId}.db`), { nodeId });
  r.store.db.exec(SCHEMA);
  for (const t of ["author", "book", "chapter"]) r.track(t, { bucket: "lib" });
  cleanup.push(() => r.close());
  return r;
}

function state(r: Replica): string[] {
  return ["author", "book", "chapter"].map((t) => dump(r.store.db, t, "id"));
}

describe("foreign keys through a relay hub", () => {
  it("a new replica joins by initial sync although the hub logged children before their parents", async () => {
    const dir = tempDir();
    const relay = Replica.open(join(dir, "hub.db"), { nodeId: "hub", relay: true });
    cleanup.push(() => relay.close());
    const hub = new Hub(relay, { buckets: "*" });
    const a = app(dir, "a");
    a.store.db.transaction(() => {
      for (let i = 0; i < 20; i++) {
        a.store.db.prepare("INSERT INTO author VALUES (?, ?)").run(`au${i}`, `Author ${i}`);
        a.store.db.prepare("INSERT INTO book VALUES (?, ?, ?)").run(`bk${i}`, `au${i}`, `Book ${i}`);
        for (let n = 0; n < 3; n++)
          a.store.db.prepare("INSERT INTO chapter VALUES (?, ?, ?)").run(`ch${i}.${n}`, `bk${i}`, n);
      }
    })();
    // a's pushes reach the hub last batch first.
    const changes = a.changesSince(0, { limit: 10_000 }).changes;
    const batches: (typeof changes)[] = [];
    for (let i = 0; i < changes.length; i += 7) batches.push(changes.slice(i, i + 7));
    for (const batch of batches.reverse())
      hub.push({ nodeId: "a", changes: batch, cursor: String(batch.at(-1)?.seq) }, FULL_SCOPE);
    const first = relay.changesSince(0, { limit: 1 }).changes[0];
    expect(first?.table).toBe("chapter");

    const c = app(dir, "c");
    const [transport] = MemoryTransport.pair(hub);
    const m = new SyncManager(c, transport, { batchSize: 5, direction: "pull" });
    cleanup.push(() => m.stop());
    await m.initialSync();
    expect(state(c)).toEqual(state(a));
    expect(c.store.db.prepare("PRAGMA foreign_key_check").all()).toEqual([]);
    expect(c.conflicts()).toEqual({ conflicts: [], quarantined: [] });
  });
});
