/**
 * Schema changes on tracked tables: the app's migrations run unchanged (from
 * the real `sqlite3` shell, as a migration tool would run them), capture
 * follows them by itself, writes made while capture was missing are found,
 * and replicas that migrate at different times converge without losing or
 * reverting a local write. `status` shows each state.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { Replica } from "../src/replica/replica.js";
import { readStatus } from "../src/status.js";
import { openStore } from "../src/store.js";
import { sql, useTempDirs } from "./helpers.js";
import { dump, rng, shuffle } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-schema-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

const ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)";

function open(dir: string, nodeId: string, schema = ITEMS, table = "items"): Replica {
  const r = Replica.open(join(dir, `${nodeId}.db`), { nodeId, ingestIntervalMs: 0 });
  opened.push(r);
  r.store.db.exec(schema);
  r.track(table);
  return r;
}

/** Every change of `from`'s log applied to `to` (idempotent, so a full log each time is fine). */
function push(from: Replica, to: Replica): void {
  const changes = from.changesSince(0, { limit: 1_000_000 }).changes;
  to.apply(changes.filter((c) => c.origin !== to.nodeId));
}

function syncAll(replicas: Replica[]): void {
  for (let round = 0; round < 2; round++)
    for (const a of replicas) for (const b of replicas) if (a !== b) push(a, b);
}

const shell = (r: Replica, statements: string) => sql(r.store.path, statements);
const rowsOf = (r: Replica, table = "items") => dump(r.store.db, table, table === "pairs" ? "1, 2" : "id");
const REBUILD = (cols: string, select: string) => `PRAGMA foreign_keys = OFF;
  BEGIN;
  CREATE TABLE new__items (${cols});
  INSERT INTO new__items SELECT ${select} FROM items;
  DROP TABLE items;
  ALTER TABLE new__items RENAME TO items;
  COMMIT;
  PRAGMA foreign_keys = ON;`;

describe("a table rebuild from the sqlite3 shell", () => {
  it("gets its capture back by itself; writes made while capture was missing are found, and a pull reverts none", () => {
    const dir = tempDir();
    const [a, b] = [open(dir, "a"), open(dir, "b")];
    shell(
      a,
      "INSERT INTO items VALUES (1, 'pen', 1, NULL), (2, 'cup', 2, NULL), (3, 'ink', 3, NULL), (4, 'pad', 4, NULL);",
    );
    syncAll([a, b]);
    // Before the rebuild, captured: an update and a delete.
    shell(a, "UPDATE items SET note = 'before' WHERE id = 4; DELETE FROM items WHERE id = 3;");
    // B writes row 1 first; A's own later write of it must win everywhere.
    b.store.db.prepare("UPDATE items SET qty = 100 WHERE id = 1").run();
    // The rebuild Django, sqlite-utils, Knex and Drizzle run (name becomes NOT NULL),
    // then writes while no trigger is there: update, delete, insert.
    shell(
      a,
      `${REBUILD("id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, note TEXT", "id, name, qty, note")}
       UPDATE items SET qty = 5 WHERE id = 1;
       DELETE FROM items WHERE id = 2;
       INSERT INTO items VALUES (5, 'cap', 5, 'gap');`,
    );
    // The first thing A does is apply B's changes: capture is restored and the gap reconciled first.
    push(b, a);
    const local = [
      { id: 1, name: "pen", qty: 5, note: null },
      { id: 4, name: "pad", qty: 4, note: "before" },
      { id: 5, name: "cap", qty: 5, note: "gap" },
    ];
    expect(a.store.db.prepare("SELECT * FROM items ORDER BY id").all()).toEqual(local);
    // Capture is back: later writes are captured as they happen.
    expect(a.captureStatus()).toMatchObject([{ table: "items", state: "ok", installed: true }]);
    shell(a, "UPDATE items SET note = 'after' WHERE id = 5; INSERT INTO items VALUES (6, 'box', 6, NULL);");
    syncAll([a, b]);
    expect(rowsOf(b)).toBe(rowsOf(a));
    expect(b.store.db.prepare("SELECT id, qty, note FROM items ORDER BY id").all()).toEqual([
      { id: 1, qty: 5, note: null },
      { id: 4, qty: 4, note: "before" },
      { id: 5, qty: 5, note: "after" },
      { id: 6, qty: 6, note: null },
    ]);
  });

  it("holds capture while the table is gone mid-migration, and says what to run", () => {
    const dir = tempDir();
    const a = open(dir, "a");
    shell(a, "INSERT INTO items VALUES (1, 'pen', 1, NULL);");
    expect(a.changesSince(0).changes).toHaveLength(1);
    // A tool that runs the steps one by one, each in its own transaction.
    shell(
      a,
      "CREATE TABLE new__items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT); INSERT INTO new__items SELECT * FROM items; DROP TABLE items;",
    );
    a.ingest();
    const [mid] = a.captureStatus();
    expect(mid).toMatchObject({ state: "missing", present: null });
    expect(mid?.problem).toMatch(/tidewire untrack .* --table items/);
    // Nothing is applied to it meanwhile: the change waits in quarantine, its reason says what to run.
    const change = {
      table: "items",
      pk: [1],
      op: "update",
      columns: { qty: 9 },
      hlc: a.now(),
      origin: "z",
      seq: 1,
    };
    expect(a.apply([change])).toMatchObject({ applied: 0, quarantined: 1 });
    expect(a.conflicts().quarantined).toMatchObject([
      { kind: "failed", table: "items", reason: /tracked table "items" is missing: .*tidewire untrack/ },
    ]);
    expect(() => a.changesSince(0)).toThrow(/tracked table "items" is missing/);
    shell(a, "ALTER TABLE new__items RENAME TO items; UPDATE items SET qty = 2 WHERE id = 1;");
    expect(a.changesSince(1).changes.map((c) => [c.op, c.columns])).toEqual([["update", { qty: 2 }]]);
    expect(a.captureStatus()).toMatchObject([{ state: "ok", problem: null }]);
    // Once the table is back, the kept change applies (its clock is older than the local update).
    expect(a.retryQuarantined()).toBe(1);
    expect(a.conflicts().quarantined).toEqual([]);
  });
});

