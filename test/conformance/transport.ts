/**
 * Contract: one suite of SyncManager behaviour every Transport passes (the
 * River/Litestream way: written once, run per backend). A backend is one
 * `TransportBackend`: how to reach a given Hub through it, and whether it
 * carries live notices. The suite shows two replicas converge through the
 * hub (conflicting edits, a delete, no echo), the push cursor moves only on
 * acknowledgement, a push whose answer is lost is sent again and applied
 * once, an initial sync cut mid-way resumes in a reopened replica, a refused
 * handshake fails with the refusal's class and changes nothing, and (live
 * transports) a notice makes a client pull at once. A new transport is one
 * more line in test/sync.transports.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../../src/cursor-store.js";
import type { Hub } from "../../src/hub/hub.js";
import type { Replica } from "../../src/replica/replica.js";
import { SyncManager, type SyncPosition } from "../../src/sync/sync-manager.js";
import { HubBucketError, type Transport } from "../../src/sync/transport.js";
import { useTempDirs, waitFor } from "../helpers.js";
import { hubOn, openItems, rows } from "../sync-helpers.js";

export interface TransportBackend {
  name: string;
  /** A new transport to `hub`; what it opened is handed to `defer` to be closed after the test. */
  connect(hub: Hub, defer: (close: () => unknown) => void): Promise<Transport>;
  /** The transport offers `subscribe` (the hub's live notices). */
  live: boolean;
}

type ManagerOptions = ConstructorParameters<typeof SyncManager>[2];

