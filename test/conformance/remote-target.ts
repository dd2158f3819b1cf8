/**
 * Contract: one suite every remote target backend passes (Litestream-style
 * replica conformance). A backend is one `RemoteBackend` value: how to make
 * a fresh target, how to read its rows and run SQL on it from outside
 * Tidewire, and whether it can be pulled from. The suite checks what every
 * target promises: one payload applied twice changes nothing, every SQLite
 * storage class survives full and incremental pushes, a resync replaces
 * whatever the target holds, the history records each payload key once, and
 * (pullable targets) an edit made on the target comes back merged per column.
 * A new backend is one more line in test/remote.conformance.test.ts.
 */
import type Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { openTarget } from "../../src/remote/open-target.js";
import { makePayload, type Payload, type TableSchema } from "../../src/remote/payload.js";
import { RemoteSync } from "../../src/remote/remote-sync.js";
import { useTempDirs } from "../helpers.js";
import { type Dump, runOps, sourceReplica, workloadArb } from "../remote-helpers.js";

/** A fresh target as the test reaches it from outside Tidewire. */
export interface TargetUnderTest {
  url: string;
  d1?: { local: boolean; config: string };
  /** Run statements on the target directly (a client that is not Tidewire). */
  exec(statements: string): Promise<void>;
  /** Rows of the target, in the form `local` dumps the source in. */
  dump(): Promise<Dump>;
  local(db: Database.Database): Dump;
  /** Every sync_key in the target's history table. */
  historyKeys(): Promise<string[]>;
  /** Entries in the target's change table (0 when it is not there yet). */
  backlog(): Promise<number>;
  close?(): Promise<void>;
}

export interface RemoteBackend {
  name: string;
  /** Why the backend cannot run here (asked when a test starts), or null. */
  skip(): string | null;
  make(dir: string): Promise<TargetUnderTest>;
  pullable: boolean;
  /** Random workloads for the storage-class property (a slow backend runs one fixed workload). */
  runs: number;
  /** Entries per pull batch (default 3: several batches). */
  pullBatch?: number;
  timeoutMs?: number;
}

/** One upsert into items, for a target whose tables a full push made. */
export function probePayload(): Payload {
  const items: TableSchema = {
    name: "items",
    key: ["id"],
    columns: [
      { name: "id", affinity: "INTEGER", untyped: false },
      { name: "name", affinity: "TEXT", untyped: false },
      { name: "qty", affinity: "INTEGER", untyped: false },
      { name: "price", affinity: "REAL", untyped: false },
      { name: "data", affinity: "BLOB", untyped: false },
    ],
  };
  return makePayload({
    mode: "incremental",
    scope: "probe",
    reset: [],
    tables: [items],
    mutations: [{ op: "upsert", table: "items", row: [1000n, "probe", 1n, 0.5, null] }],
    cursor: null,
  });
}

const REMOTE_EDITS = `UPDATE items SET name = 'remote pen' WHERE id = 1;
  INSERT INTO items (id, name, qty, price, data) VALUES (3, 'remote', 7, 0.5, NULL);
  DELETE FROM items WHERE id = 2;
  INSERT INTO tags (item, tag, note) VALUES (3, 'b', 'from remote');
  UPDATE tags SET tag = 'z' WHERE item = 1 AND tag = 'a';
  INSERT INTO items (id, name) VALUES ${Array.from({ length: 20 }, (_, i) => `(${100 + i}, 'bulk ${i}')`).join(", ")}`;