describe("ALTER TABLE on tracked tables", () => {
  it("ADD, RENAME and DROP COLUMN, CREATE and DROP INDEX, RENAME TABLE succeed and capture follows them; three replicas migrating at different times converge", () => {
    const dir = tempDir();
    const [a, b, c] = [open(dir, "a"), open(dir, "b"), open(dir, "c")];
    shell(a, "INSERT INTO items VALUES (1, 'pen', 1, 'n1'), (2, 'cup', 2, 'n2'), (3, 'ink', 3, 'n3');");
    syncAll([a, b, c]);

    // A adds a column and writes it; B and C do not have it yet: kept, not lost.
    shell(
      a,
      "ALTER TABLE items ADD COLUMN color TEXT; UPDATE items SET color = 'red' WHERE id = 1; CREATE INDEX items_qty ON items (qty);",
    );
    syncAll([a, b, c]);
    expect(a.tables()[0]?.columns).toEqual(["name", "qty", "note", "color"]);
    expect(b.stats().pending).toBeGreaterThan(0);
    // B migrates: the value A sent arrives in the new column by itself.
    shell(b, "ALTER TABLE items ADD COLUMN color TEXT;");
    expect(b.stats().pending).toBe(0);
    expect(b.store.db.prepare("SELECT color FROM items WHERE id = 1").pluck().get()).toBe("red");

    // A renames a column (its history kept) and writes it; B writes the old name meanwhile.
    shell(a, "ALTER TABLE items RENAME COLUMN name TO title; UPDATE items SET title = 'PEN' WHERE id = 1;");
    b.store.db.prepare("UPDATE items SET name = 'CUP' WHERE id = 2").run();
    syncAll([a, b, c]);
    shell(b, "ALTER TABLE items RENAME COLUMN name TO title;");
    shell(c, "ALTER TABLE items ADD COLUMN color TEXT; ALTER TABLE items RENAME COLUMN name TO title;");
    syncAll([a, b, c]);
    expect(a.store.db.prepare("SELECT title FROM items ORDER BY id").pluck().all()).toEqual([
      "PEN",
      "CUP",
      "ink",
    ]);

    // A drops a column (the triggers name only the key, so SQLite lets it): no longer sent.
    shell(
      a,
      "DROP INDEX items_qty; ALTER TABLE items DROP COLUMN note; UPDATE items SET qty = 10 WHERE id = 3;",
    );
    const sent = a.changesSince(0, { limit: 1000 }).changes;
    expect(sent.some((ch) => "note" in ch.columns)).toBe(false);
    shell(b, "ALTER TABLE items DROP COLUMN note;");
    shell(c, "ALTER TABLE items DROP COLUMN note;");
    syncAll([a, b, c]);

    // Every replica renames the table; capture follows it (the triggers moved with it).
    for (const r of [a, b, c]) shell(r, "ALTER TABLE items RENAME TO goods;");
    shell(c, "INSERT INTO goods (id, title, qty) VALUES (4, 'box', 4); DELETE FROM goods WHERE id = 2;");
    syncAll([a, b, c]);
    for (const r of [a, b, c]) {
      expect(r.tables().map((t) => [t.table, t.columns])).toEqual([["goods", ["title", "qty", "color"]]]);
      expect(r.captureStatus()).toMatchObject([{ table: "goods", state: "ok", installed: true }]);
    }
    expect(rowsOf(b, "goods")).toBe(rowsOf(a, "goods"));
    expect(rowsOf(c, "goods")).toBe(rowsOf(a, "goods"));
    expect(a.store.db.prepare("SELECT * FROM goods ORDER BY id").all()).toEqual([
      { id: 1, title: "PEN", qty: 1, color: "red" },
      { id: 3, title: "ink", qty: 10, color: null },
      { id: 4, title: "box", qty: 4, color: null },
    ]);
  });
});