export function transportSuite(backend: TransportBackend): void {
  describe(`SyncManager over ${backend.name}`, () => {
    const tempDir = useTempDirs("tidewire-transport-");
    const cleanup: Array<() => unknown> = [];
    afterEach(async () => {
      for (const f of cleanup.splice(0).reverse()) await f();
    });
    const defer = (f: () => unknown) => void cleanup.push(f);

    function replica(dir: string, nodeId: string): Replica {
      const r = openItems(dir, nodeId);
      defer(() => r.close());
      return r;
    }
    function hub(dir: string, limits?: { maxRows?: number }): Hub {
      const h = hubOn(dir, "hub", limits);
      defer(() => h.replica.close());
      return h;
    }
    async function manager(r: Replica, h: Hub, options: ManagerOptions = {}) {
      const transport = await backend.connect(h, defer);
      const m = new SyncManager(r, transport, options);
      defer(() => m.stop());
      return { m, transport };
    }

    it("converges two replicas through the hub, conflicting edits and a delete included, with no echo", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const [a, b] = [replica(dir, "a"), replica(dir, "b")];
      const ma = (await manager(a, h)).m;
      const mb = (await manager(b, h)).m;
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
      expect(await ma.syncOnce()).toMatchObject({ pushed: 2, pulled: 0 });
      expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 2, applied: 2 });
      // What b pulled from the hub is not pushed back to it.
      expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 0 });
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
      for (let i = 0; i < 2; i++) {
        await ma.syncOnce();
        await mb.syncOnce();
      }
      expect(rows(a)).toEqual([
        { id: 1, name: "blue pen", qty: 7 },
        { id: 3, name: "ink", qty: 3 },
      ]);
      expect(rows(b)).toEqual(rows(a));
      expect(rows(h.replica)).toEqual(rows(a));
      expect(ma.status).toMatchObject({ state: "idle", failures: 0 });
    });

    it("moves the push cursor only on acknowledgement, and never pushes the hub's own changes", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      const { m, transport } = await manager(a, h, { direction: "push" });
      h.replica.store.db.exec("INSERT INTO items VALUES (100, 'hub row', 1)");
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
      expect(await m.syncOnce()).toMatchObject({ pushed: 1, pulled: 0 });
      // A push the hub never sees: the batch goes again.
      a.store.db.exec("INSERT INTO items VALUES (2, 'cup', 1)");
      const push = transport.push.bind(transport);
      transport.push = async () => {
        transport.push = push;
        throw new Error("connection lost");
      };
      await expect(m.syncOnce()).rejects.toThrow(/connection lost/);
      expect(m.status).toMatchObject({ state: "error", failures: 1 });
      expect(await m.syncOnce()).toMatchObject({ pushed: 1 });
      expect(await m.syncOnce()).toMatchObject({ pushed: 0 });
      // The hub's own row, reaching a from the hub: a pushes only its own.
      a.apply(h.replica.changesSince(0).changes);
      expect(await m.syncOnce()).toMatchObject({ pushed: 0 });
      expect(rows(h.replica)).toHaveLength(3);
    });

    it("re-sends a push whose answer was lost, and the hub applies it once", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      const { m, transport } = await manager(a, h, { direction: "push" });
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
      const push = transport.push.bind(transport);
      transport.push = async (req) => {
        transport.push = push;
        await push(req); // delivered and applied; the answer never arrives
        throw new Error("connection reset");
      };
      await expect(m.syncOnce()).rejects.toThrow(/connection reset/);
      const applied = h.replica.stats();
      expect(rows(h.replica)).toEqual(rows(a));
      expect(await m.syncOnce()).toMatchObject({ pushed: 2 });
      expect(h.replica.stats().entries).toBe(applied.entries);
      expect(h.replica.stats().lastSeq).toBe(applied.lastSeq);
      expect(rows(h.replica)).toEqual(rows(a));
      expect(await m.syncOnce()).toMatchObject({ pushed: 0 });
    });

    it("reports every initial-sync batch, saves the cursor after each, and resumes after a crash", async () => {
      const dir = tempDir();
      const h = hub(dir, { maxRows: 100 });
      const insert = h.replica.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
      h.replica.store.write(() => {
        for (let i = 1; i <= 1000; i++) insert.run(i, `item ${i}`, i);
      });
      let a = openItems(dir, "a");
      const first = await manager(a, h, { direction: "pull", batchSize: 500 });
      // The link dies after the fourth batch.
      const pull = first.transport.pull.bind(first.transport);
      let pulls = 0;
      first.transport.pull = async (req) => {
        if (++pulls > 4) throw new Error("connection lost");
        return pull(req);
      };
      const seen: Array<[number, number, boolean]> = [];
      await expect(
        first.m.initialSync({ onProgress: (n, total, more) => seen.push([n, total, more]) }),
      ).rejects.toThrow(/connection lost/);
      expect(seen).toEqual([1, 2, 3, 4].map((i) => [100, i * 100, true]));
      await first.m.stop();
      a.close();
      // A new process: the cursor on file says where to resume.
      a = replica(dir, "a");
      expect(new CursorStore(a.store).getOrStart({ peer: "hub", bucket: "default", direction: "pull" })).toBe(
        "400",
      );
      const second = await manager(a, h, { direction: "pull" });
      const againPull = second.transport.pull.bind(second.transport);
      let secondPulls = 0;
      second.transport.pull = (req) => {
        secondPulls++;
        return againPull(req);
      };
      const totals: number[] = [];
      const positions: SyncPosition[] = [];
      const done = await second.m.initialSync({
        onProgress: (_n, total, _more, position) => {
          totals.push(total);
          positions.push(position);
        },
      });
      expect(done.pulled).toBe(600);
      expect(totals).toEqual([100, 200, 300, 400, 500, 600]);
      expect(secondPulls).toBe(6);
      const head = h.replica.head();
      expect(positions.every((p) => p.direction === "pull" && p.start === "400" && p.head === head)).toBe(
        true,
      );
      expect(positions.at(-1)!.cursor).toBe(head);
      expect(rows(a)).toHaveLength(1000);
    });

    it("fails a refused handshake with the refusal's class and changes nothing on either side", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
      const { m } = await manager(a, h, { buckets: ["nope"] });
      const err = await m.syncOnce().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubBucketError);
      expect((err as HubBucketError).status).toBe(404);
      expect((err as Error).message).toMatch(/no bucket "nope"/);
      expect(m.status).toMatchObject({ state: "error", failures: 1 });
      expect(rows(h.replica)).toEqual([]);
      expect(h.replica.stats().entries).toBe(0);
      expect(
        new CursorStore(a.store).get({ peer: "hub", bucket: "nope", direction: "push" }),
      ).toBeUndefined();
    });

    it.runIf(backend.live)("pulls at once when the hub says a bucket has new changes", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const [a, b] = [replica(dir, "a"), replica(dir, "b")];
      const ma = (await manager(a, h, { intervalMs: 60_000 })).m;
      const mb = (await manager(b, h, { intervalMs: 60_000 })).m;
      await Promise.all([ma.start(), mb.start()]);
      await waitFor(
        () => ma.status.lastSuccessAt !== undefined && mb.status.lastSuccessAt !== undefined,
        "first cycles",
      );
      b.store.db.exec("INSERT INTO items VALUES (7, 'live', 1)");
      await mb.syncOnce();
      // "At once" against the 60 s interval: 20 s leaves a loaded machine room and still fails a
      // manager that waited for its timer instead of the hub's notice.
      await waitFor(() => rows(a).length === 1, "a to pull b's row", { timeoutMs: 20_000 });
      expect(rows(a)).toEqual([{ id: 7, name: "live", qty: 1 }]);
    });
  });
}
