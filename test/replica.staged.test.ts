/**
 * Staged capture: triggers append to tw_pending, ingest builds the log. Logged
 * one event at a time (an ingest after every statement), the log must be the
 * one the direct-capture triggers, which wrote tw_log directly, build from the
 * same writes (test/fixtures/capture-direct.ts is that oracle); ingested at
 * any points, a key's events between two ingests coalesce into what they did,
 * and the log must still serve exactly the oracle's rows. HLCs must follow the
 * times of the writes.
 * Writes from the sqlite3 shell and from a process killed before it ingested
 * are logged too.
 */
import { join } from "node:path";
import type Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Hub } from "../src/hub/hub.js";
import { Replica } from "../src/replica/replica.js";
import { readTable } from "../src/replica/schema.js";
import type { SqlValue } from "../src/replica/values.js";
import { installDirectTriggers } from "./fixtures/capture-direct.js";
import { runNode, sql, useTempDirs, waitFor } from "./helpers.js";
import { dump, templated } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-staged-");
const WIDE = 70;
const wideCols = Array.from({ length: WIDE }, (_, i) => `c${i}`);
const SCHEMA = `
  CREATE TABLE items (id INTEGER PRIMARY KEY, a, b TEXT, c INTEGER);
  CREATE TABLE pairs (x TEXT, y INTEGER, v, PRIMARY KEY (x, y)) WITHOUT ROWID;
  CREATE TABLE wide (id INTEGER PRIMARY KEY, ${wideCols.join(", ")});`;
const TABLES = ["items", "pairs", "wide"] as const;

function setup(r: Replica): void {
  r.store.db.exec(SCHEMA);
  for (const t of TABLES) r.track(t);
}

// Values that look alike but differ in storage class or case: capture must tell them apart.
const value = fc.constantFrom<SqlValue>(null, 1n, 1.0, 1.5, "1", "a", "A", Buffer.from("a"));
const id = fc.integer({ min: 1, max: 6 });
const pairKey = fc.tuple(fc.constantFrom("p", "q", "p,1"), fc.integer({ min: 1, max: 3 }));

type Op =
  | { k: "insert"; id: number; a: SqlValue; b: SqlValue; how: "OR IGNORE" | "OR REPLACE" }
  | { k: "update"; id: number; col: "a" | "b" | "c"; v: SqlValue }
  | { k: "same"; id: number; times: number }
  | { k: "noop"; id: number }
  | { k: "many"; below: number }
  | { k: "delete"; id: number }
  | { k: "rekey"; id: number; to: number }
  | { k: "pair"; key: [string, number]; v: SqlValue; del: boolean }
  | { k: "pairRekey"; key: [string, number]; to: number }
  | { k: "wide"; id: number; cols: number[]; v: SqlValue }
  | { k: "ingest" };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("insert" as const),
    id,
    a: value,
    b: value,
    how: fc.constantFrom("OR IGNORE" as const, "OR REPLACE" as const),
  }),
  fc.record({
    k: fc.constant("update" as const),
    id,
    col: fc.constantFrom("a" as const, "b" as const, "c" as const),
    v: value,
  }),
  fc.record({ k: fc.constant("same" as const), id, times: fc.integer({ min: 2, max: 40 }) }),
  fc.record({ k: fc.constant("noop" as const), id }),
  fc.record({ k: fc.constant("many" as const), below: id }),
  fc.record({ k: fc.constant("delete" as const), id }),
  fc.record({ k: fc.constant("rekey" as const), id, to: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ k: fc.constant("pair" as const), key: pairKey, v: value, del: fc.boolean() }),
  fc.record({ k: fc.constant("pairRekey" as const), key: pairKey, to: fc.integer({ min: 1, max: 3 }) }),
  fc.record({
    k: fc.constant("wide" as const),
    id,
    cols: fc.uniqueArray(fc.integer({ min: 0, max: WIDE - 1 }), { minLength: 0, maxLength: 4 }),
    v: value,
  }),
  fc.constant({ k: "ingest" as const }),
);

