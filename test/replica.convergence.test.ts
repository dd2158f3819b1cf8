/**
 * Convergence, the invariant of "the path of one change": replicas that have
 * seen the same set of changes hold the same rows, whatever the order,
 * duplication or batching of delivery. 3 to 5 replicas on real files write
 * overlapping keys (inserts, re-inserts, updates, deletes) with values of every
 * storage class, exchange random subsets of their logs in random order, with
 * duplicates and random batch sizes, then sync to quiescence through paged,
 * origin-filtered pulls (half of the runs also leave out what the puller sent,
 * by source, as sync does); every replica must end with identical rows and
 * storage types. One more node is a relay (a hub) that has none of the tables:
 * it takes part in every exchange like the others, keeping and serving the log
 * it cannot materialise.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Replica } from "../src/replica/replica.js";
import type { SqlValue } from "../src/replica/values.js";
import { dump, gossip, syncToQuiescence, templated } from "./replica-helpers.js";

const RUNS = 500;
const root = mkdtempSync(join(tmpdir(), "tidewire-converge-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const replicaFor = templated(root, (r) => {
  // Untyped value columns: every value keeps the storage class it was written with.
  r.store.db.exec(`
    CREATE TABLE t (id INTEGER PRIMARY KEY, a, b);
    CREATE TABLE c (k1 TEXT, k2 INTEGER, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;
  `);
  r.track("t");
  r.track("c", { bucket: "pairs" });
});
const relayFor = templated(root, () => {});

const value: fc.Arbitrary<SqlValue> = fc.oneof(
  fc.constant(null),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.integer({ min: -3, max: 3 }).map(BigInt),
  // -0 is left out: SQLite holds 0.0 and -0.0 equal, so an update between them is no change.
  fc.double({ noNaN: true }).filter((d) => !Object.is(d, -0)),
  fc.constantFrom(1.0, 2.5),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a)),
);

type Step =
  | { kind: "upsert"; r: number; table: "t" | "c"; key: number; x: SqlValue; y: SqlValue; partial: boolean }
  | { kind: "update"; r: number; table: "t" | "c"; key: number; col: 0 | 1; x: SqlValue }
  | { kind: "delete"; r: number; table: "t" | "c"; key: number }
  | { kind: "sync"; from: number; to: number; seed: number };

const table = fc.constantFrom<"t" | "c">("t", "c");
const key = fc.nat(2);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("upsert" as const),
    r: fc.nat(4),
    table,
    key,
    x: value,
    y: value,
    partial: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("update" as const),
    r: fc.nat(4),
    table,
    key,
    col: fc.constantFrom(0, 1) as fc.Arbitrary<0 | 1>,
    x: value,
  }),
  fc.record({ kind: fc.constant("delete" as const), r: fc.nat(4), table, key }),
  fc.record({ kind: fc.constant("sync" as const), from: fc.nat(5), to: fc.nat(5), seed: fc.integer() }),
);

const C_KEYS: Array<[string, bigint]> = [
  ["x", 1n],
  ["x", 2n],
  ["y", 1n],
];

function write(r: Replica, s: Exclude<Step, { kind: "sync" }>): void {
  const db = r.store.db;
  const k = s.table === "t" ? [BigInt(s.key + 1)] : C_KEYS[s.key]!;
  const where = s.table === "t" ? "id = ?" : "k1 = ? AND k2 = ?";
  if (s.kind === "upsert") {
    if (s.table === "t") {
      if (s.partial) db.prepare("INSERT OR REPLACE INTO t (id, a) VALUES (?, ?)").run(...k, s.x);
      else db.prepare("INSERT OR REPLACE INTO t (id, a, b) VALUES (?, ?, ?)").run(...k, s.x, s.y);
    } else db.prepare("INSERT OR REPLACE INTO c (k1, k2, v) VALUES (?, ?, ?)").run(...k, s.x);
  } else if (s.kind === "update") {
    const col = s.table === "t" ? (s.col === 0 ? "a" : "b") : "v";
    db.prepare(`UPDATE ${s.table} SET ${col} = ? WHERE ${where}`).run(s.x, ...k);
  } else {
    db.prepare(`DELETE FROM ${s.table} WHERE ${where}`).run(...k);
  }
}

let runId = 0;

describe("convergence", () => {
  it(`holds for ${RUNS} random histories of 3 to 5 replicas`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 5 }),
        fc.array(step, { maxLength: 30 }),
        fc.integer(),
        fc.boolean(),
        (n, steps, finalSeed, bySource) => {
          const dir = join(root, `run-${runId++}`);
          mkdirSync(dir);
          const replicas = Array.from({ length: n }, (_, i) => replicaFor(`n${i}`, join(dir, `r${i}.db`)));
          const nodes = [...replicas, relayFor("hub", join(dir, "hub.db"), { relay: true })];
          try {
            for (const s of steps) {
              if (s.kind === "sync") {
                const from = nodes[s.from % nodes.length]!;
                const to = nodes[s.to % nodes.length]!;
                if (from !== to) gossip(from, to, s.seed);
              } else write(replicas[s.r % n]!, s);
            }
            syncToQuiescence(nodes, finalSeed, bySource);
            const first = replicas[0]!;
            const want = [dump(first.store.db, "t", "id"), dump(first.store.db, "c", "k1, k2")];
            for (const r of replicas.slice(1)) {
              expect([dump(r.store.db, "t", "id"), dump(r.store.db, "c", "k1, k2")], r.nodeId).toEqual(want);
            }
          } finally {
            for (const r of nodes) r.close();
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: RUNS },
    );
    // 500 histories of up to 6 databases take about a minute on a busy 2-core machine.
  }, 300_000);
});