export function remoteTargetSuite(backend: RemoteBackend): void {
  describe(`remote target conformance: ${backend.name}`, () => {
    const tempDir = useTempDirs("tidewire-conf-");
    const timeout = backend.timeoutMs ?? 60_000;

    /** Runs `body` on a fresh target, or skips with the backend's reason. */
    const withTarget = async (
      ctx: { skip: (note?: string) => void },
      body: (t: TargetUnderTest, dir: string) => Promise<void>,
    ) => {
      const reason = backend.skip();
      if (reason !== null) {
        console.warn(`SKIPPED: ${backend.name}: ${reason}`);
        ctx.skip(reason);
        return;
      }
      const dir = tempDir();
      const t = await backend.make(dir);
      try {
        await body(t, dir);
      } finally {
        await t.close?.();
      }
    };

    it(
      "applies one payload once: the same key again is a duplicate and changes nothing",
      (ctx) =>
        withTarget(ctx, async (t, dir) => {
          const replica = sourceReplica(dir);
          const sync = new RemoteSync(replica, { target: t.url, d1: t.d1, direction: "push" });
          const target = openTarget(t.url, { d1: t.d1 });
          try {
            expect((await sync.push()).mode).toBe("full");
            const [full] = await t.historyKeys();
            const p = probePayload();
            expect(await target.apply(p, 0)).toBe("applied");
            const rows = await t.dump();
            expect(rows.items).toHaveLength(1);
            expect(await target.apply(p, 0)).toBe("duplicate");
            expect(await target.apply({ ...p, name: "another name, same key" }, 0)).toBe("duplicate");
            expect(await t.dump()).toEqual(rows);
            expect((await t.historyKeys()).sort()).toEqual([full, p.key].sort());
          } finally {
            await target.close();
            await sync.close();
            replica.close();
          }
        }),
      timeout,
    );

    it(
      "mirrors every storage class through a full push then incremental ones, each payload key recorded once",
      async (ctx) => {
        const workloads =
          backend.runs > 1 ? null : fc.sample(workloadArb, { numRuns: 1, seed: 42 }).map((w) => [w] as const);
        const one = (rounds: Parameters<typeof runOps>[1][]) =>
          withTarget(ctx, async (t, dir) => {
            const replica = sourceReplica(dir);
            const sync = new RemoteSync(replica, { target: t.url, d1: t.d1, batchSize: 6, chunkRows: 4 });
            try {
              runOps(replica.store.db, rounds[0] ?? []);
              const first = await sync.push();
              expect(first.mode).toBe("full");
              expect(await t.dump()).toEqual(t.local(replica.store.db));
              let payloads = 1; // the full push is one key
              for (const ops of rounds.slice(1)) {
                runOps(replica.store.db, ops);
                const r = await sync.push();
                expect(r.mode).toBe("incremental");
                payloads += r.payloads;
                expect(await t.dump()).toEqual(t.local(replica.store.db));
              }
              const keys = await t.historyKeys();
              expect(new Set(keys).size).toBe(keys.length);
              expect(keys.length).toBe(payloads);
            } finally {
              await sync.close();
              replica.close();
            }
          });
        if (workloads) for (const [w] of workloads) await one(w);
        else await fc.assert(fc.asyncProperty(workloadArb, one), { numRuns: backend.runs });
      },
      timeout * 2,
    );

    it(
      "a resync replaces what the target holds with the source's rows",
      (ctx) =>
        withTarget(ctx, async (t, dir) => {
          const replica = sourceReplica(dir);
          const sync = new RemoteSync(replica, { target: t.url, d1: t.d1, direction: "push" });
          try {
            runOps(replica.store.db, [
              { kind: "put", id: 1, name: "pen", qty: 3n, price: 1.25, data: Buffer.from([0, 1]) },
              { kind: "tag", item: 1, tag: "a", note: null },
            ]);
            await sync.push();
            // Drift no push would repair: rows written on the target behind Tidewire's back.
            await t.exec(
              "INSERT INTO items (id, name) VALUES (77, 'stray'); UPDATE items SET qty = -1 WHERE id = 1; DELETE FROM tags",
            );
            expect((await sync.push()).mutations).toBe(0);
            expect(await t.dump()).not.toEqual(t.local(replica.store.db));
            const r = await sync.push({ resync: true });
            expect(r.mode).toBe("full");
            expect(await t.dump()).toEqual(t.local(replica.store.db));
          } finally {
            await sync.close();
            replica.close();
          }
        }),
      timeout,
    );

    it.runIf(backend.pullable)(
      "brings an edit made on the target back, merged per column with the source's, and converges",
      (ctx) =>
        withTarget(ctx, async (t, dir) => {
          const replica = sourceReplica(dir);
          const db = replica.store.db;
          runOps(db, [
            { kind: "put", id: 1, name: "pen", qty: 3n, price: 1.25, data: Buffer.from([0, 1]) },
            { kind: "put", id: 2, name: "cup", qty: 1n, price: null, data: null },
            { kind: "tag", item: 1, tag: "a", note: "first" },
          ]);
          const sync = new RemoteSync(replica, {
            target: t.url,
            d1: t.d1,
            batchSize: backend.pullBatch ?? 3,
          });
          try {
            expect(sync.direction).toBe("both");
            expect((await sync.sync()).push?.mode).toBe("full");
            expect(await t.backlog()).toBe(0); // the full push was not captured
            await t.exec(REMOTE_EDITS);
            // An update, an insert, a delete, an insert, a key change (2), 20 inserts.
            expect(await t.backlog()).toBe(26);
            // Meanwhile, locally: another column of the row the target renamed, and a new row.
            db.prepare("UPDATE items SET qty = 99 WHERE id = 1").run();
            runOps(db, [{ kind: "put", id: 4, name: "local", qty: null, price: 2.5, data: null }]);
            const second = await sync.sync();
            expect(second.pull).toMatchObject({ entries: 26, applied: 26, quarantined: 0, skipped: 0 });
            expect(second.push?.mode).toBe("incremental");
            expect(t.local(db)).toEqual(await t.dump());
            expect(db.prepare("SELECT name, qty FROM items WHERE id = 1").get()).toEqual({
              name: "remote pen",
              qty: 99,
            });
            expect(db.prepare("SELECT count(*) AS n FROM items WHERE id = 2").get()).toEqual({ n: 0 });
            expect(db.prepare("SELECT tag FROM tags WHERE item = 1").all()).toEqual([{ tag: "z" }]);
            // Pulled entries are pruned, and the push of rows 1 and 4 was not captured.
            expect(await t.backlog()).toBe(0);
            const third = await sync.sync();
            expect(third.pull?.entries).toBe(0);
            expect(third.push?.mutations).toBe(0);
            expect(t.local(db)).toEqual(await t.dump());
          } finally {
            await sync.close();
            replica.close();
          }
        }),
      timeout * 2,
    );
  });
}
