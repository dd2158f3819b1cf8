/**
 * Contract: one suite of SyncManager behaviour every Transport passes (the
 * River/Litestream way: written once, run per backend). A backend is one
 * `TransportBackend`: how to reach a given Hub through it, and whether it
 * carries live notices. The suite shows a cycle counts what it moved and
 * never echoes what it pulled (convergence itself is link.ts's), the push cursor moves only on
 * acknowledgement, a push whose answer is lost is sent again and applied
 * once, an initial sync cut mid-way resumes in a reopened replica, a refused
 * handshake fails with the refusal's class and changes nothing, another
 * protocol version is refused on both sides, the hub's head reaches a client
 * that asks, a manager backs off while the link is down and recovers, (wire
 * transports) a wrong token is a HubAuthError and a body over the hub's limit
 * a 413, and (live transports) a notice makes a client pull at once.
 * `transportLink` makes a backend a SyncLink, so the convergence suite
 * (link.ts) runs over it too. A new transport is one more line in
 * test/sync.transports.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../../src/cursor-store.js";
import { Hub } from "../../src/hub/hub.js";
import type { Replica } from "../../src/replica/replica.js";
import { ProtocolError } from "../../src/sync/protocol.js";
import { SyncManager, type SyncPosition } from "../../src/sync/sync-manager.js";
import { HubAuthError, HubBucketError, HubRefusedError, type Transport } from "../../src/sync/transport.js";
import { useTempDirs, waitFor } from "../helpers.js";
import { hubOn, openItems, rows } from "../sync-helpers.js";
import { forgetCursors, type JoinOptions, type SyncLink } from "./link.js";

export interface TransportBackend {
  name: string;
  /**
   * A new transport to `hub` (with `token` instead of the right one, when
   * given); what it opened is handed to `defer` to be closed after the test.
   */
  connect(hub: Hub, defer: (close: () => unknown) => void, token?: string): Promise<Transport>;
  /** The transport offers `subscribe` (the hub's live notices). */
  live: boolean;
  /** The hub checks a bearer token and a body limit on this transport (a wire, not a function call). */
  wire: boolean;
}

