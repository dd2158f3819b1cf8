/**
 * SyncManager over MemoryTransport: two replicas converge through a hub with
 * conflicting edits, and never pushes back what it pulled; push leaves out the hub's own changes and moves its
 * cursor only on acknowledgement; initial sync reports progress per batch and
 * resumes from the last batch after a failure; a protocol version mismatch
 * is a ProtocolError; the background loop backs off exponentially and
 * re-arms; a live notice makes a client pull at once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { HubError } from "../src/errors.js";
import type { Hub } from "../src/hub/hub.js";
import type { Replica } from "../src/replica/replica.js";
import { ProtocolError } from "../src/sync/protocol.js";
import { SyncManager, type SyncPosition } from "../src/sync/sync-manager.js";
import type { Transport } from "../src/sync/transport.js";
import { MemoryTransport } from "../src/sync/transport-memory.js";
import { useTempDirs, waitFor } from "./helpers.js";
import { hubOn, openItems, rows } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-sync-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function replica(dir: string, nodeId: string): Replica {
  const r = openItems(dir, nodeId);
  cleanup.push(() => r.close());
  return r;
}

function hub(dir: string, limits?: { maxRows?: number }): Hub {
  const h = hubOn(dir, "hub", limits);
  cleanup.push(() => h.replica.close());
  return h;
}

function manager(r: Replica, h: Hub, options: ConstructorParameters<typeof SyncManager>[2] = {}) {
  const [transport, board] = MemoryTransport.pair(h);
  const m = new SyncManager(r, transport, options);
  cleanup.push(() => m.stop());
  return { m, board, transport };
}

describe("SyncManager over MemoryTransport", () => {
  it("converges two replicas through the hub, conflicting edits included", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const [a, b] = [replica(dir, "a"), replica(dir, "b")];
    const ma = manager(a, h).m;
    const mb = manager(b, h).m;
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
    expect(await ma.syncOnce()).toMatchObject({ pushed: 2, pulled: 0 });
    expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 2, applied: 2 });
    // What b pulled from the hub is not pushed back to it (no echo).
    expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 0 });
    // Conflicting edits of the same rows on both sides, and a delete.
    a.store.db.exec("UPDATE items SET name = 'red pen' WHERE id = 1; UPDATE items SET qty = 10 WHERE id = 2");
    await new Promise((r) => setTimeout(r, 5));
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
    expect(ma.status.lastSuccessAt).toBeGreaterThan(Date.now() - 10_000);
  });

  it("pushes only what the hub has not acknowledged, leaving out the hub's own changes", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const { m, board } = manager(a, h, { direction: "push" });
    h.replica.store.db.exec("INSERT INTO items VALUES (100, 'hub row', 1)");
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    expect(await m.syncOnce()).toMatchObject({ pushed: 1, pulled: 0 });
    // A push the hub never answers leaves the cursor where it was: the batch goes again.
    a.store.db.exec("INSERT INTO items VALUES (2, 'cup', 1)");
    board.failNext(1);
    await expect(m.syncOnce()).rejects.toThrow(/ECONNREFUSED/);
    expect(m.status).toMatchObject({
      state: "error",
      failures: 1,
      message: expect.stringMatching(/ECONNREFUSED/),
    });
    expect(await m.syncOnce()).toMatchObject({ pushed: 1 });
    expect(await m.syncOnce()).toMatchObject({ pushed: 0 });
    // The hub's own row came back to it from nobody: a pushes only its own.
    a.apply(h.replica.changesSince(0).changes);
    expect(await m.syncOnce()).toMatchObject({ pushed: 0 });
    expect(rows(h.replica)).toHaveLength(3);
  });

  it("initial sync reports every batch, saves the cursor after each, and resumes after a crash", async () => {
    const dir = tempDir();
    const h = hub(dir, { maxRows: 100 });
    const insert = h.replica.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    h.replica.store.write(() => {
      for (let i = 1; i <= 1000; i++) insert.run(i, `item ${i}`, i);
    });
    const path = `${dir}/a.db`;
    let a = openItems(dir, "a");
    const first = manager(a, h, { direction: "pull", batchSize: 500 });
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
    a = openItems(dir, "a");
    cleanup.push(() => a.close());
    expect(new CursorStore(a.store).getOrStart({ peer: "hub", bucket: "default", direction: "pull" })).toBe(
      "400",
    );
    const second = manager(a, h, { direction: "pull" });
    const again: number[] = [];
    const positions: SyncPosition[] = [];
    const done = await second.m.initialSync({
      onProgress: (_n, total, _more, position) => {
        again.push(total);
        positions.push(position);
      },
    });
    expect(done.pulled).toBe(600);
    expect(again).toEqual([100, 200, 300, 400, 500, 600]);
    expect(second.board.calls.pull).toBe(6);
    // Where the leg stood: from the saved cursor to the hub's head, which the last page reaches.
    const head = h.replica.head();
    expect(positions.every((p) => p.direction === "pull" && p.start === "400" && p.head === head)).toBe(true);
    const cursors = positions.map((p) => Number(p.cursor));
    expect(cursors).toEqual([...cursors].sort((x, y) => x - y));
    expect(positions.at(-1)!.cursor).toBe(head);
    expect(rows(a)).toHaveLength(1000);
    expect(path).toContain("a.db");
  });

  it("tells the hub's head only to a client that asks, and a hub that does not tell leaves the position without one", async () => {
    const dir = tempDir();
    const h = hub(dir);
    h.replica.store.db.prepare("INSERT INTO items VALUES (1, 'one', 1)").run();
    const scope = { id: "t", buckets: "*" as const, write: true };
    const ask = (capabilities: string[]) =>
      h.handshake({ nodeId: "x", protocolVersion: 1, buckets: ["default"], capabilities }, scope);
    expect(ask(["head"])).toMatchObject({ capabilities: ["head"], head: h.replica.head() });
    // An older client's answer schema has no head: it gets none.
    expect(ask(["live"])).not.toHaveProperty("head");

    const a = openItems(dir, "a");
    cleanup.push(() => a.close());
    const { m, transport } = manager(a, h, { direction: "pull" });
    // As an older hub would answer: no capability "head", no head.
    const handshake = transport.handshake.bind(transport);
    transport.handshake = async (req) => {
      const { head: _, ...answer } = await handshake(req);
      return { ...answer, capabilities: answer.capabilities.filter((c) => c !== "head") };
    };
    const positions: SyncPosition[] = [];
    await m.initialSync({ onProgress: (_n, _t, _more, p) => positions.push(p) });
    expect(positions.length).toBeGreaterThan(0);
    for (const p of positions) expect(p.head).toBeUndefined();
    expect(rows(a)).toHaveLength(1);
  });

  it("refuses a hub of another protocol version, on both sides", async () => {
    const dir = tempDir();
    const h = hub(dir);
    expect(() =>
      h.handshake(
        { nodeId: "x", protocolVersion: 2, buckets: ["default"] },
        { id: "t", buckets: "*", write: true },
      ),
    ).toThrow(
      new HubError(
        400,
        "ERR_PROTOCOL_VERSION",
        "protocol version 2 is not supported: this hub speaks version 1",
      ),
    );
    const a = replica(dir, "a");
    const [t] = MemoryTransport.pair(h);
    const old: Transport = {
      ...t,
      peer: "memory",
      handshake: async () => ({
        accepted: false,
        reason: "protocol version 1 is not supported: this hub speaks version 2",
        hubNodeId: "hub",
        protocolVersion: 2,
        capabilities: [],
        limits: { maxRows: 10, maxBytes: 1000 },
      }),
      pull: t.pull.bind(t),
      push: t.push.bind(t),
      close: t.close.bind(t),
    };
    const m = new SyncManager(a, old);
    const err = await m.syncOnce().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toBe(
      "the hub refused the handshake: protocol version 1 is not supported: this hub speaks version 2",
    );
  });

  it("backs off exponentially while the hub is down, always re-arms, and recovers", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    // The interval is past every backoff, so the recovered loop's next try tells the two apart.
    const { m, board } = manager(a, h, {
      intervalMs: 1_000,
      retry: { initialMs: 20, maxMs: 160, multiplier: 2, jitter: 0.1 },
    });
    await m.start();
    board.offline = true;
    const delays: number[] = [];
    m.on("failed", (_err, retryIn) => delays.push(retryIn!));
    await waitFor(() => delays.length >= 6, "six failed cycles", { timeoutMs: 5_000 });
    const expected = [20, 40, 80, 160, 160, 160];
    delays.slice(0, 6).forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(expected[i]! * 0.9 - 1);
      expect(d).toBeLessThanOrEqual(expected[i]! * 1.1 + 1);
    });
    expect(m.status.state).toBe("error");
    a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
    const back = new Promise<number>((r) => m.once("synced", () => r(Date.now())));
    board.offline = false;
    const backAt = await back;
    await waitFor(() => m.status.state === "idle", "recovery", { timeoutMs: 5_000 });
    expect(rows(h.replica)).toEqual(rows(a));
    expect(m.status.failures).toBe(0);
    // Next try is the interval again (from the recovering cycle; a live notice's pull may follow), not a backoff.
    await waitFor(() => m.status.state === "idle" && (m.status.nextAt ?? 0) > backAt, "the re-armed loop");
    expect(m.status.nextAt! - backAt).toBeGreaterThanOrEqual(1_000);
  });

  it("pulls at once when the hub says a bucket has new changes", async () => {
    const dir = tempDir();
    const h = hub(dir);
    const [a, b] = [replica(dir, "a"), replica(dir, "b")];
    const ma = manager(a, h, { intervalMs: 60_000 }).m;
    const mb = manager(b, h, { intervalMs: 60_000 }).m;
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

  it("validates its options and changes nothing on bad ones", () => {
    const dir = tempDir();
    const h = hub(dir);
    const a = replica(dir, "a");
    const [t] = MemoryTransport.pair(h);
    expect(() => new SyncManager(a, t, { direction: "sideways" as never })).toThrow(/direction/);
    expect(() => new SyncManager(a, t, { batchSize: 0 })).toThrow(/batchSize/);
    expect(() => new SyncManager(a, t, { retry: { multiplier: 0.5 } })).toThrow(/multiplier/);
    expect(() => new SyncManager(a, t, { buckets: [""] })).toThrow(/buckets/);
  });
});
