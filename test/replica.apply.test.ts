/**
 * Apply: per-column last-writer-wins, tombstones and the resurrection rule,
 * relaying with original clocks, idempotence, whole-batch refusal of bad
 * batches (nothing applied), the clock's drift limit and receive rule,
 * changesSince paging and filters, and changes for a column the receiver does
 * not have yet.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ClockDriftError, InvalidArgumentError, InvalidChangeError, Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { formatHlc } from "../src/replica/hlc.js";
import { sleep, useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-apply-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

function open(nodeId: string, options: { maxDriftMs?: number } = {}): Replica {
  const r = Replica.open(join(tempDir(), `${nodeId}.db`), { nodeId, ...options });
  r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
  r.track("items");
  opened.push(r);
  return r;
}

/** One write, logged at once: each key's events are logged one at a time (ingest coalesces a key's events between two ingests). */
function run(r: Replica, sql: string, ...params: unknown[]): void {
  r.store.db.prepare(sql).run(...params);
  r.ingest();
}

function rows(r: Replica): unknown[] {
  return r.store.db.prepare("SELECT * FROM items ORDER BY id").all();
}

function all(r: Replica): Change[] {
  return r.changesSince(0, { limit: 100_000 }).changes;
}

/** A log snapshot without the local sequence numbers. */
function logOf(r: Replica): unknown[] {
  return r.store.db
    .prepare("SELECT tbl, pk, col, val, hlc, origin, seq FROM tw_log ORDER BY tbl, pk, col")
    .all();
}

function sync(from: Replica, to: Replica): void {
  to.apply(from.changesSince(0, { excludeOrigin: to.nodeId, limit: 100_000 }).changes);
}

describe("last writer wins, per column", () => {
  it("merges concurrent updates of different columns, and keeps the later write of the same column", async () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    sync(a, b);
    run(a, "UPDATE items SET name = 'red pen' WHERE id = 1");
    run(b, "UPDATE items SET qty = 5 WHERE id = 1");
    // Unrelated writes on two nodes within one millisecond are concurrent; a
    // gap makes a's the later one.
    await sleep(3);
    run(a, "UPDATE items SET qty = 7 WHERE id = 1");
    sync(a, b);
    sync(b, a);
    expect(rows(a)).toEqual([{ id: 1, name: "red pen", qty: 7 }]);
    expect(rows(b)).toEqual(rows(a));
  });

  it("applies an older write after a newer one as a no-op", () => {
    const [a, b, c] = [open("a"), open("b"), open("c")];
    run(a, "INSERT INTO items VALUES (1, 'old', 1)");
    const older = all(a);
    run(a, "UPDATE items SET name = 'new' WHERE id = 1");
    const newer = all(a).slice(-1);
    c.apply(newer);
    c.apply(older);
    expect(rows(c)).toEqual([{ id: 1, name: "new", qty: 1 }]);
    b.apply(older);
    b.apply(newer);
    expect(rows(b)).toEqual(rows(c));
  });
});

describe("a batch of packed integer keys", () => {
  it("finds their entries by one range read, and leaves alone the other keys the range holds", () => {
    const [a, b] = [open("a"), open("b")];
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    a.store.write(() => {
      for (let id = 1; id <= 100; id++) insert.run(id, `item ${id}`, id);
    });
    b.apply(all(a));
    const seen = all(a).at(-1)!.seq;
    // a updates the odd keys 1-39 (20 keys within 4x their count: one range read on b) ...
    a.store.write(() => {
      for (let id = 1; id < 40; id += 2) run(a, "UPDATE items SET qty = qty + 1000 WHERE id = ?", id);
    });
    // ... while b writes key 3 later (a later millisecond: its clock is the greater): its
    // entry, found by the range read, must win.
    const after = Date.now() + 2;
    while (Date.now() < after) {}
    run(b, "UPDATE items SET qty = -3 WHERE id = 3");
    const odd = a.changesSince(seen).changes;
    expect(odd).toHaveLength(20);
    expect(b.apply(odd)).toEqual({ received: 20, applied: 19, quarantined: 0 });
    const qty = (r: Replica, id: number) =>
      r.store.db.prepare("SELECT qty FROM items WHERE id = ?").pluck().get(id);
    expect([qty(b, 1), qty(b, 2), qty(b, 3), qty(b, 39), qty(b, 40)]).toEqual([1001, 2, -3, 1039, 40]);
    b.apply(odd);
    expect(qty(b, 5)).toBe(1005);
  });
});