/** The statements of one op; each runs as its own statement, as a shell would. */
function statements(o: Exclude<Op, { k: "ingest" }>): Array<[string, unknown[]]> {
  switch (o.k) {
    case "insert":
      return [[`INSERT ${o.how} INTO items (id, a, b) VALUES (?, ?, ?)`, [o.id, o.a, o.b]]];
    case "update":
      return [[`UPDATE items SET ${o.col} = ? WHERE id = ?`, [o.v, o.id]]];
    case "same":
      return Array.from({ length: o.times }, (_, i) => [
        "UPDATE items SET c = ? WHERE id = ?",
        [BigInt(i), o.id],
      ]);
    case "noop":
      return [["UPDATE items SET a = a, id = id WHERE id = ?", [o.id]]];
    case "many":
      return [["UPDATE items SET c = coalesce(c, 0) + 1 WHERE id <= ?", [o.below]]];
    case "delete":
      return [["DELETE FROM items WHERE id = ?", [o.id]]];
    case "rekey":
      return [["UPDATE OR IGNORE items SET id = ? WHERE id = ?", [o.to, o.id]]];
    case "pair":
      return o.del
        ? [["DELETE FROM pairs WHERE x = ? AND y = ?", o.key]]
        : [
            [
              "INSERT INTO pairs (x, y, v) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET v = excluded.v",
              [...o.key, o.v],
            ],
          ];
    case "pairRekey":
      return [["UPDATE OR IGNORE pairs SET y = ? WHERE x = ? AND y = ?", [o.to, ...o.key]]];
    case "wide":
      return [
        ["INSERT OR IGNORE INTO wide (id) VALUES (?)", [o.id]],
        ...(o.cols.length === 0
          ? []
          : ([
              [
                `UPDATE wide SET ${o.cols.map((c) => `c${c} = ?`).join(", ")} WHERE id = ?`,
                [...o.cols.map(() => o.v), o.id],
              ],
            ] as Array<[string, unknown[]]>)),
      ];
  }
}

type Row = Record<string, unknown>;

function log(db: Database.Database): Row[] {
  return db
    .prepare("SELECT tbl, pk, col, val, hlc, origin, seq, src FROM tw_log ORDER BY tbl, pk, col")
    .safeIntegers(true)
    .all() as Row[];
}

const withoutHlc = (rows: Row[]) => rows.map(({ hlc: _, ...r }) => r);

/**
 * Ingests, first computing from the staged rows what each event's HLC must
 * be: one at a time, max(previous + 1, ms << 16), from the clock as it was.
 */
function ingestChecked(r: Replica, expected: Map<bigint, bigint>): void {
  const db = r.store.db;
  const clock = db.prepare("SELECT hlc, seq FROM tw_clock").safeIntegers(true).get() as {
    hlc: bigint;
    seq: bigint;
  };
  const ms = db
    .prepare("SELECT CAST((jd - 2440587.5) * 86400000 AS INTEGER) FROM tw_pending ORDER BY id")
    .pluck()
    .safeIntegers(true)
    .all() as bigint[];
  let { hlc, seq } = clock;
  for (const m of ms) {
    hlc = hlc + 1n > m << 16n ? hlc + 1n : m << 16n;
    seq++;
    expected.set(seq, hlc);
  }
  expect(r.ingest()).toBe(ms.length);
  expect(db.prepare("SELECT hlc, seq FROM tw_clock").safeIntegers(true).get()).toEqual({ hlc, seq });
}

/** Rows in one of the replica's own tables. */
function count(db: Database.Database, table: "tw_pending" | "tw_log"): number {
  return db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
}