/** A SyncLink (test/conformance/link.ts) of SyncManagers over `backend`, through one hub. */
export function transportLink(backend: TransportBackend): SyncLink {
  return {
    name: `SyncManager + ${backend.name}`,
    available: async () => true,
    async network(_dir, open, defer) {
      const hub = new Hub(open("hub"));
      const members = new Map<Replica, { m: SyncManager; options: JoinOptions }>();
      const join = async (r: Replica, options: JoinOptions = {}) => {
        const m = new SyncManager(r, await backend.connect(hub, defer), options);
        defer(() => m.stop());
        members.set(r, { m, options });
      };
      return {
        join,
        async settle(done, what) {
          for (let round = 0; round < 30; round++) {
            let moved = 0;
            for (const { m } of members.values()) {
              const r = await m.syncOnce();
              moved += r.pushed + r.pulled;
            }
            if (moved === 0 && done()) return;
          }
          throw new Error(`${what}: not after 30 rounds of syncOnce`);
        },
        async rejoin(r) {
          const { m, options } = members.get(r)!;
          await m.stop();
          forgetCursors(r);
          await join(r, options);
        },
      };
    },
  };
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
    function hub(dir: string, limits?: { maxRows?: number; maxBytes?: number }): Hub {
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

    it("counts what it pushed and pulled, keeps the hub's copy, and never echoes what it pulled", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const [a, b] = [replica(dir, "a"), replica(dir, "b")];
      const ma = (await manager(a, h)).m;
      const mb = (await manager(b, h)).m;
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1), (2, 'cup', 2)");
      expect(await ma.syncOnce()).toMatchObject({ pushed: 2, pulled: 0 });
      expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 2, applied: 2 });
      // What b pulled from the hub is not pushed back to it, nor pulled again by a.
      expect(await mb.syncOnce()).toMatchObject({ pushed: 0, pulled: 0 });
      expect(await ma.syncOnce()).toMatchObject({ pushed: 0, pulled: 0 });
      expect(rows(h.replica)).toEqual(rows(a));
      expect(rows(b)).toEqual(rows(a));
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

    it("refuses another protocol version, on both sides", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      const { m, transport } = await manager(a, h);
      const err = await transport
        .handshake({ nodeId: "a", protocolVersion: 2, buckets: ["default"] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubRefusedError);
      expect(err).toMatchObject({
        status: 400,
        code: "ERR_PROTOCOL_VERSION",
        message: "protocol version 2 is not supported: this hub speaks version 1",
      });
      // A hub of another version, as this client meets it: a ProtocolError with the hub's reason.
      transport.handshake = async () => ({
        accepted: false,
        reason: "protocol version 1 is not supported: this hub speaks version 2",
        hubNodeId: "hub",
        protocolVersion: 2,
        capabilities: [],
        limits: { maxRows: 10, maxBytes: 1000 },
      });
      const refused = await m.syncOnce().catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ProtocolError);
      expect((refused as Error).message).toBe(
        "the hub refused the handshake: protocol version 1 is not supported: this hub speaks version 2",
      );
    });

    it("tells the hub's head to a client that asks, and a hub that does not tell leaves the position without one", async () => {
      const dir = tempDir();
      const h = hub(dir);
      h.replica.store.db.prepare("INSERT INTO items VALUES (1, 'one', 1)").run();
      const a = replica(dir, "a");
      const { m, transport } = await manager(a, h, { direction: "pull" });
      const asked = await transport.handshake({
        nodeId: "a",
        protocolVersion: 1,
        buckets: ["default"],
        capabilities: ["head"],
      });
      expect(asked).toMatchObject({ capabilities: ["head"], head: h.replica.head() });
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

    it.runIf(backend.wire)("refuses a wrong token with HubAuthError and changes nothing", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      a.store.db.exec("INSERT INTO items VALUES (1, 'pen', 1)");
      const m = new SyncManager(a, await backend.connect(h, defer, "not-the-token-0000"));
      defer(() => m.stop());
      const err = await m.syncOnce().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HubAuthError);
      expect(err).toMatchObject({ status: 401, code: "ERR_UNAUTHORIZED" });
      expect(rows(h.replica)).toEqual([]);
      expect(new CursorStore(a.store).getAll()).toEqual([]);
    });

    it.runIf(backend.wire)(
      "refuses a body over the hub's limit with 413, applies nothing, and works on",
      async () => {
        const dir = tempDir();
        const h = hub(dir, { maxBytes: 16 * 1024 });
        const a = replica(dir, "a");
        const { transport } = await manager(a, h);
        a.store.db.prepare("INSERT INTO items VALUES (1, ?, 1)").run("x".repeat(200 * 1024));
        const err = await transport
          .push({ nodeId: "a", changes: a.changesSince(0).changes, cursor: "1" })
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(HubRefusedError);
        expect(err).toMatchObject({ status: 413, code: "ERR_BODY_TOO_LARGE" });
        expect(h.replica.stats().entries).toBe(0);
        // The link is still good for calls within the limit.
        expect(
          await transport.handshake({ nodeId: "a", protocolVersion: 1, buckets: ["default"] }),
        ).toMatchObject({
          accepted: true,
        });
      },
    );

    it("backs off exponentially while the link is down, always re-arms, and recovers", async () => {
      const dir = tempDir();
      const h = hub(dir);
      const a = replica(dir, "a");
      // The interval is past every backoff, so the recovered loop's next try tells the two apart.
      const { m, transport } = await manager(a, h, {
        intervalMs: 1_000,
        retry: { initialMs: 20, maxMs: 160, multiplier: 2, jitter: 0.1 },
      });
      let down = false;
      for (const call of ["handshake", "pull", "push"] as const) {
        const real = transport[call].bind(transport) as (req: unknown) => Promise<never>;
        (transport as unknown as Record<string, unknown>)[call] = (req: unknown) =>
          down
            ? Promise.reject(
                Object.assign(new Error("connect ECONNREFUSED (link down)"), { code: "ECONNREFUSED" }),
              )
            : real(req);
      }
      await m.start();
      down = true;
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
      down = false;
      const backAt = await back;
      await waitFor(() => m.status.state === "idle", "recovery", { timeoutMs: 5_000 });
      expect(rows(h.replica)).toEqual(rows(a));
      expect(m.status.failures).toBe(0);
      // Next try is the interval again (from the recovering cycle; a live notice's pull may follow), not a backoff.
      await waitFor(() => m.status.state === "idle" && (m.status.nextAt ?? 0) > backAt, "the re-armed loop");
      expect(m.status.nextAt! - backAt).toBeGreaterThanOrEqual(1_000);
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
