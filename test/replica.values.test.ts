/**
 * Values: every SQLite value round-trips exactly from one replica to another
 * through JSON — BLOBs byte for byte, integers to the ends of 64 bits, REALs
 * (1.0 stays REAL, -0, infinities, subnormals), NULL, TEXT with any code point
 * including U+0000 — as a column value and as a key. And the wire codec
 * refuses what is malformed.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Change } from "../src/replica/change.js";
import {
  compareValues,
  decodeKey,
  encodeKey,
  fromWire,
  keyString,
  type SqlValue,
  toWire,
  typeName,
} from "../src/replica/values.js";
import { templated } from "./replica-helpers.js";

const root = mkdtempSync(join(tmpdir(), "tidewire-values-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const replicaFor = templated(root, (r) => {
  r.store.db.exec("CREATE TABLE v (k PRIMARY KEY, a, b); CREATE TABLE c (k1, k2, x, PRIMARY KEY (k1, k2))");
  r.track("v");
  r.track("c");
});

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const real = fc.oneof(
  fc.double({ noNaN: true }),
  fc.constantFrom(
    1.0,
    -0,
    0.1,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ),
);
const text = fc.string({ unit: "binary", maxLength: 12 });
const blob = fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a));
const value: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.constant(null),
  int64,
  fc.constantFrom(-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n),
  real,
  text,
  blob,
);
const compositePart: fc.Arbitrary<SqlValue> = fc.oneof(
  int64,
  fc.string({ unit: "binary", maxLength: 6 }).filter((s) => !s.includes("\0")),
  blob,
);

function read(db: import("better-sqlite3").Database, sql: string): unknown[] {
  return (db.prepare(sql).safeIntegers(true).raw(true).all() as SqlValue[][]).map((r) => r.map(toWire));
}

let runId = 0;

describe("values round-trip between replicas, through JSON", () => {
  it("as column values and keys, with their storage classes", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.tuple(
            value.filter((k) => k !== null),
            value,
            value,
          ),
          {
            maxLength: 12,
            selector: ([k]) => keyString(k),
          },
        ),
        fc.uniqueArray(fc.tuple(compositePart, compositePart, value), {
          maxLength: 6,
          selector: ([k1, k2]) => `${keyString(k1)}|${keyString(k2)}`,
        }),
        (rows, pairs) => {
          const dir = join(root, `run-${runId++}`);
          mkdirSync(dir);
          const a = replicaFor("a", join(dir, "a.db"));
          const b = replicaFor("b", join(dir, "b.db"));
          try {
            const insert = a.store.db.prepare("INSERT INTO v VALUES (?, ?, ?)");
            for (const r of rows) insert.run(...r);
            const insertPair = a.store.db.prepare("INSERT INTO c VALUES (?, ?, ?)");
            for (const p of pairs) insertPair.run(...p);
            const wire = JSON.parse(JSON.stringify(a.changesSince(0, { limit: 1000 }).changes)) as Change[];
            b.apply(wire);
            const q = "SELECT k, a, b, typeof(k), typeof(a), typeof(b) FROM v ORDER BY k";
            const qc = "SELECT k1, k2, x, typeof(x) FROM c ORDER BY k1, k2";
            expect(read(b.store.db, q)).toEqual(read(a.store.db, q));
            expect(read(b.store.db, qc)).toEqual(read(a.store.db, qc));
            // And exactly what was written, not merely the same on both sides.
            const got = new Map(
              (
                b.store.db.prepare("SELECT k, a, b FROM v").safeIntegers(true).raw(true).all() as SqlValue[][]
              ).map((r) => [keyString(r[0] as SqlValue), r]),
            );
            for (const r of rows) {
              const row = got.get(keyString(r[0]))!;
              for (let i = 0; i < 3; i++) expect(compareValues(row[i] as SqlValue, r[i] as SqlValue)).toBe(0);
            }
          } finally {
            a.close();
            b.close();
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("the wire codec", () => {
  it("round-trips every value, and keeps REAL 1.0 apart from INTEGER 1", () => {
    fc.assert(
      fc.property(value, (v) => {
        const back = fromWire(JSON.parse(JSON.stringify(toWire(v))));
        expect(typeName(back)).toBe(typeName(v));
        expect(compareValues(back, v)).toBe(0);
      }),
      { numRuns: 2000 },
    );
    expect(toWire(1.0)).toEqual({ real: 1 });
    expect(toWire(1n)).toBe(1);
    expect(toWire(2n ** 60n)).toEqual({ int: "1152921504606846976" });
    expect(toWire(-0)).toEqual({ real: "-0" });
  });

  it("refuses malformed values, saying what is wrong", () => {
    const bad: Array<[unknown, RegExp]> = [
      [1.5, /not a safe integer/],
      [2 ** 60, /not a safe integer/],
      [true, /is not a value/],
      [[1], /is not a value/],
      [{ int: "1.5" }, /not a decimal/],
      [{ int: "01" }, /not a decimal/],
      [{ int: "9223372036854775808" }, /outside the 64-bit range/],
      [{ real: "NaN" }, /not a number/],
      [{ real: Number.NaN }, /not a number/],
      [{ blob: "abc" }, /not canonical base64/],
      [{ blob: 12 }, /not canonical base64/],
      [{ int: "1", real: 1 }, /exactly one of/],
      [{ text: "x" }, /exactly one of/],
    ];
    for (const [w, message] of bad) expect(() => fromWire(w), JSON.stringify(w)).toThrow(message);
  });

  it("encodes composite keys as SQLite's quote() does, and decodes them back", () => {
    fc.assert(
      fc.property(fc.array(compositePart, { minLength: 2, maxLength: 4 }), (parts) => {
        const back = decodeKey(encodeKey(parts), parts.length);
        expect(back.map(toWire)).toEqual(parts.map(toWire));
      }),
      { numRuns: 1000 },
    );
    expect(encodeKey([1n, "it's, ok", Buffer.from([0xab])])).toBe("1,'it''s, ok',X'AB'");
    expect(() => decodeKey("1,'x'", 3)).toThrow(/2 parts, expected 3/);
  });
});
