/**
 * CursorStore: in-memory sets marked dirty, flushes in one transaction with
 * busy retry that re-mark on failure, debounce, delete, getAll, checkpoint,
 * close, and reopening restores every flushed cursor; flushes, rows and
 * failures counted in /metrics, busy retries under "cursor.flush". Real
 * files; a second connection plays the other process.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore, InvalidArgumentError, metricsRegistry, openStore, type Store } from "../src/index.js";
import { sleep, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-cursors-");
const stores: Store[] = [];
const others: Database.Database[] = [];
afterEach(() => {
  for (const d of others.splice(0)) d.close();
  for (const s of stores.splice(0)) s.close();
});

function store(path = join(tempDir(), "c.db"), options = {}): Store {
  const s = openStore(path, options);
  stores.push(s);
  return s;
}

/** A metric's value now (for a labelled one, the series with these labels). */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  if (!m) throw new Error(`metric ${name} is not registered`);
  const values = (await m.get()).values;
  const match = values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return match?.value ?? 0;
}

/** What another connection sees in the file. */
function onDisk(path: string): Array<{ peer: string; bucket: string; direction: string; value: string }> {
  const d = new Database(path, { readonly: true });
  try {
    return d
      .prepare("SELECT peer, bucket, direction, value FROM tw_cursors ORDER BY peer, bucket, direction")
      .all() as [];
  } finally {
    d.close();
  }
}

