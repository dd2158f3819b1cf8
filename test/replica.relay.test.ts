/**
 * Relay mode, the hub's: a replica opened with `relay: true` keeps, merges and
 * serves onward the log of tables it does not have, by bucket; two replicas
 * that only ever talk to such a hub converge; tracking the table on the hub
 * later writes the relayed rows into it. A replica that is not a relay keeps
 * refusing changes for tables it does not track.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, InvalidChangeError, Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-relay-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

const SCHEMA = `
  CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty, data BLOB);
  CREATE TABLE pairs (k1 TEXT, k2 INTEGER, v, PRIMARY KEY (k1, k2)) WITHOUT ROWID;`;

function open(nodeId: string, options: { relay?: boolean } = {}): Replica {
  const r = Replica.open(join(tempDir(), `${nodeId}.db`), { nodeId, ...options });
  opened.push(r);
  return r;
}

function app(nodeId: string): Replica {
  const r = open(nodeId);
  r.store.db.exec(SCHEMA);
  r.track("items");
  r.track("pairs", { bucket: "pairs" });
  return r;
}

/** One sync cycle as a SyncManager would run it against the hub: push, then pull. */
function cycle(r: Replica, hub: Replica, cursors: Map<string, string>, buckets = ["default", "pairs"]): void {
  const pushKey = `${r.nodeId}>hub`;
  const pushed = r.changesSince(cursors.get(pushKey) ?? "0", { excludeOrigin: hub.nodeId, limit: 100_000 });
  hub.apply(JSON.parse(JSON.stringify(pushed.changes)));
  cursors.set(pushKey, pushed.cursor);
  const pullKey = `hub>${r.nodeId}`;
  for (;;) {
    const page = hub.changesSince(cursors.get(pullKey) ?? "0", {
      buckets,
      excludeOrigin: r.nodeId,
      limit: 3,
    });
    r.apply(JSON.parse(JSON.stringify(page.changes)));
    cursors.set(pullKey, page.cursor);
    if (!page.hasMore) break;
  }
}

function rows(r: Replica): string[] {
  return [dump(r.store.db, "items", "id"), dump(r.store.db, "pairs", "k1, k2")];
}

