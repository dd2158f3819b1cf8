/**
 * Capture: tracking (refusals, idempotence, reconciliation), what the triggers
 * record for inserts, updates, deletes and key changes, the compaction of the
 * log, and writes by other SQLite clients — Debian's `sqlite3` shell and
 * Python's sqlite3 module — captured and replicated.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, NotTrackableError, Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-capture-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

function open(nodeId: string, path = join(tempDir(), `${nodeId}.db`)): Replica {
  const r = Replica.open(path, { nodeId });
  opened.push(r);
  return r;
}

function items(r: Replica): Replica {
  r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE, qty, note TEXT)");
  r.track("items");
  return r;
}

function all(r: Replica): Change[] {
  return r.changesSince(0, { limit: 100_000 }).changes;
}

function triggers(r: Replica): string[] {
  return r.store.db
    .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name")
    .pluck()
    .all() as string[];
}

describe("track", () => {
  it("refuses a table without an explicit PRIMARY KEY, and changes nothing", () => {
    const r = open("a");
    r.store.db.exec("CREATE TABLE loose (a, b)");
    expect(() => r.track("loose")).toThrow(NotTrackableError);
    expect(() => r.track("loose")).toThrow(/"loose" cannot be tracked: it has no explicit PRIMARY KEY/);
    expect(triggers(r)).toEqual([]);
    expect(r.tables()).toEqual([]);
  });

  it("refuses what is not an ordinary application table, and bad arguments", () => {
    const r = open("a");
    r.store.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY); CREATE VIEW v AS SELECT * FROM t");
    expect(() => r.track("missing")).toThrow(/no such table/);
    expect(() => r.track("v")).toThrow(NotTrackableError);
    expect(() => r.track("tw_log")).toThrow(/internal table/);
    expect(() => r.track("")).toThrow(InvalidArgumentError);
    expect(() => r.track("t", { bucket: "" })).toThrow(InvalidArgumentError);
    r.store.db.exec("CREATE TABLE pr (a REAL, b INTEGER, PRIMARY KEY (a, b))");
    expect(() => r.track("pr")).toThrow(/key column "a" is REAL/);
    expect(triggers(r)).toEqual([]);
  });

  it("is idempotent: tracking again changes neither triggers nor log", () => {
    const r = items(open("a"));
    r.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL)").run();
    const before = { triggers: triggers(r), changes: all(r), stats: r.stats() };
    expect(r.track("items")).toEqual({
      table: "items",
      bucket: "default",
      key: ["id"],
      columns: ["name", "qty", "note"],
    });
    expect({ triggers: triggers(r), changes: all(r), stats: r.stats() }).toEqual(before);
  });

  it("captures the rows a table already holds, once", () => {
    const r = open("a");
    r.store.db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'x'), (2, 'y')");
    r.track("t", { bucket: "b1" });
    const changes = all(r);
    expect(changes.map((c) => [c.op, c.pk, c.columns])).toEqual([
      ["insert", [1], { v: "x" }],
      ["insert", [2], { v: "y" }],
    ]);
    r.track("t", { bucket: "b2" });
    expect(all(r)).toEqual(changes.map((c) => ({ ...c, bucket: "b2" })));
    expect(r.tables()).toEqual([{ table: "t", bucket: "b2", key: ["id"], columns: ["v"] }]);
  });

  it("captures the rows inserted, updated and deleted while no trigger was there, at the next read", () => {
    const r = items(open("a"));
    r.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL), (2, 'cup', 1, NULL)").run();
    r.untrack("items");
    expect(r.stats().entries).toBe(0);
    r.track("items");
    const db = r.store.db;
    const cursor = r.changesSince(0).cursor;
    db.exec("DROP TRIGGER tw_1_update; DROP TRIGGER tw_1_delete; DROP TRIGGER tw_1_insert");
    db.prepare("UPDATE items SET qty = 5 WHERE id = 1").run();
    db.prepare("DELETE FROM items WHERE id = 2").run();
    db.prepare("INSERT INTO items VALUES (3, 'ink', 1, NULL)").run();
    // The schema moved: the next read puts the triggers back and finds every
    // gap write, the update too (against the row's fingerprint).
    const since = r.changesSince(cursor).changes.map((c) => [c.op, c.pk, c.columns]);
    expect(since).toEqual([
      ["update", [1], { qty: 5 }],
      ["insert", [3], { name: "ink", qty: 1, note: null }],
      ["delete", [2], {}],
    ]);
    expect(triggers(r)).toHaveLength(4);
    r.track("items");
    expect(r.changesSince(r.changesSince(0).cursor).changes).toEqual([]);
  });

  it("untrack drops the triggers and the table's entries; later writes are not captured", () => {
    const r = items(open("a"));
    r.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL)").run();
    expect(r.untrack("items")).toBe(true);
    expect(r.untrack("items")).toBe(false);
    r.store.db.prepare("INSERT INTO items VALUES (2, 'cup', 1, NULL)").run();
    expect(triggers(r)).toEqual([]);
    expect(r.stats()).toMatchObject({ entries: 0 });
  });
});

describe("capture", () => {
  it("records inserts, changed columns of updates, deletes and key changes", () => {
    const r = items(open("a"));
    const db = r.store.db;
    db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL)").run();
    let cursor = r.changesSince(0).cursor;
    db.prepare("UPDATE items SET qty = 3, note = note WHERE id = 1").run();
    expect(r.changesSince(cursor).changes.map((c) => [c.op, c.columns])).toEqual([["update", { qty: 3 }]]);
    cursor = r.changesSince(0).cursor;
    // A change of storage class, and a change only the column's NOCASE collation calls equal.
    db.prepare("UPDATE items SET qty = 3.0, name = 'PEN' WHERE id = 1").run();
    expect(r.changesSince(cursor).changes.map((c) => c.columns)).toEqual([{ name: "PEN", qty: { real: 3 } }]);
    cursor = r.changesSince(0).cursor;
    db.prepare("UPDATE items SET id = 7 WHERE id = 1").run();
    expect(r.changesSince(cursor).changes.map((c) => [c.op, c.pk, c.columns])).toEqual([
      ["delete", [1], {}],
      ["insert", [7], { name: "PEN", qty: { real: 3 }, note: null }],
    ]);
    cursor = r.changesSince(0).cursor;
    db.prepare("DELETE FROM items WHERE id = 7").run();
    const [del] = r.changesSince(cursor).changes;
    expect(del).toMatchObject({ table: "items", op: "delete", pk: [7], origin: "a" });
    expect(r.stats()).toMatchObject({ rows: 0, tombstones: 2, entries: 2 });
  });

  it("compacts: 10,000 updates of one cell leave one entry for it", () => {
    const r = items(open("a"));
    const db = r.store.db;
    db.prepare("INSERT INTO items VALUES (1, 'pen', 0, NULL)").run();
    // Logged before the updates: a key's events between two ingests coalesce into one.
    r.ingest();
    const update = db.prepare("UPDATE items SET qty = ? WHERE id = 1");
    r.store.write(() => {
      for (let i = 1; i <= 10_000; i++) update.run(i);
    });
    expect(r.stats()).toMatchObject({ entries: 4, rows: 1 });
    const qty = db.prepare("SELECT count(*) FROM tw_log WHERE col = 'qty'").pluck().get();
    expect(qty).toBe(1);
    expect(all(r)).toHaveLength(2);
    // better-sqlite3 binds a JS number as REAL; the untyped column keeps it so.
    expect(all(r)[1]?.columns).toEqual({ qty: { real: 10_000 } });
  });

  it("gives every row event a later clock and sequence than the one before, across reopen", () => {
    const dir = tempDir();
    const path = join(dir, "a.db");
    const r = items(Replica.open(path, { nodeId: "a" }));
    r.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 0, NULL), (2, 'cup', 0, NULL)").run();
    const first = all(r);
    r.close();
    const again = open("a", path);
    again.store.db.prepare("UPDATE items SET qty = 1").run();
    const changes = all(again);
    const clocks = changes.map((c) => c.hlc);
    expect([...clocks].sort()).toEqual(clocks);
    expect(new Set(clocks).size).toBe(clocks.length);
    expect(changes.slice(-2).every((c) => c.hlc > (first[1]?.hlc ?? ""))).toBe(true);
    expect(() => Replica.open(path, { nodeId: "b" })).toThrow(/node id is "a"/);
  });

  it("captures composite keys, and refuses key values that have no canonical form", () => {
    const r = open("a");
    const db = r.store.db;
    db.exec("CREATE TABLE pairs (k1 TEXT, k2, v, PRIMARY KEY (k1, k2))");
    r.track("pairs");
    db.prepare("INSERT INTO pairs VALUES (?, ?, ?)").run("it's, ok", Buffer.from([0, 1]), "v");
    expect(all(r).map((c) => c.pk)).toEqual([["it's, ok", { blob: "AAE=" }]]);
    expect(() => db.prepare("INSERT INTO pairs VALUES ('x', 1.5, 'v')").run()).toThrow(
      /must not be NULL, REAL/,
    );
    expect(() => db.prepare("INSERT INTO pairs VALUES ('x', NULL, 'v')").run()).toThrow(/must not be NULL/);
    expect(() => db.prepare("INSERT INTO pairs VALUES (?, 1, 'v')").run("a\0b")).toThrow(/U\+0000/);
    expect(db.prepare("SELECT count(*) FROM pairs").pluck().get()).toBe(1);
  });
});

describe("other SQLite clients", () => {
  function hasSqlite3(): boolean {
    try {
      execFileSync("sqlite3", ["-version"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  }

  it("captures writes by the sqlite3 shell and by Python, and they replicate", () => {
    expect(hasSqlite3(), "the sqlite3 shell is needed (apt-get install sqlite3)").toBe(true);
    const dir = tempDir();
    const path = join(dir, "a.db");
    const a = items(Replica.open(path, { nodeId: "a" }));
    a.close();
    execFileSync("sqlite3", [
      path,
      "INSERT INTO items VALUES (1, 'from the shell', 9223372036854775807, x'00ff'); " +
        "INSERT INTO items VALUES (2, 'doomed', 1, NULL); UPDATE items SET qty = 2.5 WHERE id = 2; " +
        "DELETE FROM items WHERE id = 2;",
    ]);
    execFileSync("python3", [
      "-c",
      [
        "import sqlite3, sys",
        "c = sqlite3.connect(sys.argv[1])",
        "c.execute('INSERT INTO items VALUES (?, ?, ?, ?)', (3, 'from Python \\u00e9\\u6f22\\U0001F600', 1.0, b'\\x00\\x01'))",
        "c.execute('UPDATE items SET note = ? WHERE id = 1', ('noted',))",
        "c.commit()",
      ].join("\n"),
      path,
    ]);
    const again = open("a", path);
    const changes = all(again);
    // Nothing ingested in between: row 1's insert and later update coalesce into one insert.
    expect(changes.map((c) => [c.op, c.pk[0]])).toEqual([
      ["delete", 2],
      ["insert", 3],
      ["insert", 1],
    ]);
    expect(changes.every((c) => c.origin === "a")).toBe(true);
    const b = items(open("b"));
    b.apply(changes);
    expect(dump(b.store.db, "items", "id")).toBe(dump(again.store.db, "items", "id"));
    const row = b.store.db
      .prepare("SELECT qty, typeof(qty) AS t, note FROM items WHERE id = 1")
      .safeIntegers(true)
      .get();
    expect(row).toEqual({ qty: 9223372036854775807n, t: "integer", note: "noted" });
    expect(b.store.db.prepare("SELECT name, typeof(qty) AS t FROM items WHERE id = 3").get()).toEqual({
      name: "from Python é漢😀",
      t: "real",
    });
  });
});
