/**
 * Peers: upsert (insert, partial update, id derived from the address), list,
 * markUp/markDown, remove deleting that peer's cursors (under its id, the
 * node id its hub answered with, its address) and no one else's, and bad
 * input refused with nothing changed. Real SQLite files.
 */
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore, openStore, type Store } from "../src/index.js";
import { idFromAddress, Peers } from "../src/sync/index.js";
import { invalidArgument, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-peers-");
const stores: Store[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function open(path = join(tempDir(), "p.db")): { store: Store; peers: Peers } {
  const store = openStore(path);
  stores.push(store);
  return { store, peers: new Peers(store) };
}

describe("Peers", () => {
  it("adds a peer by address with an id derived from it, and updates only the fields given", () => {
    const { peers } = open();
    const a = peers.upsert({ address: "http://10.0.0.2:7420/", token: "secret" });
    expect(a).toMatchObject({
      id: "10.0.0.2:7420",
      address: "http://10.0.0.2:7420",
      buckets: ["default"],
      token: "secret",
      state: "unknown",
      lastSeenAt: null,
      rttMs: null,
      nodeId: null,
    });
    expect(idFromAddress("https://[::1]:8443/hub/")).toBe("::1-:8443-hub");
    const b = peers.upsert({ id: "10.0.0.2:7420", buckets: ["orders", "catalog", "orders"] });
    expect(b).toMatchObject({
      address: "http://10.0.0.2:7420",
      token: "secret",
      buckets: ["catalog", "orders"],
    });
    expect(b.addedAt).toBe(a.addedAt);
    peers.upsert({ id: "node-b" });
    expect(peers.list().map((p) => [p.id, p.address])).toEqual([
      ["10.0.0.2:7420", "http://10.0.0.2:7420"],
      ["node-b", null],
    ]);
    expect(peers.get("nobody")).toBeUndefined();
  });

  it("marks peers up with their round-trip time and down with the error, keeping the last answer", () => {
    const { peers } = open();
    peers.upsert({ id: "b", address: "http://127.0.0.1:1" });
    expect(peers.markUp("b", 12.5, 1_000)).toBe(true);
    expect(peers.get("b")).toMatchObject({
      state: "up",
      rttMs: 12.5,
      lastSeenAt: 1_000,
      stateChangedAt: 1_000,
    });
    expect(peers.markUp("b", 3, 2_000)).toBe(true);
    expect(peers.get("b")).toMatchObject({ rttMs: 3, lastSeenAt: 2_000, stateChangedAt: 1_000 });
    expect(peers.markDown("b", "connect ECONNREFUSED", 3_000)).toBe(true);
    expect(peers.get("b")).toMatchObject({
      state: "down",
      lastError: "connect ECONNREFUSED",
      lastSeenAt: 2_000,
      stateChangedAt: 3_000,
    });
    expect(peers.markUp("b", 4, 4_000)).toBe(true);
    expect(peers.get("b")).toMatchObject({ state: "up", lastError: null, stateChangedAt: 4_000 });
    expect(peers.markUp("gone", 1)).toBe(false);
    expect(peers.markDown("gone", "x")).toBe(false);
    // A new address may be another node: what was known of the old one is forgotten.
    peers.noteNodeId("b", "node-b");
    expect(peers.upsert({ id: "b", address: "http://127.0.0.1:2" })).toMatchObject({
      state: "unknown",
      rttMs: null,
      nodeId: null,
      lastSeenAt: 4_000,
    });
  });

  it("removes a peer with every cursor kept under its names, and only those", () => {
    const path = join(tempDir(), "p.db");
    const { store, peers } = open(path);
    peers.upsert({ id: "b", address: "http://127.0.0.1:7421/hub" });
    peers.noteNodeId("b", "node-of-b");
    peers.upsert({ id: "c", address: "http://127.0.0.1:7422" });
    const cursors = new CursorStore(store, { flushIntervalMs: 0 });
    for (const peer of [
      "b",
      "node-of-b",
      "http://127.0.0.1:7421/hub",
      "http://127.0.0.1:7421",
      "c",
      "node-c",
    ]) {
      cursors.set({ peer, bucket: "default", direction: "push" }, 5);
      cursors.set({ peer, bucket: "default", direction: "pull" }, 7);
    }
    cursors.flushDirty();
    expect(peers.remove("b", cursors)).toBe(true);
    const left = (cs: CursorStore) => [...new Set(cs.getAll().map((c) => c.peer))];
    expect(left(cursors)).toEqual(["c", "node-c"]);
    expect(left(new CursorStore(store, { flushIntervalMs: 0 }))).toEqual(["c", "node-c"]);
    expect(peers.get("b")).toBeUndefined();
    expect(peers.remove("b")).toBe(false);
    // Without a CursorStore given, it uses one of its own on the same file.
    expect(peers.remove("c")).toBe(true);
    expect(left(new CursorStore(store, { flushIntervalMs: 0 }))).toEqual(["node-c"]);
  });

  it("refuses bad input and changes nothing", () => {
    const { store, peers } = open();
    peers.upsert({ id: "b", address: "http://127.0.0.1:7421" });
    const before = JSON.stringify(peers.list());
    const bad: Array<() => unknown> = [
      () => peers.upsert(null as never),
      () => peers.upsert({}),
      () => peers.upsert({ id: "" }),
      () => peers.upsert({ id: "has/slash" }),
      () => peers.upsert({ id: "x".repeat(65) }),
      () => peers.upsert({ id: "b", address: "ftp://host" }),
      () => peers.upsert({ id: "b", address: "not a url" }),
      () => peers.upsert({ id: "b", address: "http://u:p@host" }),
      () => peers.upsert({ id: "b", buckets: "default" as never }),
      () => peers.upsert({ id: "b", buckets: [""] }),
      () => peers.upsert({ id: "b", token: "" }),
      () => peers.upsert({ id: "b", token: "with space" }),
      // Another peer already has that address.
      () => peers.upsert({ id: "c", address: "http://127.0.0.1:7421/" }),
      () => peers.markUp("b", -1),
      () => peers.markUp("b", Number.NaN),
      () => peers.markUp("b", 1, -5),
      () => peers.markDown("b", ""),
      () => peers.noteNodeId("b", "bad node id"),
      () => peers.remove("b", {} as never),
      () => peers.get(7 as never),
    ];
    for (const call of bad) invalidArgument(call);
    expect(JSON.stringify(peers.list())).toBe(before);
    expect(store.db.prepare("SELECT count(*) FROM tw_peers").pluck().get()).toBe(1);
  });

  it("derives, from any http(s) address, an id that is a valid peer id and stable", () => {
    fc.assert(
      fc.property(fc.webUrl({ validSchemes: ["http", "https"] }), (url) => {
        const clean = url.replace(/[?#].*$/, "");
        let id: string;
        try {
          id = idFromAddress(clean);
        } catch {
          return; // e.g. a URL with credentials: refused, not mangled
        }
        expect(id).toMatch(/^[A-Za-z0-9._:-]{1,64}$/);
        expect(idFromAddress(`${clean.replace(/\/+$/, "")}/`)).toBe(id);
      }),
      { numRuns: 200 },
    );
  });
});