describe("relay", () => {
  it("relays tables it does not have between two replicas, which converge", () => {
    const [a, b, hub] = [app("a"), app("b"), open("hub", { relay: true })];
    const cursors = new Map<string, string>();
    const run = (r: Replica, sql: string, ...params: unknown[]) => r.store.db.prepare(sql).run(...params);
    run(a, "INSERT INTO items VALUES (1, 'pen', 2, x'00ff'), (2, 'cup', 9223372036854775807, NULL)");
    run(a, "INSERT INTO pairs VALUES ('x', 1, 1.5), ('y', 2, 'why')");
    cycle(a, hub, cursors);
    cycle(b, hub, cursors);
    expect(rows(b)).toEqual(rows(a));
    run(b, "UPDATE items SET qty = 3 WHERE id = 1");
    run(b, "DELETE FROM pairs WHERE k1 = 'y'");
    run(a, "UPDATE items SET name = 'mug' WHERE id = 2");
    run(a, "INSERT INTO items VALUES (3, 'ink', 1, NULL)");
    for (const r of [b, a, b]) cycle(r, hub, cursors);
    expect(rows(b)).toEqual(rows(a));
    expect(rows(a)[0]).toContain('"mug"');
    // The hub has no such tables, only their log, and keeps it compacted.
    const tables = hub.store.db.prepare("SELECT name FROM sqlite_schema WHERE name IN ('items', 'pairs')");
    expect(tables.all()).toEqual([]);
    expect(hub.tables()).toEqual([]);
    expect(hub.relayedTables()).toEqual([
      { table: "items", bucket: "default", key: [""], columns: [] },
      { table: "pairs", bucket: "pairs", key: ["", ""], columns: [] },
    ]);
    // items: 3 rows of a row entry and 3 columns; pairs: 1 row of 2, 1 tombstone.
    expect(hub.stats()).toMatchObject({ rows: 4, tombstones: 1, relayed: 15, entries: 15 });
  });

  it("serves relayed changes by bucket, with their bucket, original clock and origin", () => {
    const [a, hub] = [app("a"), open("hub", { relay: true })];
    a.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL)").run();
    a.store.db.prepare("INSERT INTO pairs VALUES ('x', 1, 'v')").run();
    const sent = a.changesSince(0).changes;
    expect(sent.map((c) => c.bucket)).toEqual(["default", "pairs"]);
    hub.apply(sent);
    const pairs = hub.changesSince(0, { buckets: ["pairs"] }).changes;
    expect(pairs).toHaveLength(1);
    expect(pairs[0]).toMatchObject({ ...sent[1], seq: 2 });
    expect(hub.changesSince(0, { buckets: ["default"] }).changes.map((c) => c.table)).toEqual(["items"]);
    expect(hub.changesSince(0, { excludeOrigin: "a" }).changes).toEqual([]);
  });

  it("leaves out by source what a peer sent, still relays it to the others, and serves a local write over it", () => {
    const [a, b, c, hub] = [app("a"), app("b"), app("c"), open("hub", { relay: true })];
    const wire = (changes: Change[]) => JSON.parse(JSON.stringify(changes)) as Change[];
    a.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL), (2, 'cup', 3, NULL)").run();
    hub.apply(wire(a.changesSince(0).changes), { from: "a" });
    // The hub relays a's changes to b and c, never back to a (by source, though their origin is a too).
    expect(hub.changesSince(0, { excludeSource: "a" }).changes).toEqual([]);
    expect(hub.changesSince(0, { excludeSource: "b" }).changes).toHaveLength(2);
    b.apply(wire(hub.changesSince(0).changes), { from: "hub" });
    // b pulled them from the hub: nothing to push back to it, but c may still be sent them.
    const back = b.changesSince(0, { excludeOrigin: "hub", excludeSource: "hub" });
    expect(back.changes).toEqual([]);
    expect(b.changesSince(0, { excludeSource: "c" }).changes.map((x) => x.pk)).toEqual([[1], [2]]);
    // A local write over a pulled cell is b's own: it is pushed.
    b.store.db.prepare("UPDATE items SET qty = 7 WHERE id = 2").run();
    b.store.db.prepare("DELETE FROM items WHERE id = 1").run();
    const mine = b.changesSince(back.cursor, { excludeOrigin: "hub", excludeSource: "hub" }).changes;
    expect(mine.map((x) => [x.op, x.pk, x.columns])).toEqual([
      ["update", [2], { qty: 7 }],
      ["delete", [1], {}],
    ]);
    hub.apply(wire(mine), { from: "b" });
    c.apply(wire(hub.changesSince(0, { excludeOrigin: "c", excludeSource: "c" }).changes), { from: "hub" });
    expect(rows(c)).toEqual(rows(b));
    expect(() => b.changesSince(0, { excludeSource: "not a node" })).toThrow(InvalidArgumentError);
    expect(() => b.apply([], { from: "" })).toThrow(InvalidArgumentError);
  });

  it("writes the relayed rows into the table once the hub tracks it, and materialises from then on", () => {
    const [a, hub] = [app("a"), open("hub", { relay: true })];
    const run = (sql: string) => a.store.db.prepare(sql).run();
    run("INSERT INTO items VALUES (1, 'pen', 2, NULL), (2, 'cup', 1, x'01')");
    run("UPDATE items SET qty = 5 WHERE id = 1");
    run("DELETE FROM items WHERE id = 2");
    hub.apply(a.changesSince(0).changes);
    hub.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty, data BLOB)");
    expect(hub.track("items")).toMatchObject({ table: "items", bucket: "default" });
    expect(hub.relayedTables()).toEqual([]);
    expect(dump(hub.store.db, "items", "id")).toBe(dump(a.store.db, "items", "id"));
    const cursor = a.changesSince(0).cursor;
    run("INSERT INTO items VALUES (3, 'ink', 7, NULL)");
    hub.apply(a.changesSince(cursor).changes);
    expect(dump(hub.store.db, "items", "id")).toBe(dump(a.store.db, "items", "id"));
    // Served onward from the table now, the same as before.
    const b = app("b");
    b.apply(hub.changesSince(0, { excludeOrigin: "b" }).changes);
    expect(dump(b.store.db, "items", "id")).toBe(dump(a.store.db, "items", "id"));
  });

  it("keeps a relayed insert as one log row, its values in the row entry, a newer column entry over them", () => {
    const [a, hub] = [app("a"), open("hub", { relay: true })];
    const logRows = () => hub.store.db.prepare("SELECT count(*) FROM tw_log").pluck().get();
    a.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 9223372036854775807, x'00ff')").run();
    const insert = a.changesSince(0).changes;
    a.store.db.prepare("UPDATE items SET qty = 5 WHERE id = 1").run();
    const update = a.changesSince(insert.at(-1)!.seq).changes;
    hub.apply(insert);
    expect(logRows()).toBe(1);
    hub.apply(update);
    expect(logRows()).toBe(2);
    expect(hub.stats()).toMatchObject({ rows: 1, relayed: 4, entries: 4 });
    // The insert is served with the values the update did not overwrite, the update with its own.
    const served = hub.changesSince(0).changes;
    expect(served.map((c) => [c.op, c.columns])).toEqual([
      ["insert", { name: "pen", data: { blob: "AP8=" } }],
      ["update", { qty: 5 }],
    ]);
    // Delivered in reverse order, the insert loses the column to the newer update.
    const late = open("late", { relay: true });
    late.apply(update);
    late.apply(insert);
    expect(late.changesSince(0).changes.map((c) => c.columns)).toEqual([
      { qty: 5 },
      { name: "pen", data: { blob: "AP8=" } },
    ]);
    for (const r of [hub, late]) {
      const b = app(`b-${r.nodeId}`);
      b.apply(r.changesSince(0).changes);
      expect(dump(b.store.db, "items", "id")).toBe(dump(a.store.db, "items", "id"));
    }
    // Tracked on the hub without the data column: the row lands, data's value waits in the log.
    hub.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty)");
    hub.track("items");
    expect(hub.store.db.prepare("SELECT vals FROM tw_log WHERE vals IS NOT NULL").all()).toEqual([]);
    expect(hub.stats()).toMatchObject({ pending: 1 });
    hub.store.db.exec("ALTER TABLE items ADD COLUMN data BLOB");
    hub.track("items");
    expect(dump(hub.store.db, "items", "id")).toBe(dump(a.store.db, "items", "id"));
  });

  it("relays a column named __proto__ like any other", () => {
    const schema = `CREATE TABLE odd (id INTEGER PRIMARY KEY, "__proto__" TEXT, constructor INTEGER);`;
    const [a, b, hub] = [open("a"), open("b"), open("hub", { relay: true })];
    for (const r of [a, b]) {
      r.store.db.exec(schema);
      r.track("odd");
    }
    a.store.db.prepare("INSERT INTO odd VALUES (1, 'kept', 7)").run();
    hub.apply(JSON.parse(JSON.stringify(a.changesSince(0).changes)));
    b.apply(JSON.parse(JSON.stringify(hub.changesSince(0).changes)));
    // Read raw: a row object cannot hold a key named __proto__.
    const read = (r: Replica) =>
      r.store.db.prepare(`SELECT id, "__proto__", constructor FROM odd`).raw(true).all();
    expect(read(b)).toEqual([[1, "kept", 7]]);
  });

  it("checks relayed changes for shape and refuses a bad batch whole", () => {
    const hub = open("hub", { relay: true });
    const good: Change = {
      table: "items",
      bucket: "default",
      pk: [1],
      op: "insert",
      columns: { name: "pen" },
      hlc: (BigInt(Date.now()) << 16n).toString(16).padStart(16, "0"),
      origin: "a",
      seq: 1,
    };
    const cases: Array<[Partial<Change> | Record<string, unknown>, RegExp]> = [
      [{ table: "other", bucket: undefined }, /not tracked here, and has no bucket/],
      [{ bucket: "" }, /has bucket ""/],
      [{ table: "tw_log" }, /names table "tw_log"/],
      [{ pk: [] }, /key of 0 parts/],
      [{ pk: [null] }, /NULL key/],
      [{ columns: { name: { real: "x" } } }, /malformed value/],
    ];
    for (const [spoil, message] of cases) {
      expect(
        () =>
          hub.apply([
            { ...good, pk: [0] },
            { ...good, ...spoil },
          ]),
        message.source,
      ).toThrow(message);
    }
    expect(() => hub.apply([good, { ...good, pk: [1, 2] }])).toThrow(/key of 2 parts; items has 1/);
    expect(hub.stats()).toMatchObject({ entries: 0 });
    expect(hub.store.db.prepare("SELECT count(*) FROM tw_tracked").pluck().get()).toBe(0);
    hub.apply([good]);
    expect(() => hub.apply([{ ...good, pk: [1, 2] }])).toThrow(InvalidChangeError);
  });

  it("is off by default: a replica keeps aside changes for tables it does not track", () => {
    const [a, b] = [app("a"), open("b")];
    a.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 2, NULL)").run();
    expect(b.apply(a.changesSince(0).changes)).toMatchObject({ applied: 0, quarantined: 1 });
    expect(b.conflicts().quarantined).toMatchObject([{ kind: "failed", reason: /not tracked here/ }]);
    expect(b.relayedTables()).toEqual([]);
    expect(() => open("c", { relay: "yes" as unknown as boolean })).toThrow(InvalidArgumentError);
  });
});