describe("keys", () => {
  it("a composite key survives a rebuild and a key column's rename; gap writes are found", () => {
    const dir = tempDir();
    const schema = "CREATE TABLE pairs (x TEXT, y INTEGER, v, PRIMARY KEY (x, y)) WITHOUT ROWID";
    const [a, b] = [open(dir, "a", schema, "pairs"), open(dir, "b", schema, "pairs")];
    shell(a, "INSERT INTO pairs VALUES ('p', 1, 'one'), ('p', 2, 'two'), ('q', 1, x'00');");
    syncAll([a, b]);
    shell(
      a,
      `BEGIN; CREATE TABLE new__pairs (x TEXT, y INTEGER, v, w, PRIMARY KEY (x, y)) WITHOUT ROWID;
       INSERT INTO new__pairs SELECT x, y, v, NULL FROM pairs; DROP TABLE pairs;
       ALTER TABLE new__pairs RENAME TO pairs; COMMIT;
       UPDATE pairs SET v = 'ONE' WHERE x = 'p' AND y = 1; DELETE FROM pairs WHERE x = 'q';
       ALTER TABLE pairs RENAME COLUMN y TO n; UPDATE pairs SET w = 2 WHERE n = 2;`,
    );
    expect(a.tables()).toMatchObject([{ table: "pairs", key: ["x", "n"], columns: ["v", "w"] }]);
    shell(b, "ALTER TABLE pairs ADD COLUMN w; ALTER TABLE pairs RENAME COLUMN y TO n;");
    syncAll([a, b]);
    expect(rowsOf(b, "pairs").replaceAll('"y"', '"n"')).toBe(rowsOf(a, "pairs"));
    expect(a.store.db.prepare("SELECT x, n, v, w FROM pairs ORDER BY x, n").all()).toEqual([
      { x: "p", n: 1, v: "ONE", w: null },
      { x: "p", n: 2, v: "two", w: 2 },
    ]);
  });
});

describe("status", () => {
  it("shows capture installed, a pending reconciliation, a missing table and columns tracked against present", () => {
    const dir = tempDir();
    const a = open(dir, "a");
    a.close();
    const read = () => {
      const store = openStore(join(dir, "a.db"), { readonly: true });
      try {
        return readStatus(store).capture;
      } finally {
        store.close();
      }
    };
    expect(read()).toEqual([
      {
        table: "items",
        bucket: "default",
        state: "ok",
        installed: true,
        tracked: ["name", "qty", "note"],
        present: ["name", "qty", "note"],
        problem: null,
      },
    ]);
    sql(
      join(dir, "a.db"),
      `${REBUILD("id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT, color TEXT", "id, name, qty, note, NULL")}`,
    );
    expect(read()).toMatchObject([
      {
        state: "reconcile",
        installed: false,
        tracked: ["name", "qty", "note"],
        present: ["name", "qty", "note", "color"],
      },
    ]);
    sql(join(dir, "a.db"), "DROP TABLE items;");
    expect(read()).toMatchObject([
      { state: "missing", present: null, problem: expect.stringMatching(/untrack/) },
    ]);
  });
});

/** A migration step every replica runs, in this order, each when its turn comes. */
type Step =
  | { k: "add"; col: string }
  | { k: "rename"; from: string; to: string }
  | { k: "drop"; col: string }
  | { k: "rebuild" };

type Op =
  | { k: "write"; node: number; id: number; col: number; v: number; del: boolean }
  | { k: "migrate"; node: number }
  | { k: "sync"; from: number; to: number };