describe("CursorStore", () => {
  it("starts unknown peers at 0, and keeps sets in memory until flushed", () => {
    const s = store();
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    expect(c.get("hub")).toBeUndefined();
    expect(c.getOrStart("hub")).toBe("0");
    c.set("hub", 42);
    c.set({ peer: "hub", bucket: "catalog", direction: "push" }, "1700000000000-3");
    expect(c.get("hub")).toBe("42");
    expect(c.getOrStart({ peer: "hub", bucket: "catalog", direction: "push" })).toBe("1700000000000-3");
    expect(c.getOrStart({ peer: "hub", bucket: "catalog" })).toBe("0");
    expect(c.dirtyCount()).toBe(2);
    expect(onDisk(s.path)).toEqual([]);
    expect(c.flushDirty()).toBe(2);
    expect(c.dirtyCount()).toBe(0);
    expect(c.flushDirty()).toBe(0);
    expect(onDisk(s.path)).toEqual([
      { peer: "hub", bucket: "*", direction: "pull", value: "42" },
      { peer: "hub", bucket: "catalog", direction: "push", value: "1700000000000-3" },
    ]);
  });

  it("restores every flushed cursor when reopened", () => {
    const path = join(tempDir(), "c.db");
    const s1 = openStore(path);
    const c1 = new CursorStore(s1, { flushIntervalMs: 0 });
    c1.set("a", 1);
    c1.set("b", 2n);
    c1.flushDirty();
    c1.set("a", 3);
    c1.close(); // flushes "a" = 3
    s1.close();
    const c2 = new CursorStore(store(path));
    expect(c2.getAll().map((x) => [x.peer, x.value, x.dirty])).toEqual([
      ["a", "3", false],
      ["b", "2", false],
    ]);
  });

  it("flushes dirty cursors when the store closes", () => {
    const path = join(tempDir(), "c.db");
    const s = openStore(path);
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    c.set("peer", 7);
    s.close();
    expect(onDisk(path)).toEqual([{ peer: "peer", bucket: "*", direction: "pull", value: "7" }]);
    expect(() => c.set("peer", 8)).toThrow(/closed/);
  });

  it("re-marks cursors dirty when a flush fails, and flushes them later", () => {
    const path = join(tempDir(), "c.db");
    const s = store(path, { busyTimeoutMs: 20, retry: { attempts: 1, baseMs: 1, maxMs: 1 } });
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    c.set("a", 1);
    c.set("b", 1);
    const other = new Database(path);
    others.push(other);
    other.exec("BEGIN IMMEDIATE");
    expect(() => c.flushDirty()).toThrow(/locked|busy/i);
    expect(c.dirtyCount()).toBe(2);
    expect(c.getAll().every((x) => x.dirty)).toBe(true);
    other.exec("ROLLBACK");
    expect(c.flushDirty()).toBe(2);
    expect(c.dirtyCount()).toBe(0);
    expect(onDisk(path).map((x) => x.peer)).toEqual(["a", "b"]);
  });

  it("counts flushes, rows flushed and failed flushes, and its busy retries as cursor.flush", async () => {
    const path = join(tempDir(), "c.db");
    const retry = { attempts: 2, baseMs: 1, maxMs: 1 };
    const s = store(path, { busyTimeoutMs: 0, retry });
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    const read = async () => ({
      flushes: await metric("tidewire_cursor_flushes_total"),
      rows: await metric("tidewire_cursor_rows_flushed_total"),
      errors: await metric("tidewire_cursor_flush_errors_total"),
      busy: await metric("tidewire_sqlite_busy_retries_total", { operation: "cursor.flush" }),
    });
    const before = await read();
    c.set("a", 1);
    c.set("b", 1);
    c.set("c", 1);
    expect(c.flushDirty()).toBe(3);
    expect(c.flushDirty()).toBe(0); // nothing dirty: not a flush
    const other = new Database(path);
    others.push(other);
    other.exec("BEGIN IMMEDIATE");
    c.set("a", 2);
    expect(() => c.flushDirty()).toThrow(/locked|busy/i);
    other.exec("ROLLBACK");
    expect(c.flushDirty()).toBe(1);
    const after = await read();
    expect(after.flushes - before.flushes).toBe(3);
    expect(after.rows - before.rows).toBe(4);
    expect(after.errors - before.errors).toBe(1);
    expect(after.busy - before.busy).toBe(retry.attempts);
  });

  it("debounces: dirty cursors are flushed flushIntervalMs after the first set", async () => {
    const s = store();
    const c = new CursorStore(s, { flushIntervalMs: 30 });
    c.set("a", 1);
    c.set("a", 2);
    expect(onDisk(s.path)).toEqual([]);
    await sleep(120);
    expect(c.dirtyCount()).toBe(0);
    expect(onDisk(s.path).map((x) => x.value)).toEqual(["2"]);
  });

  it("deletes at once, from memory and the file", () => {
    const s = store();
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    c.set("a", 1);
    c.set("b", 1);
    c.flushDirty();
    c.set("b", 2);
    expect(c.delete("b")).toBe(true);
    expect(c.delete("b")).toBe(false);
    expect(c.dirtyCount()).toBe(0);
    expect(c.get("b")).toBeUndefined();
    expect(onDisk(s.path).map((x) => x.peer)).toEqual(["a"]);
  });

  it("checkpoints the WAL, and close flushes then checkpoints", () => {
    const s = store();
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    c.set("a", 1);
    c.flushDirty();
    const frames = () =>
      (s.db.pragma("wal_checkpoint(PASSIVE)") as Array<{ log: number; checkpointed: number }>)[0];
    c.checkpoint();
    const after = frames();
    expect(after?.checkpointed).toBe(after?.log);
    c.set("a", 2);
    c.close();
    c.close();
    expect(onDisk(s.path).map((x) => x.value)).toEqual(["2"]);
  });

  it("refuses bad keys and values and changes nothing", () => {
    const s = store();
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    for (const v of [-1, 1.5, "", "x".repeat(257), {}, null]) {
      expect(() => c.set("a", v as never), String(v)).toThrow(InvalidArgumentError);
    }
    expect(() => c.set("", 1)).toThrow(/peer/);
    expect(() => c.set({ peer: "a", direction: "sideways" as never }, 1)).toThrow(/direction/);
    expect(() => c.set({ peer: "a", bucket: "" }, 1)).toThrow(/bucket/);
    expect(() => new CursorStore(s, { flushIntervalMs: -1 })).toThrow(/flushIntervalMs/);
    expect(c.dirtyCount()).toBe(0);
    expect(c.getAll()).toEqual([]);
  });
});

describe("CursorStore.deletePeer and reload", () => {
  it("deletes every cursor of one peer from the file and the cache; reload sees another process's deletes", () => {
    const path = join(tempDir(), "c.db");
    const s = store(path);
    const c = new CursorStore(s, { flushIntervalMs: 0 });
    for (const peer of ["hub", "hub-2"]) {
      c.set({ peer, bucket: "a", direction: "push" }, 1);
      c.set({ peer, bucket: "b", direction: "pull" }, 2);
    }
    c.flushDirty();
    expect(c.deletePeer("hub")).toBe(2);
    expect(c.getAll().map((x) => x.peer)).toEqual(["hub-2", "hub-2"]);
    expect(onDisk(path).map((x) => x.peer)).toEqual(["hub-2", "hub-2"]);
    expect(c.deletePeer("nobody")).toBe(0);
    expect(() => c.deletePeer("")).toThrow(InvalidArgumentError);

    // Another process deletes hub-2's cursors while this one holds an unflushed set of its own.
    const other = new CursorStore(store(path), { flushIntervalMs: 0 });
    c.set({ peer: "hub-2", bucket: "c" }, 9);
    expect(other.deletePeer("hub-2")).toBe(2);
    c.reload();
    expect(c.getAll().map((x) => [x.peer, x.bucket, x.value, x.dirty])).toEqual([["hub-2", "c", "9", true]]);
  });
});