describe("deletes", () => {
  it("a delete hides the row and older writes; a later insert resurrects it", async () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    sync(a, b);
    run(b, "UPDATE items SET qty = 2 WHERE id = 1");
    await sleep(3); // so a's delete has the later clock
    run(a, "DELETE FROM items WHERE id = 1");
    sync(a, b);
    sync(b, a);
    expect(rows(a)).toEqual([]);
    expect(rows(b)).toEqual([]);
    expect(b.stats()).toMatchObject({ rows: 0, tombstones: 1, entries: 1 });
    run(b, "INSERT INTO items VALUES (1, 'again', 3)");
    sync(b, a);
    expect(rows(a)).toEqual([{ id: 1, name: "again", qty: 3 }]);
  });

  it("an update later than a delete it never saw does not resurrect the row (only an insert does)", async () => {
    const [a, b, c] = [open("a"), open("b"), open("c")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    sync(a, b);
    run(a, "DELETE FROM items WHERE id = 1");
    await sleep(3);
    run(b, "UPDATE items SET qty = 9 WHERE id = 1"); // a later clock than the delete
    for (const [x, y] of [
      [a, c],
      [b, c],
      [a, b],
      [b, a],
    ] as const)
      sync(x, y);
    expect([rows(a), rows(b), rows(c)]).toEqual([[], [], []]);
    // The update's entry outlives the tombstone (it is newer), but an insert
    // writes every column, so the re-insert's NULL wins over it everywhere.
    run(c, "INSERT INTO items (id, name) VALUES (1, 'back')");
    for (const r of [a, b]) sync(c, r);
    expect(rows(a)).toEqual([{ id: 1, name: "back", qty: null }]);
    expect(rows(b)).toEqual(rows(a));
  });
});

describe("relay and idempotence", () => {
  it("keeps a relayed change's HLC and origin, with a new local sequence", () => {
    const [a, b, c] = [open("a"), open("b"), open("c")];
    run(b, "INSERT INTO items VALUES (9, 'b', 0)");
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    const [fromA] = a.changesSince(0).changes;
    b.apply([fromA]);
    const relayed = b.changesSince(0, { excludeOrigin: "c" }).changes.find((x) => x.origin === "a");
    expect(relayed).toMatchObject({ hlc: fromA?.hlc, origin: "a", columns: fromA?.columns, seq: 2 });
    c.apply(b.changesSince(0).changes);
    expect(dump(c.store.db, "items", "id")).toBe(dump(b.store.db, "items", "id"));
    expect(b.changesSince(0, { excludeOrigin: "a" }).changes.map((x) => x.origin)).toEqual(["b"]);
  });

  it("applying a batch twice changes nothing", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
    run(a, "UPDATE items SET qty = 3 WHERE id = 1");
    run(a, "DELETE FROM items WHERE id = 2");
    const batch = all(a);
    expect(b.apply(batch)).toEqual({ received: 3, applied: 3, quarantined: 0 });
    const before = { rows: rows(b), log: logOf(b), stats: b.stats() };
    expect(b.apply(batch)).toEqual({ received: 3, applied: 0, quarantined: 0 });
    expect({ rows: rows(b), log: logOf(b), stats: b.stats() }).toEqual(before);
  });

  it("does not capture the apply as local writes", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    sync(a, b);
    expect(all(b).map((c) => c.origin)).toEqual(["a"]);
    expect(b.store.db.prepare("SELECT suppress FROM tw_clock").pluck().get()).toBe(0);
  });
});

