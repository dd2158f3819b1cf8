/**
 * SyncManager and Hub cases that no transport takes part in: the hub tells
 * its head only to a client that asks, refuses a client of another protocol
 * version, and a manager checks its options. Everything a transport carries
 * (convergence, push cursor, re-send, initial sync, refusals, the protocol
 * version and head through a transport, backoff while the link is down, live
 * notices) is the conformance suites', run over every transport and the mesh
 * by test/sync.transports.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { HubError } from "../src/errors.js";
import type { Hub } from "../src/hub/hub.js";
import type { Replica } from "../src/replica/replica.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { MemoryTransport } from "../src/sync/transports/memory.js";
import { useTempDirs } from "./helpers.js";
import { hubOn, openItems } from "./sync-helpers.js";

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

describe("SyncManager and the hub it talks to, with no transport in between", () => {
  it("tells the hub's head only to a client that asks", () => {
    const dir = tempDir();
    const h = hub(dir);
    h.replica.store.db.prepare("INSERT INTO items VALUES (1, 'one', 1)").run();
    const scope = { id: "t", buckets: "*" as const, write: true };
    const ask = (capabilities: string[]) =>
      h.handshake({ nodeId: "x", protocolVersion: 1, buckets: ["default"], capabilities }, scope);
    expect(ask(["head"])).toMatchObject({ capabilities: ["head"], head: h.replica.head() });
    // An older client's answer schema has no head: it gets none.
    expect(ask(["live"])).not.toHaveProperty("head");
  });

  it("refuses a client of another protocol version", () => {
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
