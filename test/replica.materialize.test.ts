/**
 * Materialize: the fingerprint an applied row's log entry carries is the
 * fingerprint of what its table holds — whether the applier computed it from
 * the values it wrote or read it back (a column's affinity converted a value,
 * a trigger of the application's rewrote the row) — so the receiver's next
 * local write of the row is logged as exactly what it changed.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { fingerprint } from "../src/replica/fingerprint.js";
import type { SqlValue } from "../src/replica/values.js";
import { useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-materialize-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

function open(nodeId: string, schema: string): Replica {
  const r = Replica.open(join(tempDir(), `${nodeId}.db`), { nodeId });
  r.store.db.exec(schema);
  r.track("conv");
  opened.push(r);
  return r;
}

function sync(from: Replica, to: Replica): void {
  const changes = from.changesSince(0, { limit: 10_000 }).changes;
  to.apply(JSON.parse(JSON.stringify(changes)) as Change[]);
}

/** Keys whose live row entry's fingerprint differs from the fingerprint of the table's row. */
function stale(r: Replica): unknown[] {
  const db = r.store.db;
  const rows = db
    .prepare("SELECT id, a, b, c, d, e FROM conv")
    .raw(true)
    .safeIntegers(true)
    .all() as SqlValue[][];
  const fps = db
    .prepare("SELECT pk, fp FROM tw_log WHERE col = '' AND val = 1")
    .raw(true)
    .safeIntegers(true)
    .all() as Array<[bigint, Uint8Array | null]>;
  const byKey = new Map(fps.map(([pk, fp]) => [pk, fp]));
  return rows
    .filter(([id, ...values]) => {
      const fp = byKey.get(id as bigint);
      return !fp || !Buffer.from(fp).equals(fingerprint(values));
    })
    .map(([id]) => id);
}

/** The log entries a no-op local UPDATE of every row writes on this replica (none, if fingerprints are right). */
function noOpLogs(r: Replica): number {
  const before = r.stats().lastSeq;
  r.store.db.exec("UPDATE conv SET a = a, b = b, c = c, d = d, e = e");
  r.ingest();
  return r.store.db.prepare("SELECT count(*) FROM tw_log WHERE seq > ?").pluck().get(before) as number;
}

// The source's columns have no type: it keeps every value as given, the receiver's convert some.
const UNTYPED = "CREATE TABLE conv (id INTEGER PRIMARY KEY, a, b, c, d, e)";
const TYPED = "CREATE TABLE conv (id INTEGER PRIMARY KEY, a INTEGER, b REAL, c TEXT, d NUMERIC, e DATETIME)";

function write(src: Replica): void {
  const insert = src.store.db.prepare("INSERT INTO conv VALUES (?, ?, ?, ?, ?, ?)");
  src.store.write(() => {
    // Values each typed column keeps as they are.
    insert.run(1, 7n, 1.5, "text", 2.5, "2026-12-03 10:00:00");
    insert.run(2, null, null, null, null, Buffer.from([1, 2]));
    // Values the typed columns convert: numeric text, integral and negative-zero reals, integers to text or real.
    insert.run(3, "42", 3n, 5n, " 1.5e3 ", -0);
    insert.run(4, 2.0, "2", 1.25, 10.0, "7");
  });
  src.ingest();
}

describe("an applied row's fingerprint", () => {
  it("is what the table holds, converted values included, for inserts and column updates", () => {
    const src = open("src", UNTYPED);
    const dst = open("dst", TYPED);
    write(src);
    sync(src, dst);
    expect(stale(dst)).toEqual([]);
    // Column updates of existing rows: an UPDATE of those columns only.
    src.store.db.exec("UPDATE conv SET b = '9', c = 'x' WHERE id IN (1, 3)");
    src.store.db.exec("UPDATE conv SET a = 3.0 WHERE id = 2");
    src.ingest();
    sync(src, dst);
    expect(stale(dst)).toEqual([]);
    expect(noOpLogs(dst)).toBe(0);
    // The same rows in a table that converts nothing.
    const plain = open("plain", UNTYPED);
    sync(src, plain);
    expect(stale(plain)).toEqual([]);
    expect(noOpLogs(plain)).toBe(0);
  });

  it("is read back when a trigger of the application's rewrites the row", () => {
    const src = open("src", UNTYPED);
    const dst = open("dst", UNTYPED);
    dst.store.db.exec(
      "CREATE TRIGGER stamp AFTER INSERT ON conv BEGIN UPDATE conv SET e = 'stamped' WHERE id = NEW.id; END",
    );
    write(src);
    sync(src, dst);
    expect(dst.store.db.prepare("SELECT DISTINCT e FROM conv").pluck().all()).toEqual(["stamped"]);
    expect(stale(dst)).toEqual([]);
    expect(noOpLogs(dst)).toBe(0);
  });
});
