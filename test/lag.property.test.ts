/**
 * Lag's invariant, as a property over real SQLite files: for any history of
 * local writes and changes applied from other nodes (relayed ones included,
 * whose source is not their origin), in two buckets, and any
 * reader (cursor, buckets, node), readLag counts exactly the changes
 * `changesSince` would send that reader, dates the oldest by its HLC, and
 * stands head − cursor behind; many readers in one call answer as each
 * alone does.
 */
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hlcMillis, parseHlc } from "../src/replica/hlc.js";
import { type LagQuery, readLag } from "../src/replica/lag.js";
import { Replica } from "../src/replica/replica.js";
import { useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-lag-");
const RUNS = 40;
const NODES = ["n-peer-a", "n-peer-b"];

/** One step of history: a local write, or a write on a peer whose changes this replica applies. */
const step = fc.record({
  // "relay": peer a takes peer b's changes, so what it sends on carries b's origin and a as source.
  where: fc.constantFrom("local", "relay", ...NODES),
  table: fc.constantFrom("t1", "t2"),
  id: fc.integer({ min: 1, max: 6 }),
  op: fc.constantFrom("upsert", "delete"),
});
const reader = fc.record({
  cursorAt: fc.double({ min: 0, max: 1, noNaN: true }),
  buckets: fc.constantFrom(null, ["b1"], ["b2"], ["b1", "b2"]),
  node: fc.constantFrom(null, ...NODES),
});

function open(path: string, nodeId: string): Replica {
  const r = Replica.open(path, { nodeId, ingestIntervalMs: 0 });
  r.store.db.exec(
    "CREATE TABLE t1 (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE t2 (id INTEGER PRIMARY KEY, v TEXT)",
  );
  r.track("t1", { bucket: "b1" });
  r.track("t2", { bucket: "b2" });
  return r;
}

function write(r: Replica, s: { table: string; id: number; op: string }, n: number): void {
  if (s.op === "delete") r.store.db.prepare(`DELETE FROM ${s.table} WHERE id = ?`).run(s.id);
  else
    r.store.db
      .prepare(`INSERT INTO ${s.table} VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v`)
      .run(s.id, `v${n}`);
}

describe("readLag", () => {
  it("counts what changesSince would send each reader, and dates the oldest", () => {
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 30 }),
        fc.array(reader, { minLength: 1, maxLength: 4 }),
        (steps, readers) => {
          const dir = tempDir();
          const local = open(join(dir, "local.db"), "n-local");
          const peers = new Map(NODES.map((id) => [id, open(join(dir, `${id}.db`), id)]));
          const sent = new Map(NODES.map((id) => [id, "0"]));
          let relayed = "0";
          try {
            steps.forEach((s, n) => {
              if (s.where === "local") {
                write(local, s, n);
                local.ingest();
                return;
              }
              if (s.where === "relay") {
                const [a, b] = NODES.map((id) => peers.get(id)!);
                a!.apply(b!.changesSince(relayed, { limit: 10_000 }).changes, { from: NODES[1] });
                relayed = b!.head();
                return;
              }
              const peer = peers.get(s.where)!;
              write(peer, s, n);
              // b reaches this replica mostly through a (as through a hub), sometimes directly.
              if (s.where === NODES[1] && n % 3 !== 0) return;
              const set = peer.changesSince(sent.get(s.where)!, { limit: 10_000, excludeOrigin: "n-local" });
              local.apply(set.changes, { from: s.where });
              sent.set(s.where, set.cursor);
            });
            const head = Number(local.head());
            // Cursors on sequences the log holds (and 0): where an off-by-one would count one too many.
            const seqs = [
              0,
              ...(local.store.db
                .prepare("SELECT DISTINCT seq FROM tw_log ORDER BY seq")
                .pluck()
                .all() as number[]),
            ];
            const queries: LagQuery[] = readers.map((r, i) => ({
              key: `r${i}`,
              cursor: String(seqs[Math.min(seqs.length - 1, Math.floor(r.cursorAt * seqs.length))]),
              buckets: r.buckets ? [...r.buckets] : null,
              node: r.node,
            }));
            const all = readLag(local.store.db, queries);
            for (const q of queries) {
              const want = local.changesSince(q.cursor, {
                limit: 100_000,
                ...(q.buckets ? { buckets: q.buckets } : {}),
                ...(q.node ? { excludeOrigin: q.node, excludeSource: q.node } : {}),
              }).changes;
              const oldest = want.length ? Math.min(...want.map((c) => hlcMillis(parseHlc(c.hlc)))) : null;
              const expected = {
                head,
                cursor: Number(q.cursor),
                seqBehind: head - Number(q.cursor),
                changes: new Set(want.map((c) => c.seq)).size,
                oldestAt: oldest,
              };
              expect(all.get(q.key)).toEqual(expected);
              expect(readLag(local.store.db, [q]).get(q.key)).toEqual(expected);
            }
          } finally {
            local.close();
            for (const p of peers.values()) p.close();
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("answers a cursor that is not a sequence number as null, not a guess", () => {
    const local = open(join(tempDir(), "local.db"), "n-local");
    try {
      const lag = readLag(local.store.db, [
        { key: "stream", cursor: "1700000000000-0", buckets: null, node: null },
        { key: "ok", cursor: "0", buckets: null, node: null },
      ]);
      expect(lag.get("stream")).toBeNull();
      expect(lag.get("ok")).toEqual({ head: 0, cursor: 0, seqBehind: 0, changes: 0, oldestAt: null });
    } finally {
      local.close();
    }
  });
});