describe("staged capture", () => {
  it("builds, one event at a time, exactly the log the direct-capture triggers built; at any points and in chunks of any size, a log that serves the same rows", () => {
    const dir = tempDir();
    const replica = templated(dir, setup);
    // Opening a replica replaces the direct-capture triggers: install them after.
    const oracleReplica = (nodeId: string, target: string) => {
      const r = replica(nodeId, target, { ingestIntervalMs: 0 });
      for (const t of r.tables()) {
        const id = r.store.db
          .prepare("SELECT id FROM tw_tracked WHERE name = ?")
          .pluck()
          .get(t.table) as number;
        installDirectTriggers(r.store.db, id, readTable(r.store.db, t.table));
      }
      return r;
    };
    let run = 0;
    // Chunks of 1 to 8 events per ingest transaction, or the default (one for all here).
    const chunk = fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(undefined));
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 50 }),
        chunk,
        fc.boolean(),
        (ops, ingestChunk, eager) => {
          run++;
          const staged = replica("n", join(dir, `s${run}.db`), { ingestIntervalMs: 0, ingestChunk });
          const oracle = oracleReplica("n", join(dir, `o${run}.db`));
          try {
            const expected = new Map<bigint, bigint>();
            ingestChecked(staged, expected);
            for (const o of ops) {
              if (o.k === "ingest") {
                ingestChecked(staged, expected);
                continue;
              }
              for (const [text, params] of statements(o)) {
                const outcome = (r: Replica) => {
                  try {
                    r.store.db.prepare(text).run(...params);
                    return "ok";
                  } catch (err) {
                    return String(err);
                  }
                };
                expect(outcome(staged)).toBe(outcome(oracle));
                if (eager) ingestChecked(staged, expected);
              }
            }
            ingestChecked(staged, expected);
            expect(count(oracle.store.db, "tw_pending")).toBe(0);
            const got = log(staged.store.db);
            const want = log(oracle.store.db);
            if (eager) expect(withoutHlc(got)).toEqual(withoutHlc(want));
            else {
              // Coalescing only ever leaves entries out (a value changed and back, an
              // insert and its updates as one insert); row entries say the same.
              const cell = (e: Row) => `${e.tbl}|${String(e.pk)}|${e.col}`;
              const oracleCells = new Map(want.map((e) => [cell(e), e]));
              for (const e of got) expect(oracleCells.has(cell(e))).toBe(true);
              const rowsState = (rows: Row[]) =>
                rows.filter((e) => e.col === "").map((e) => [cell(e), e.val]);
              expect(rowsState(got)).toEqual(rowsState(want));
              // What the log serves rebuilds the tables the oracle holds.
              const fresh = replica("f", join(dir, `f${run}.db`), { ingestIntervalMs: 0 });
              try {
                fresh.apply(staged.changesSince(0, { limit: 100_000 }).changes);
                for (const t of TABLES) {
                  const order = t === "pairs" ? "x, y" : "id";
                  expect(dump(fresh.store.db, t, order)).toBe(dump(oracle.store.db, t, order));
                }
              } finally {
                fresh.close();
              }
            }
            for (const e of got) expect(e.hlc).toBe(expected.get(e.seq as bigint));
            const seqOf = (db: Database.Database) => db.prepare("SELECT seq FROM tw_clock").pluck().get();
            expect(seqOf(staged.store.db)).toBe(seqOf(oracle.store.db));
          } finally {
            staged.close();
            oracle.close();
          }
        },
      ),
      { numRuns: 120 },
    );
  });

  it("replaces the direct-capture triggers when a replica opens, keeping their log", () => {
    const path = join(tempDir(), "direct.db");
    const old = Replica.open(path, { nodeId: "a", ingestIntervalMs: 0 });
    old.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER)");
    old.track("items", { bucket: "shop" });
    installDirectTriggers(old.store.db, 1, readTable(old.store.db, "items"));
    old.store.db.prepare("INSERT INTO items VALUES (1, 5)").run();
    expect(count(old.store.db, "tw_log")).toBe(1);
    old.close();
    const r = Replica.open(path, { nodeId: "a", ingestIntervalMs: 0 });
    const triggers = r.store.db
      .prepare("SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'items'")
      .pluck()
      .all() as string[];
    expect(triggers).toHaveLength(4);
    for (const t of triggers) expect(t).toMatch(/tw_pending/);
    r.store.db.prepare("UPDATE items SET qty = 6 WHERE id = 1").run();
    expect(count(r.store.db, "tw_pending")).toBe(1);
    expect(r.tables()).toMatchObject([{ table: "items", bucket: "shop" }]);
    expect(r.changesSince(0).changes.map((c) => [c.op, c.seq, c.columns])).toEqual([
      ["insert", 1, {}],
      ["update", 2, { qty: 6 }],
    ]);
    r.close();
  });

  it("logs staged writes in the transaction that rebuilds the triggers, before untrack forgets them", () => {
    const r = Replica.open(join(tempDir(), "retrack.db"), { nodeId: "a", ingestIntervalMs: 0 });
    const db = r.store.db;
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
    r.track("items");
    db.prepare("INSERT INTO items VALUES (1, 'pen', 1)").run();
    // Logged before the update: one key's events between two ingests coalesce.
    r.ingest();
    db.prepare("UPDATE items SET qty = 2 WHERE id = 1").run();
    db.exec("ALTER TABLE items ADD COLUMN note TEXT");
    expect(r.track("items").columns).toEqual(["name", "qty", "note"]);
    expect(count(db, "tw_pending")).toBe(0);
    expect(db.prepare("SELECT col, seq FROM tw_log ORDER BY seq, col").raw().all()).toEqual([
      ["", 1],
      ["qty", 2],
    ]);
    db.prepare("UPDATE items SET note = 'x' WHERE id = 1").run();
    expect(r.changesSince(2).changes.map((c) => [c.op, c.columns])).toEqual([["update", { note: "x" }]]);
    db.prepare("DELETE FROM items WHERE id = 1").run();
    expect(r.untrack("items")).toBe(true);
    expect(count(db, "tw_pending")).toBe(0);
    expect(count(db, "tw_log")).toBe(0);
    r.close();
  });

  it("gives each event an HLC no earlier than its write, increasing in capture order", () => {
    const r = Replica.open(join(tempDir(), "a.db"), { nodeId: "a", ingestIntervalMs: 0 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER)");
    r.track("items");
    const before = Date.now();
    r.store.db.prepare("INSERT INTO items VALUES (1, 0)").run();
    const insert = r.store.db.prepare("INSERT INTO items VALUES (?, 0)");
    r.store.write(() => {
      for (let i = 2; i <= 500; i++) insert.run(i);
    });
    const changes = r.changesSince(0, { limit: 1000 }).changes;
    expect(changes).toHaveLength(500);
    const hlcs = changes.map((c) => BigInt(`0x${c.hlc}`));
    for (let i = 1; i < hlcs.length; i++) expect(hlcs[i]).toBeGreaterThan(hlcs[i - 1] as bigint);
    // julianday keeps milliseconds; the conversion may round one down.
    expect(Number((hlcs[0] as bigint) >> 16n)).toBeGreaterThanOrEqual(before - 1);
    r.close();
  });

  it("stages writes from the sqlite3 shell, and logs them when the replica next reads", () => {
    const db = join(tempDir(), "shell.db");
    const r = Replica.open(db, { nodeId: "a", ingestIntervalMs: 0 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
    r.track("items");
    const cursor = r.changesSince(0).cursor;
    sql(
      db,
      "INSERT INTO items VALUES (1, 'pen', 2); UPDATE items SET qty = 3 WHERE id = 1; INSERT INTO items VALUES (2, 'cup', 1); DELETE FROM items WHERE id = 2;",
    );
    expect(count(r.store.db, "tw_pending")).toBe(4);
    const changes = r.changesSince(cursor).changes;
    // Row 1's insert and update, staged together, are logged as the insert they amount to.
    expect(changes.map((c) => [c.op, c.pk, c.columns])).toEqual([
      ["insert", [1], { name: "pen", qty: 3 }],
      ["delete", [2], {}],
    ]);
    expect(r.stats()).toMatchObject({ staged: 0, rows: 1, tombstones: 1 });
    r.close();
  });

  it("ingests on a timer while open, and on close", async () => {
    const path = join(tempDir(), "timer.db");
    const r = Replica.open(path, { nodeId: "a", ingestIntervalMs: 20 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER)");
    r.track("items");
    r.store.db.prepare("INSERT INTO items VALUES (1, 0)").run();
    expect(count(r.store.db, "tw_pending")).toBe(1);
    await waitFor(() => count(r.store.db, "tw_pending") === 0, "the timer's ingest");
    expect(count(r.store.db, "tw_log")).toBe(1);
    const quiet = Replica.open(join(tempDir(), "quiet.db"), { nodeId: "b", ingestIntervalMs: 0 });
    quiet.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER)");
    quiet.track("items");
    quiet.store.db.prepare("INSERT INTO items VALUES (1, 0)").run();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(count(quiet.store.db, "tw_pending")).toBe(1);
    quiet.close();
    r.store.db.prepare("INSERT INTO items VALUES (2, 0)").run();
    r.close();
    const after = Replica.open(path, { nodeId: "a", ingestIntervalMs: 0 });
    expect(count(after.store.db, "tw_pending")).toBe(0);
    expect(count(after.store.db, "tw_log")).toBe(2);
    after.close();
  });

  it("ingests a large backlog a chunk per transaction, and refuses a bad chunk size", () => {
    const path = join(tempDir(), "bulk.db");
    expect(() => Replica.open(path, { nodeId: "a", ingestChunk: 0 })).toThrow(/ingestChunk/);
    expect(() => Replica.open(path, { nodeId: "a", ingestChunk: 1.5 })).toThrow(/ingestChunk/);
    const r = Replica.open(path, { nodeId: "a", ingestIntervalMs: 0, ingestChunk: 1000 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER)");
    r.track("items");
    // As a bulk load from another program would: 10,500 staged events.
    r.store.db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10500)
      INSERT INTO items SELECT i, i FROM n`);
    // The third chunk fails: the first two stay committed, the rest staged.
    r.store.db.exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON main.tw_log WHEN NEW.pk = 2500
      BEGIN SELECT RAISE(ABORT, 'boom'); END`);
    expect(() => r.ingest()).toThrow(/boom/);
    expect([count(r.store.db, "tw_log"), count(r.store.db, "tw_pending")]).toEqual([2000, 8500]);
    r.store.db.exec("DROP TRIGGER temp.boom");
    expect(r.ingest()).toBe(8500);
    expect(r.stats()).toMatchObject({ rows: 10_500, staged: 0, lastSeq: 10_500 });
    r.close();
  });

  it("wakes a hub's live subscribers when another program's write is staged", async () => {
    const path = join(tempDir(), "hub.db");
    const r = Replica.open(path, { nodeId: "hub", ingestIntervalMs: 0 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
    r.track("items", { bucket: "shop" });
    const hub = new Hub(r);
    const told: string[][] = [];
    hub.on("changes", (buckets) => told.push(buckets));
    const stop = hub.watchLocalWrites(10);
    sql(path, "INSERT INTO items VALUES (1, 'from the shell');");
    // The watch looks every 10 ms; 20 s only leaves a loaded machine room (a hub that never noticed
    // fails all the same).
    await waitFor(() => told.length > 0, "the hub's notice", { timeoutMs: 20_000 });
    expect(told).toEqual([["shop"]]);
    expect(count(r.store.db, "tw_pending")).toBe(0);
    stop();
    r.close();
  });

  it("loses nothing when the writing process is killed before it ingested", async () => {
    const db = join(tempDir(), "killed.db");
    const r = Replica.open(db, { nodeId: "a", ingestIntervalMs: 0 });
    r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
    r.track("items");
    r.close();
    const script = `
      const { Replica } = await import(${JSON.stringify(join(process.cwd(), "src/replica/replica.ts"))});
      const r = Replica.open(${JSON.stringify(db)}, { ingestIntervalMs: 0 });
      const insert = r.store.db.prepare("INSERT INTO items VALUES (?, ?)");
      for (let i = 1; i <= 300; i++) r.store.write(() => insert.run(i, "item " + i));
      r.store.db.prepare("UPDATE items SET name = 'changed' WHERE id <= 10").run();
      process.stdout.write("written\\n");
      setInterval(() => {}, 1000);`;
    const child = runNode(["--import", "tsx", "--input-type=module", "-e", script]);
    let out = "";
    child.child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(() => out.includes("written"), "the child's writes", { timeoutMs: 20_000 });
    child.child.kill("SIGKILL");
    const run = await child;
    expect(run.code).toBeNull();
    const again = Replica.open(db, { nodeId: "a", ingestIntervalMs: 0 });
    expect(count(again.store.db, "tw_pending")).toBe(310);
    const changes = again.changesSince(0, { limit: 1000 }).changes;
    const inserts = changes.filter((c) => c.op === "insert");
    expect(inserts).toHaveLength(300);
    // Each of rows 1-10 was inserted and updated before any ingest: one insert of its last values.
    expect(inserts.filter((c) => c.columns.name === "changed").map((c) => c.pk[0])).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    ]);
    expect(again.stats()).toMatchObject({ rows: 300, staged: 0 });
    again.close();
  });
});