/** Steps valid from the starting columns a, b, c: what the property's replicas run. */
function plan(kinds: Array<Step["k"]>): Step[] {
  let cols = ["a", "b", "c"];
  let n = 0;
  const out: Step[] = [];
  for (const k of kinds) {
    n++;
    if (k === "add") {
      out.push({ k, col: `x${n}` });
      cols = [...cols, `x${n}`];
    } else if (k === "rename" && cols.length > 0) {
      const from = cols[n % cols.length] as string;
      out.push({ k, from, to: `r${n}` });
      cols = cols.map((c) => (c === from ? `r${n}` : c));
    } else if (k === "drop" && cols.length > 1) {
      const col = cols[n % cols.length] as string;
      out.push({ k, col });
      cols = cols.filter((c) => c !== col);
    } else if (k === "rebuild") out.push({ k });
  }
  return out;
}

function runStep(r: Replica, s: Step): void {
  const db = r.store.db;
  const cols = () =>
    db.prepare("SELECT name FROM pragma_table_info('t') WHERE pk = 0").pluck().all() as string[];
  if (s.k === "add") db.exec(`ALTER TABLE t ADD COLUMN "${s.col}"`);
  else if (s.k === "rename") db.exec(`ALTER TABLE t RENAME COLUMN "${s.from}" TO "${s.to}"`);
  else if (s.k === "drop") db.exec(`ALTER TABLE t DROP COLUMN "${s.col}"`);
  else {
    const list = cols().map((c) => `"${c}"`);
    db.exec(`BEGIN; CREATE TABLE new__t (id INTEGER PRIMARY KEY${list.map((c) => `, ${c}`).join("")});
      INSERT INTO new__t SELECT id${list.map((c) => `, ${c}`).join("")} FROM t; DROP TABLE t;
      ALTER TABLE new__t RENAME TO t; COMMIT;`);
  }
}

describe("property", () => {
  it("random interleavings of writes, schema changes and syncs on three replicas converge", () => {
    const dir = tempDir();
    let run = 0;
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          k: fc.constant("write" as const),
          node: fc.integer({ min: 0, max: 2 }),
          id: fc.integer({ min: 1, max: 5 }),
          col: fc.integer({ min: 0, max: 9 }),
          v: fc.integer({ min: 0, max: 3 }),
          del: fc.boolean(),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({ k: fc.constant("migrate" as const), node: fc.integer({ min: 0, max: 2 }) }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          k: fc.constant("sync" as const),
          from: fc.integer({ min: 0, max: 2 }),
          to: fc.integer({ min: 0, max: 2 }),
        }),
      },
    );
    const kinds = fc.array(fc.constantFrom<Step["k"]>("add", "rename", "drop", "rebuild"), {
      minLength: 1,
      maxLength: 4,
    });
    fc.assert(
      fc.property(kinds, fc.array(op, { minLength: 1, maxLength: 40 }), fc.integer(), (k, ops, seed) => {
        run++;
        const steps = plan(k);
        const sub = join(dir, `run${run}`);
        mkdirSync(sub);
        const rs = ["a", "b", "c"].map((n) =>
          open(sub, n, "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)", "t"),
        );
        const level = [0, 0, 0];
        const random = rng(seed);
        try {
          for (const o of ops) {
            if (o.k === "migrate") {
              const s = steps[level[o.node] as number];
              if (s) {
                runStep(rs[o.node] as Replica, s);
                level[o.node]!++;
              }
            } else if (o.k === "sync") {
              if (o.from !== o.to) push(rs[o.from] as Replica, rs[o.to] as Replica);
            } else {
              const db = (rs[o.node] as Replica).store.db;
              const cols = db
                .prepare("SELECT name FROM pragma_table_info('t') WHERE pk = 0")
                .pluck()
                .all() as string[];
              if (o.del) db.prepare("DELETE FROM t WHERE id = ?").run(o.id);
              else if (cols.length === 0) db.prepare("INSERT OR IGNORE INTO t (id) VALUES (?)").run(o.id);
              else {
                const col = cols[o.col % cols.length] as string;
                db.prepare(
                  `INSERT INTO t (id, "${col}") VALUES (?, ?) ON CONFLICT DO UPDATE SET "${col}" = excluded."${col}"`,
                ).run(o.id, o.v);
              }
            }
          }
          for (const [i, r] of rs.entries())
            while ((level[i] as number) < steps.length) runStep(r, steps[level[i]!++] as Step);
          syncAll(shuffle(rs, random));
          const want = rowsOf(rs[0] as Replica, "t");
          for (const r of rs) expect(rowsOf(r, "t")).toBe(want);
        } finally {
          for (const r of rs) r.close();
          opened.splice(0);
        }
      }),
      { numRuns: 60 },
    );
  });
});
