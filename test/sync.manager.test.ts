/**
 * SyncManager cases that need MemoryTransport's switchboard or a hand-made
 * transport: a hub that does not tell its head, a protocol version mismatch
 * (a ProtocolError), the background loop's exponential backoff and re-arm,
 * option checks. What every transport must do (converge, push cursor, re-send,
 * initial sync, refusals, live notices) is test/sync.transports.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { HubError } from "../src/errors.js";
import type { Hub } from "../src/hub/hub.js";
import type { Replica } from "../src/replica/replica.js";
import { ProtocolError } from "../src/sync/protocol.js";
import { SyncManager, type SyncPosition } from "../src/sync/sync-manager.js";
import type { Transport } from "../src/sync/transport.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
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