describe("bad batches are refused whole", () => {
  const good = (): Change => ({
    table: "items",
    pk: [5],
    op: "insert",
    columns: { name: "ok", qty: 1 },
    hlc: formatHlc(BigInt(Date.now()) << 16n),
    origin: "z",
    seq: 1,
  });

  const cases: Array<[string, (c: Change) => unknown, RegExp]> = [
    ["wrong key arity", (c) => ({ ...c, pk: [5, 6] }), /key of 2 parts; items has 1/],
    [
      "malformed value",
      (c) => ({ ...c, columns: { qty: { real: "NaN" } } }),
      /malformed value for column "qty"/,
    ],
    ["big number", (c) => ({ ...c, columns: { qty: 2 ** 60 } }), /not a safe integer/],
    ["bad blob", (c) => ({ ...c, columns: { name: { blob: "!!" } } }), /not canonical base64/],
    ["NULL key", (c) => ({ ...c, pk: [null] }), /NULL key/],
    ["bad op", (c) => ({ ...c, op: "upsert" }), /has op "upsert"/],
    ["bad hlc", (c) => ({ ...c, hlc: "12" }), /not 16 lowercase hex digits/],
    ["bad origin", (c) => ({ ...c, origin: "" }), /not a node id/],
    ["delete with columns", (c) => ({ ...c, op: "delete" }), /delete that carries columns/],
    ["key as column", (c) => ({ ...c, columns: { id: 1 } }), /sets key column "id"/],
    ["not an object", () => 42, /changes\[1\] is not an object/],
  ];

  it("except a change for a table not tracked here: it is quarantined, and the rest applies", () => {
    const b = open("b");
    const r = b.apply([good(), { ...good(), table: "nope" }, { ...good(), pk: [6] }]);
    expect(r).toEqual({ received: 3, applied: 2, quarantined: 1 });
    expect(rows(b)).toHaveLength(2);
    const { quarantined } = b.conflicts();
    expect(quarantined).toMatchObject([
      { kind: "failed", table: "nope", pk: [5], reason: /not tracked here/ },
    ]);
    // Once the table exists and is tracked, the kept change applies.
    b.store.db.exec("CREATE TABLE nope (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
    b.track("nope");
    expect(b.retryQuarantined()).toBe(1);
    expect(b.store.db.prepare("SELECT name FROM nope").pluck().all()).toEqual(["ok"]);
    expect(b.conflicts().quarantined).toEqual([]);
  });

  for (const [name, spoil, message] of cases) {
    it(name, () => {
      const b = open("b");
      const before = { rows: rows(b), log: logOf(b), clock: b.now() };
      let err: unknown;
      try {
        b.apply([good(), spoil(good()), { ...good(), pk: [6] }]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidChangeError);
      expect((err as InvalidChangeError).index).toBe(1);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).toMatch(/the batch was refused and nothing applied/);
      expect({ rows: rows(b), log: logOf(b), clock: b.now() }).toEqual(before);
    });
  }

  it("a clock too far ahead, with an error naming the change and the drift", () => {
    const b = open("b", { maxDriftMs: 5_000 });
    const ahead = { ...good(), hlc: formatHlc(BigInt(Date.now() + 60_000) << 16n) };
    expect(() => b.apply([good(), ahead])).toThrow(ClockDriftError);
    expect(() => b.apply([good(), ahead])).toThrow(
      /changes\[1\].*ms ahead of local time, more than maxDriftMs 5000/,
    );
    expect(rows(b)).toEqual([]);
    const near = { ...good(), hlc: formatHlc(BigInt(Date.now() + 2_000) << 16n) };
    b.apply([near]);
    // The receive rule: the local clock is now past the remote one.
    expect(b.now() >= near.hlc).toBe(true);
    run(b, "UPDATE items SET qty = 2 WHERE id = 5");
    expect((all(b).at(-1)?.hlc ?? "") > near.hlc).toBe(true);
  });

  it("refuses a batch that is not an array", () => {
    const b = open("b");
    expect(() => b.apply({} as unknown as Change[])).toThrow(InvalidArgumentError);
  });
});

describe("foreign keys", () => {
  it("applies a batch whose child rows come before their parents", () => {
    const [a, b] = [open("a"), open("b")];
    // b applies once while no table declares a foreign key (so it defers none), then one does.
    run(a, "INSERT INTO items VALUES (2, 'cup', 1)");
    b.apply(all(a));
    for (const r of [a, b]) {
      r.store.db.exec(
        "CREATE TABLE lines (id INTEGER PRIMARY KEY, item INTEGER NOT NULL REFERENCES items (id))",
      );
      r.track("lines");
    }
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    run(a, "INSERT INTO lines VALUES (10, 1)");
    b.apply(all(a).reverse());
    expect(b.store.db.prepare("SELECT * FROM lines").all()).toEqual([{ id: 10, item: 1 }]);
    // A child whose parent this replica has never seen is held until the parent arrives.
    const orphan = { ...all(a).find((c) => c.table === "lines")!, pk: [11], columns: { item: 99 } };
    expect(b.apply([orphan])).toMatchObject({ applied: 0, quarantined: 1 });
    expect(b.store.db.prepare("SELECT count(*) FROM lines").pluck().get()).toBe(1);
    expect(b.conflicts().quarantined).toMatchObject([
      { kind: "held", table: "lines", waits: { table: "items", pk: [99] } },
    ]);
    run(a, "INSERT INTO items VALUES (99, 'box', 1)");
    b.apply(a.changesSince(0).changes.filter((c) => c.table === "items"));
    expect(b.store.db.prepare("SELECT * FROM lines ORDER BY id").all()).toEqual([
      { id: 10, item: 1 },
      { id: 11, item: 99 },
    ]);
    expect(b.conflicts().quarantined).toEqual([]);
  });
});

describe("changesSince", () => {
  it("pages by whole changes, with a cursor to resume and hasMore", () => {
    const a = open("a");
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, 'x', 1)");
    for (let i = 1; i <= 5; i++) insert.run(i);
    const p1 = a.changesSince("0", { limit: 2 });
    expect(p1.changes.map((c) => c.pk[0])).toEqual([1, 2]);
    expect(p1.hasMore).toBe(true);
    const p2 = a.changesSince(p1.cursor, { limit: 2 });
    const p3 = a.changesSince(p2.cursor, { limit: 2 });
    expect(p3).toMatchObject({ hasMore: false, cursor: "5" });
    expect([...p2.changes, ...p3.changes].map((c) => c.pk[0])).toEqual([3, 4, 5]);
    expect(a.changesSince(p3.cursor)).toEqual({ changes: [], cursor: "5", hasMore: false });
  });

  it("filters by bucket and origin, and moves the cursor past what it filtered out", () => {
    const a = open("a");
    a.store.db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)");
    a.track("notes", { bucket: "private" });
    run(a, "INSERT INTO items VALUES (1, 'x', 1)");
    run(a, "INSERT INTO notes VALUES (1, 'secret')");
    expect(a.changesSince(0, { buckets: ["default"] }).changes.map((c) => c.table)).toEqual(["items"]);
    expect(a.changesSince(0, { buckets: ["private"] }).changes.map((c) => c.table)).toEqual(["notes"]);
    expect(a.changesSince(0, { excludeOrigin: "a" })).toEqual({ changes: [], cursor: "2", hasMore: false });
  });

  it("validates its arguments", () => {
    const a = open("a");
    expect(() => a.changesSince("-1")).toThrow(InvalidArgumentError);
    expect(() => a.changesSince("x")).toThrow(/cursor/);
    expect(() => a.changesSince(0, { limit: 0 })).toThrow(/limit/);
    expect(() => a.changesSince(0, { buckets: [""] })).toThrow(/buckets\[0\]/);
    expect(() => a.changesSince(0, { excludeOrigin: "a b" })).toThrow(/excludeOrigin/);
  });
});

