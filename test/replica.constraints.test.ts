/**
 * Apply against real application schemas: NOT NULL columns, UNIQUE indexes,
 * foreign keys with their declared actions, CHECK constraints. Every change
 * applies or is kept aside, the rules decide the same way on every replica
 * whatever the order of arrival, and what they override is recorded.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-constraints-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

const SCHEMA = `
  CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT NOT NULL);
  CREATE TABLE album (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    artist_id TEXT NOT NULL REFERENCES artist (id) ON DELETE CASCADE,
    year INTEGER NOT NULL CHECK (year > 1800)
  );
  CREATE TABLE review (
    id TEXT PRIMARY KEY,
    album_id TEXT REFERENCES album (id) ON DELETE SET NULL,
    body TEXT NOT NULL
  );
  CREATE TABLE tag (id TEXT PRIMARY KEY, album_id TEXT NOT NULL REFERENCES album (id), label TEXT NOT NULL);
  CREATE TABLE album_genre (
    id INTEGER PRIMARY KEY,
    album_id TEXT NOT NULL REFERENCES album (id) ON DELETE CASCADE,
    genre TEXT NOT NULL,
    UNIQUE (album_id, genre)
  );
`;
const TABLES = ["artist", "album", "review", "tag", "album_genre"];

function open(nodeId: string): Replica {
  const r = Replica.open(join(tempDir(), `${nodeId}.db`), { nodeId, ingestIntervalMs: 0 });
  r.store.db.exec(SCHEMA);
  for (const t of TABLES) r.track(t, { bucket: "music" });
  opened.push(r);
  return r;
}

function run(r: Replica, sql: string, ...params: unknown[]): void {
  r.store.db.prepare(sql).run(...params);
}

function news(from: Replica, to: Replica): Change[] {
  return from.changesSince(0, { excludeOrigin: to.nodeId, limit: 100_000 }).changes;
}

function sync(a: Replica, b: Replica): void {
  b.apply(news(a, b), { from: a.nodeId });
  a.apply(news(b, a), { from: b.nodeId });
}

function state(r: Replica): string {
  return TABLES.map((t) => dump(r.store.db, t, "id")).join("\n");
}

function fkCheck(r: Replica): unknown[] {
  return r.store.db.prepare("PRAGMA foreign_key_check").all();
}

/** Waits a millisecond so the next write gets a later clock than the last. */
function tick(): void {
  const until = Date.now() + 2;
  while (Date.now() < until) {}
}

describe("NOT NULL columns", () => {
  it("an update of one column of a table with NOT NULL columns applies elsewhere", () => {
    const [a, b] = [open("a"), open("b")];
    a.store.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL)");
    b.store.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL, b TEXT NOT NULL)");
    a.track("t");
    b.track("t");
    run(a, "INSERT INTO t VALUES (1, 'a0', 'b0')");
    sync(a, b);
    run(a, "UPDATE t SET a = 'A1' WHERE id = 1");
    run(b, "UPDATE t SET b = 'B1' WHERE id = 1");
    sync(a, b);
    for (const r of [a, b])
      expect(r.store.db.prepare("SELECT * FROM t").all()).toEqual([{ id: 1, a: "A1", b: "B1" }]);
    expect(a.conflicts().quarantined).toEqual([]);
  });

  it("a row the receiver lacks is inserted whole, defaults included", () => {
    const [a, b] = [open("a"), open("b")];
    for (const r of [a, b]) {
      r.store.db.exec("CREATE TABLE d (id TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 7, s TEXT NOT NULL)");
      r.track("d");
    }
    run(a, "INSERT INTO d (id, s) VALUES ('x', 'one')");
    run(a, "UPDATE d SET s = 'two' WHERE id = 'x'");
    // Only the update travels first: it waits in the log until the row's insert arrives.
    const changes = news(a, b);
    b.apply(changes.filter((c) => c.op === "update"));
    expect(b.store.db.prepare("SELECT count(*) FROM d").pluck().get()).toBe(0);
    b.apply(changes.filter((c) => c.op === "insert"));
    expect(b.store.db.prepare("SELECT * FROM d").all()).toEqual([{ id: "x", n: 7, s: "two" }]);
  });
});

