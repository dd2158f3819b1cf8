/**
 * Contract: one suite of convergence every way replicas exchange changes
 * passes — a SyncManager over each Transport (through a hub) and the Redis
 * mesh (MeshMember, no hub) alike. A backend is one `SyncLink`: how replicas
 * join a network, how to let it settle, and how a replica rejoins having
 * forgotten every cursor. The suite shows two replicas converge (conflicting
 * edits and a delete), three converge whatever order random writes arrive
 * in, a second delivery of everything changes nothing, a replica gets only
 * the buckets it joined, and many batches arrive whole. What only a Transport
 * can show (refusals, cursors on acknowledgement, initial sync) is
 * test/conformance/transport.ts. A new backend is one more line in
 * test/sync.transports.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../../src/cursor-store.js";
import type { Replica } from "../../src/replica/replica.js";
import { useTempDirs, waitFor } from "../helpers.js";
import { rng } from "../replica-helpers.js";
import { openItems, rows } from "../sync-helpers.js";

export interface JoinOptions {
  /** Buckets to exchange (default: every bucket). */
  buckets?: string[];
  /** Changes per batch. */
  batchSize?: number;
}

/** Replicas joined to one network, for one test. */
export interface Network {
  join(replica: Replica, options?: JoinOptions): Promise<void>;
  /** Exchanges until `done()` holds and nothing is left in flight; fails naming `what` when it does not. */
  settle(done: () => boolean, what: string): Promise<void>;
  /** `replica` leaves and joins again (same options) having forgotten every cursor: all is delivered again. */
  rejoin(replica: Replica): Promise<void>;
}

export interface SyncLink {
  name: string;
  /** False when the service it needs is unreachable: the suite is skipped. */
  available(): Promise<boolean>;
  /**
   * A network in `dir`; `open(nodeId)` opens a replica of the suite's schema
   * (for a hub, say); what it opened is handed to `defer` to be closed after the test.
   */
  network(
    dir: string,
    open: (nodeId: string) => Replica,
    defer: (close: () => unknown) => void,
  ): Promise<Network>;
}

/** The suite's schema: items in bucket "default", notes in bucket "private". */
export function openShared(dir: string, nodeId: string): Replica {
  const r = openItems(dir, nodeId);
  r.store.db.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)");
  r.track("notes", { bucket: "private" });
  return r;
}

/** Deletes every cursor `replica` keeps, as a replica that never synced. */
export function forgetCursors(replica: Replica): void {
  const cursors = new CursorStore(replica.store, { flushIntervalMs: 0 });
  for (const c of cursors.getAll()) cursors.delete(c);
  cursors.close();
}

function notes(r: Replica): unknown[] {
  return r.store.db.prepare("SELECT * FROM notes ORDER BY id").all();
}

function same(rs: Replica[]): boolean {
  const first = JSON.stringify(rows(rs[0]!));
  return rs.every((r) => JSON.stringify(rows(r)) === first);
}