describe("schema change", () => {
  it("keeps changes for a column the receiver lacks and applies them once it exists", () => {
    const [a, b] = [open("a"), open("b")];
    run(a, "INSERT INTO items VALUES (1, 'pen', 1)");
    sync(a, b);
    a.store.db.exec("ALTER TABLE items ADD COLUMN color TEXT");
    a.track("items");
    run(a, "UPDATE items SET color = 'red', qty = 2 WHERE id = 1");
    run(a, "INSERT INTO items VALUES (2, 'cup', 1, 'blue')");
    sync(a, b);
    expect(rows(b)).toEqual([
      { id: 1, name: "pen", qty: 2 },
      { id: 2, name: "cup", qty: 1 },
    ]);
    expect(b.stats().pending).toBe(2);
    // The receiver's own writes meanwhile are captured as usual.
    run(b, "UPDATE items SET name = 'fountain pen' WHERE id = 1");
    b.store.db.exec("ALTER TABLE items ADD COLUMN color TEXT");
    b.track("items");
    expect(rows(b)).toEqual([
      { id: 1, name: "fountain pen", qty: 2, color: "red" },
      { id: 2, name: "cup", qty: 1, color: "blue" },
    ]);
    expect(b.stats().pending).toBe(0);
    run(b, "UPDATE items SET color = 'green' WHERE id = 2");
    sync(b, a);
    expect(rows(a)).toEqual(rows(b));
  });
});