describe("UNIQUE", () => {
  it("one name created on two replicas: the earlier claim keeps it on both, the other row is recorded and removed", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO artist VALUES ('a1', 'Nina', 'US')");
    tick();
    run(b, "INSERT INTO artist VALUES ('b1', 'Nina', 'FR')");
    sync(a, b);
    sync(a, b);
    for (const r of [a, b]) {
      expect(r.store.db.prepare("SELECT * FROM artist").all()).toEqual([
        { id: "a1", name: "Nina", country: "US" },
      ]);
      expect(r.conflicts().quarantined).toEqual([]);
    }
    expect(state(a)).toBe(state(b));
    // b resolved it (a only ever saw b1's tombstone, b's log having compacted the insert away).
    expect(b.conflicts().conflicts).toMatchObject([
      { kind: "unique", table: "artist", pk: ["b1"], lost: { columns: { name: "Nina", country: "FR" } } },
    ]);
    // A third replica that gets both inserts, in either order, keeps the same row and records the same loser.
    for (const order of [0, 1]) {
      const c = open(`c${order}`);
      const both = [...news(a, c), ...b.changesSince(0).changes.filter((x) => x.op === "insert")];
      if (order) both.reverse();
      for (const x of both) c.apply([x]);
      expect(c.store.db.prepare("SELECT id FROM artist").pluck().all()).toEqual(["a1"]);
    }
  });

  it("the same many-to-many pair added on two replicas under different surrogate ids ends as one row", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO artist VALUES ('r', 'Ray', 'UK')");
    run(a, "INSERT INTO album VALUES ('al', 'Blue', 'r', 1970)");
    sync(a, b);
    run(a, "INSERT INTO album_genre VALUES (1, 'al', 'jazz')");
    tick();
    run(b, "INSERT INTO album_genre VALUES (2, 'al', 'jazz')");
    sync(a, b);
    sync(a, b);
    for (const r of [a, b])
      expect(r.store.db.prepare("SELECT * FROM album_genre").all()).toEqual([
        { id: 1, album_id: "al", genre: "jazz" },
      ]);
    expect(state(a)).toBe(state(b));
  });

  it("a restore puts the lost row back when its value is free, and refuses with a clear reason when not", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO artist VALUES ('a1', 'Nina', 'US')");
    tick();
    run(b, "INSERT INTO artist VALUES ('b1', 'Nina', 'FR')");
    sync(a, b);
    sync(a, b);
    const [c] = b.conflicts().conflicts;
    expect(() => b.restoreConflict(c!.id)).toThrow(
      /UNIQUE constraint failed: artist.name.*restore with --replace/,
    );
    run(b, "UPDATE artist SET name = 'Nina S.' WHERE id = 'a1'");
    expect(b.restoreConflict(c!.id)).toEqual({ id: c!.id, restored: true });
    sync(a, b);
    for (const r of [a, b])
      expect(r.store.db.prepare("SELECT id, name FROM artist ORDER BY id").all()).toEqual([
        { id: "a1", name: "Nina S." },
        { id: "b1", name: "Nina" },
      ]);
    expect(b.conflict(c!.id)).toMatchObject({ restoredAt: expect.any(Number) });
  });
});

describe("inserts under one key", () => {
  it("two replicas inserting the same key: the later insert wins on both, and the other is recorded", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO artist VALUES ('x', 'Ann', 'US')");
    tick();
    run(b, "INSERT INTO artist VALUES ('x', 'Bo', 'SE')");
    sync(a, b);
    for (const r of [a, b]) {
      expect(r.store.db.prepare("SELECT * FROM artist").all()).toEqual([
        { id: "x", name: "Bo", country: "SE" },
      ]);
      expect(r.conflicts().conflicts).toMatchObject([
        { kind: "insert", table: "artist", pk: ["x"], origin: "a", lost: { columns: { name: "Ann" } } },
      ]);
    }
  });
});