export function linkSuite(link: SyncLink): void {
  describe(`convergence over ${link.name}`, { timeout: 120_000 }, () => {
    const tempDir = useTempDirs("tidewire-link-");
    const cleanup: Array<() => unknown> = [];
    afterEach(async () => {
      for (const f of cleanup.splice(0).reverse()) await f();
    });
    const defer = (f: () => unknown) => void cleanup.push(f);
    let reachable: boolean | undefined;

    async function network(ctx: { skip: () => void }) {
      reachable ??= await link.available();
      if (!reachable) ctx.skip();
      const dir = tempDir();
      const open = (nodeId: string) => {
        const r = openShared(dir, nodeId);
        defer(() => r.close());
        return r;
      };
      return { net: await link.network(dir, open, defer), open };
    }

    it("converges two replicas: inserts, conflicting edits, a delete", async (ctx) => {
      const { net, open } = await network(ctx);
      const [a, b] = [open("a"), open("b")];
      await net.join(a);
      await net.join(b);
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
      await net.settle(() => rows(b).length === 2, "b to get a's rows");
      a.store.db.exec(
        "UPDATE items SET name = 'red pen' WHERE id = 1; UPDATE items SET qty = 10 WHERE id = 2",
      );
      // b's edits come later on the wall clock, so they win the conflicts.
      const after = Date.now();
      await waitFor(() => Date.now() > after, "the clock to move");
      b.store.db.exec(
        "UPDATE items SET name = 'blue pen', qty = 7 WHERE id = 1; DELETE FROM items WHERE id = 2",
      );
      b.store.db.exec("INSERT INTO items VALUES (3, 'ink', 3)");
      const want = [
        { id: 1, name: "blue pen", qty: 7 },
        { id: 3, name: "ink", qty: 3 },
      ];
      await net.settle(
        () => JSON.stringify(rows(a)) === JSON.stringify(want) && same([a, b]),
        "a and b to converge",
      );
      expect(rows(b)).toEqual(want);
    });

    it("converges three replicas whatever order random writes arrive in", async (ctx) => {
      const { net, open } = await network(ctx);
      const rs = ["a", "b", "c"].map(open);
      for (const r of rs) await net.join(r, { batchSize: 7 });
      const random = rng(16);
      for (let round = 0; round < 3; round++) {
        for (const r of rs) {
          const put = r.store.db.prepare(
            "INSERT INTO items VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty",
          );
          const del = r.store.db.prepare("DELETE FROM items WHERE id = ?");
          for (let i = 0; i < 15; i++) {
            const id = 1 + Math.floor(random() * 12);
            if (random() < 0.75) put.run(id, `${r.nodeId}-${round}-${i}`, i);
            else del.run(id);
          }
        }
      }
      await net.settle(() => same(rs), "three replicas to converge");
      expect(rows(rs[0]!).length).toBeGreaterThan(0);
    });

    it("a second delivery of everything changes nothing", async (ctx) => {
      const { net, open } = await network(ctx);
      const [a, b] = [open("a"), open("b")];
      await net.join(a);
      await net.join(b);
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
      b.store.db.exec("INSERT INTO items VALUES (3, 'ink', 3); DELETE FROM items WHERE id = 3");
      b.store.db.exec("INSERT INTO items VALUES (4, 'pad', 4)");
      await net.settle(() => rows(a).length === 3 && same([a, b]), "a and b to converge");
      const before = [a, b].map((r) => ({ rows: rows(r), entries: r.stats().entries, lastSeq: r.lastSeq() }));
      await net.rejoin(b);
      await net.rejoin(a);
      await net.settle(() => true, "everything delivered again");
      expect(
        [a, b].map((r) => ({ rows: rows(r), entries: r.stats().entries, lastSeq: r.lastSeq() })),
      ).toEqual(before);
    });

    it("gives a replica only the buckets it joined", async (ctx) => {
      const { net, open } = await network(ctx);
      const [a, b, c] = [open("a"), open("b"), open("c")];
      await net.join(a);
      await net.join(b, { buckets: ["default"] });
      await net.join(c, { buckets: ["default", "private"] });
      a.store.db.exec("INSERT INTO notes VALUES (1, 'secret')");
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
      await net.settle(
        () => rows(b).length === 1 && rows(c).length === 1 && notes(c).length === 1,
        "b to get the item and c the item and the note",
      );
      expect(notes(b)).toEqual([]);
      expect(b.stats().entries).toBeLessThan(c.stats().entries);
    });

    it("delivers many batches whole, deletes included", async (ctx) => {
      const { net, open } = await network(ctx);
      const [a, b] = [open("a"), open("b")];
      await net.join(a, { batchSize: 40 });
      await net.join(b, { batchSize: 40 });
      const insert = a.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
      a.store.write(() => {
        for (let i = 1; i <= 300; i++) insert.run(i, `item ${i}`, i);
      });
      await net.settle(() => rows(b).length === 300, "b to get 300 rows");
      a.store.db.exec("DELETE FROM items WHERE id % 2 = 0");
      await net.settle(() => rows(b).length === 150 && same([a, b]), "b to lose the even rows");
      expect(rows(b)).toEqual(rows(a));
    });
  });
}