describe("FOREIGN KEY", () => {
  function seeded(): [Replica, Replica] {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO artist VALUES ('r', 'Ray', 'UK')");
    run(a, "INSERT INTO album VALUES ('al', 'Blue', 'r', 1970)");
    sync(a, b);
    return [a, b];
  }

  it("a child inserted under a parent deleted elsewhere: the delete wins on both, whatever the order", () => {
    for (const order of ["delete first", "insert first"]) {
      const [a, b] = seeded();
      run(a, "DELETE FROM album WHERE id = 'al'");
      run(b, "INSERT INTO tag VALUES ('t1', 'al', 'live')");
      run(b, "INSERT INTO review VALUES ('v1', 'al', 'great')");
      if (order === "delete first") sync(a, b);
      else {
        a.apply(news(b, a), { from: b.nodeId });
        b.apply(news(a, b), { from: a.nodeId });
      }
      sync(a, b);
      sync(a, b);
      for (const r of [a, b]) {
        expect(fkCheck(r)).toEqual([]);
        expect(r.store.db.prepare("SELECT count(*) FROM album").pluck().get()).toBe(0);
        // NO ACTION: the orphan is removed; ON DELETE SET NULL: it stays, pointing nowhere.
        expect(r.store.db.prepare("SELECT count(*) FROM tag").pluck().get()).toBe(0);
        expect(r.store.db.prepare("SELECT * FROM review").all()).toEqual([
          { id: "v1", album_id: null, body: "great" },
        ]);
      }
      expect(state(a)).toBe(state(b));
      // Each replica records what it resolved itself: together, every overridden write.
      const seen = new Set([a, b].flatMap((r) => r.conflicts().conflicts.map((c) => `${c.kind} ${c.table}`)));
      expect([...seen].sort()).toEqual(["orphan review", "orphan tag"]);
      for (const r of opened.splice(0)) r.close();
    }
  });

  it("children delivered before their parents, in separate batches, arrive once the parents do", () => {
    const a = open("a");
    run(a, "INSERT INTO artist VALUES ('r', 'Ray', 'UK')");
    run(a, "INSERT INTO album VALUES ('al', 'Blue', 'r', 1970)");
    run(a, "INSERT INTO tag VALUES ('t1', 'al', 'live')");
    const b = open("b");
    for (const c of news(a, b).reverse()) b.apply([c], { from: a.nodeId });
    expect(state(b)).toBe(state(a));
    expect(fkCheck(b)).toEqual([]);
    expect(b.conflicts()).toEqual({ conflicts: [], quarantined: [] });
  });

  it("a cascade delete of a parent removes the children the deleting replica never saw", () => {
    const [a, b] = seeded();
    run(b, "INSERT INTO album_genre VALUES (7, 'al', 'soul')");
    run(a, "DELETE FROM artist WHERE id = 'r'");
    sync(a, b);
    sync(a, b);
    for (const r of [a, b]) {
      expect(fkCheck(r)).toEqual([]);
      expect(r.store.db.prepare("SELECT count(*) FROM album_genre").pluck().get()).toBe(0);
    }
    expect(state(a)).toBe(state(b));
  });
});

describe("quarantine", () => {
  it("a change the schema refuses waits aside, blocks nothing, and applies once a migration makes room", () => {
    const [a, b] = [open("a"), open("b")];
    // b is a migration behind: its CHECK is stricter.
    b.store.db.exec("CREATE TABLE m (id TEXT PRIMARY KEY, n INTEGER CHECK (n < 10))");
    a.store.db.exec("CREATE TABLE m (id TEXT PRIMARY KEY, n INTEGER)");
    a.track("m", { bucket: "music" });
    b.track("m", { bucket: "music" });
    run(a, "INSERT INTO m VALUES ('big', 50)");
    run(a, "INSERT INTO m VALUES ('small', 5)");
    const r = b.apply(news(a, b), { from: "a" });
    expect(r).toMatchObject({ received: 2, quarantined: 1 });
    expect(b.store.db.prepare("SELECT id FROM m").pluck().all()).toEqual(["small"]);
    expect(b.conflicts().quarantined).toMatchObject([
      { kind: "failed", table: "m", reason: /CHECK constraint failed/ },
    ]);
    // The migration: rebuild without the CHECK. The next batch (any) retries what waits.
    b.store.db.exec(`
      CREATE TABLE m2 (id TEXT PRIMARY KEY, n INTEGER);
      INSERT INTO m2 SELECT * FROM m;
      DROP TABLE m;
      ALTER TABLE m2 RENAME TO m;
    `);
    b.track("m", { bucket: "music" });
    expect(b.retryQuarantined()).toBe(1);
    expect(b.store.db.prepare("SELECT * FROM m ORDER BY id").all()).toEqual([
      { id: "big", n: 50 },
      { id: "small", n: 5 },
    ]);
    expect(b.conflicts().quarantined).toEqual([]);
  });
});
