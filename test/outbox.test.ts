/**
 * Outbox: storing and reading messages (text and bytes), every state move and
 * every refused one, claim order and due times, listing and paging, counts and
 * purge, bad input that must write nothing, and a property test over random
 * operation sequences followed by a drain.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DuplicateMessageError,
  IllegalTransitionError,
  InvalidArgumentError,
  OUTBOX_STATES,
  Outbox,
  type OutboxOptions,
  type OutboxState,
  openStore,
  type Store,
  type StoreMeta,
} from "../src/index.js";

// The spec's graph, written out here rather than read from the module under test.
const LEGAL: Record<OutboxState, OutboxState[]> = {
  incoming: ["active"],
  active: ["delivered", "deferred", "bounced"],
  deferred: ["active"],
  delivered: [],
  bounced: [],
};
const BACKOFF = { baseMs: 1000, maxMs: 60_000, factor: 2, jitter: 0.2 };
const T0 = Date.UTC(2025, 0, 1);

let dir: string;
let path: string;
let store: Store;
let now: number;
const clock = () => now;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tidewire-outbox-"));
  path = join(dir, "outbox.db");
  store = openStore(path);
  now = T0;
});

afterEach(() => {
  if (store.isOpen) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function outbox(name = "default", options: OutboxOptions = {}): Outbox {
  return new Outbox(store, name, { clock, backoff: BACKOFF, ...options });
}

/** Everything a move could touch, for every outbox in the file. */
function fingerprint(): string {
  return JSON.stringify(
    store.db
      .prepare(
        `SELECT id, spool, state, attempts, max_attempts, next_attempt_at, last_error, updated_at, headers, hex(body)
           FROM tw_outbox ORDER BY id`,
      )
      .all(),
  );
}

/** A message of `ob` brought to `state` through legal moves only. */
function inState(ob: Outbox, state: OutboxState, body = "m"): number {
  const { id } = ob.store(body);
  if (state === "incoming") return id;
  expect(ob.moveToState(id, "active")).toBe(true);
  if (state === "deferred") expect(ob.defer(id, "try later")?.state).toBe("deferred");
  else if (state !== "active") expect(ob.moveToState(id, state)).toBe(true);
  expect(ob.getMeta(id)?.state).toBe(state);
  return id;
}

describe("store, get and getMeta", () => {
  it("keeps a text message with its headers, size in bytes and defaults", () => {
    const ob = outbox();
    const body = "héllo ✓ 😀";
    const meta = ob.store(body, { headers: { to: "a@b.c", n: [1, { deep: true }] }, priority: 3 });
    expect(meta).toEqual({
      id: meta.id,
      messageId: null,
      outbox: "default",
      state: "incoming",
      headers: { to: "a@b.c", n: [1, { deep: true }] },
      bodyKind: "text",
      size: Buffer.byteLength(body),
      priority: 3,
      attempts: 0,
      maxAttempts: 5,
      nextAttemptAt: null,
      lastError: null,
      createdAt: T0,
      updatedAt: T0,
    });
    expect(meta.size).toBeGreaterThan(body.length);
    expect(ob.getMeta(meta.id)).toEqual(meta);
    expect(ob.getMeta(meta.id)).not.toHaveProperty("body");
    expect(ob.get(meta.id)).toEqual({ ...meta, body });
    expect(ob.store("x").headers).toEqual({});
  });

  it("takes maxAttempts from the message, else from the outbox, else 5", () => {
    expect(outbox().store("a").maxAttempts).toBe(5);
    const ob = outbox("two", { maxAttempts: 2 });
    expect(ob.store("a").maxAttempts).toBe(2);
    expect(ob.store("a", { maxAttempts: 9 }).maxAttempts).toBe(9);
  });

  it("round-trips binary bodies byte for byte", () => {
    const ob = outbox();
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const big = randomBytes(256 * 1024);
    const backing = new Uint8Array([9, 9, 1, 2, 0, 255, 9, 9]);
    const view = backing.subarray(2, 6);
    const cases: Array<[Uint8Array, Buffer]> = [
      [every, every],
      [big, big],
      [view, Buffer.from([1, 2, 0, 255])],
      [new Uint8Array([0, 0, 0]), Buffer.from([0, 0, 0])],
      [Buffer.alloc(0), Buffer.alloc(0)],
    ];
    for (const [input, expected] of cases) {
      const meta = ob.store(input);
      expect(meta.bodyKind).toBe("binary");
      expect(meta.size).toBe(expected.length);
      const got = ob.get(meta.id)!.body;
      expect(Buffer.isBuffer(got)).toBe(true);
      expect((got as Buffer).equals(expected)).toBe(true);
    }
    // Bytes that happen to be valid UTF-8 stay bytes; text that looks binary stays text.
    expect(ob.get(ob.store(Buffer.from("plain")).id)!.body).toEqual(Buffer.from("plain"));
    const odd = "\u0000\uffff\r\n😀";
    expect(ob.get(ob.store(odd).id)!.body).toBe(odd);
    expect(ob.get(ob.store("").id)!.body).toBe("");
  });

  it("gives undefined for an unknown id or another outbox's message", () => {
    const a = outbox("a");
    const b = outbox("b");
    const { id } = a.store("mine");
    expect(b.get(id)).toBeUndefined();
    expect(b.getMeta(id)).toBeUndefined();
    expect(a.get(id + 1000)).toBeUndefined();
    expect(b.claim(10)).toEqual([]);
    expect(b.moveToState(id, "active")).toBe(false);
    expect(a.counts().total).toBe(1);
    expect(b.counts().total).toBe(0);
  });

  it("survives closing and reopening the file", () => {
    const ob = outbox();
    const { id } = ob.store(Buffer.from([1, 2, 3]), { headers: { k: "v" } });
    ob.moveToState(id, "active");
    store.close();
    store = openStore(path);
    const again = outbox();
    expect(again.get(id)).toMatchObject({ state: "active", attempts: 1, headers: { k: "v" } });
    expect(again.get(id)!.body).toEqual(Buffer.from([1, 2, 3]));
  });
});

describe("transitions", () => {
  it("incoming -> active by claim counts an attempt, then -> delivered", () => {
    const ob = outbox();
    const { id } = ob.store("m");
    now += 5;
    const [m] = ob.claim(1);
    expect(m).toMatchObject({ id, state: "active", attempts: 1, updatedAt: T0 + 5, body: "m" });
    now += 5;
    expect(ob.delivered(id)).toBe(true);
    expect(ob.getMeta(id)).toMatchObject({ state: "delivered", attempts: 1, updatedAt: T0 + 10 });
    expect(ob.delivered(id)).toBe(false);
    expect(ob.defer(id, "late")).toBeUndefined();
    expect(ob.claim(1)).toEqual([]);
  });

  it("active -> deferred waits out the backoff, then a claim makes it active again", () => {
    const ob = outbox();
    const { id } = ob.store("m");
    ob.claim(1);
    const d = ob.defer(id, new Error("421 try later"))!;
    expect(d).toMatchObject({ state: "deferred", attempts: 1, lastError: "421 try later", updatedAt: T0 });
    const delay = d.nextAttemptAt! - now;
    expect(delay).toBeGreaterThanOrEqual(800);
    expect(delay).toBeLessThanOrEqual(1200);

    now = d.nextAttemptAt! - 1;
    expect(ob.claim(10)).toEqual([]);
    now = d.nextAttemptAt!;
    const [again] = ob.claim(10);
    expect(again).toMatchObject({ id, state: "active", attempts: 2, nextAttemptAt: null });
    expect(again!.lastError).toBe("421 try later");

    const d2 = ob.defer(id, "still busy")!;
    expect(d2.nextAttemptAt! - now).toBeGreaterThanOrEqual(1600);
    expect(d2.nextAttemptAt! - now).toBeLessThanOrEqual(2400);
  });

  it("bounces after the last attempt and keeps the last error", () => {
    const ob = outbox("x", { maxAttempts: 2 });
    const { id } = ob.store("m");
    ob.claim(1);
    expect(ob.defer(id, "first")?.state).toBe("deferred");
    now += 60_000;
    expect(ob.claim(1)).toHaveLength(1);
    const b = ob.defer(id, "second")!;
    expect(b).toMatchObject({ state: "bounced", attempts: 2, lastError: "second", nextAttemptAt: null });
    now += 60_000;
    expect(ob.claim(1)).toEqual([]);

    const once = ob.store("m", { maxAttempts: 1 });
    ob.claim(1);
    expect(ob.defer(once.id, "no")?.state).toBe("bounced");
  });

  it("moveToState makes every legal move with its side effects", () => {
    const ob = outbox();
    const id = inState(ob, "incoming");
    now += 1;
    expect(ob.moveToState(id, "active", { from: "incoming" })).toBe(true);
    expect(ob.getMeta(id)).toMatchObject({ state: "active", attempts: 1, updatedAt: T0 + 1 });
    expect(ob.moveToState(id, "deferred", { from: ["active"] })).toBe(true);
    const d = ob.getMeta(id)!;
    expect(d.state).toBe("deferred");
    expect(d.nextAttemptAt! - now).toBeGreaterThanOrEqual(800);
    // An operator may retry a deferred message before it is due.
    expect(ob.moveToState(id, "active")).toBe(true);
    expect(ob.getMeta(id)).toMatchObject({ state: "active", attempts: 2, nextAttemptAt: null });
    expect(ob.moveToState(id, "bounced")).toBe(true);
    expect(ob.getMeta(id)!.state).toBe("bounced");

    const id2 = inState(ob, "active");
    expect(ob.moveToState(id2, "delivered", { from: "active" })).toBe(true);
    expect(ob.getMeta(id2)).toMatchObject({ state: "delivered", attempts: 1 });
  });

  it("refuses every illegal move and changes nothing", () => {
    const ob = outbox();
    for (const from of OUTBOX_STATES) {
      for (const to of OUTBOX_STATES) {
        if (LEGAL[from].includes(to)) continue;
        const id = inState(ob, from);
        const before = fingerprint();
        if (to === "incoming") {
          expect(() => ob.moveToState(id, to)).toThrow(InvalidArgumentError);
          expect(() => ob.moveToState(id, to)).toThrow(/^to: /);
        } else {
          expect(() => ob.moveToState(id, to)).toThrow(IllegalTransitionError);
          expect(() => ob.moveToState(id, to)).toThrow(`message ${id} is ${from} and cannot move to ${to}`);
        }
        expect(() => ob.moveToState(id, to, { from })).toThrow(InvalidArgumentError);
        expect(fingerprint()).toBe(before);
      }
    }
  });

  it("returns false when the message is not in `from`, and for an unknown id", () => {
    const ob = outbox();
    const id = inState(ob, "incoming");
    expect(ob.moveToState(id, "active", { from: "deferred" })).toBe(false);
    expect(ob.moveToState(id, "delivered", { from: "active" })).toBe(false);
    expect(ob.moveToState(id + 99, "active")).toBe(false);
    expect(ob.delivered(id)).toBe(false);
    expect(ob.defer(id, "x")).toBeUndefined();
    expect(ob.getMeta(id)).toMatchObject({ state: "incoming", attempts: 0 });
  });

  it("refuses to defer by moveToState a message whose attempts are spent", () => {
    const ob = outbox("one", { maxAttempts: 1 });
    const id = inState(ob, "active");
    const before = fingerprint();
    expect(() => ob.moveToState(id, "deferred")).toThrow(/spent all 1 attempts/);
    expect(() => ob.moveToState(id, "deferred")).toThrow(IllegalTransitionError);
    expect(fingerprint()).toBe(before);
    expect(ob.moveToState(id, "bounced")).toBe(true);
  });
});

describe("claim", () => {
  it("takes due messages by priority, then oldest first, up to the limit", () => {
    const ob = outbox();
    const ids = [0, 5, 1, 5, -2, 1].map((priority) => ob.store(`p${priority}`, { priority }).id);
    const first = ob.claim(3);
    expect(first.map((m) => m.id)).toEqual([ids[1], ids[3], ids[2]]);
    expect(first.map((m) => m.body)).toEqual(["p5", "p5", "p1"]);
    expect(ob.claim(10).map((m) => m.id)).toEqual([ids[5], ids[0], ids[4]]);
    expect(ob.claim(10)).toEqual([]);
    expect(ob.counts()).toMatchObject({ active: 6, incoming: 0 });
  });

  it("mixes due deferred messages with incoming ones and skips those not yet due", () => {
    const ob = outbox();
    const a = inState(ob, "deferred");
    const b = inState(ob, "deferred");
    const c = ob.store("new").id;
    const dueA = ob.getMeta(a)!.nextAttemptAt!;
    const dueB = ob.getMeta(b)!.nextAttemptAt!;
    now = Math.min(dueA, dueB);
    const firstDue = dueA <= dueB ? a : b;
    expect(
      ob
        .claim(10)
        .map((m) => m.id)
        .sort((x, y) => x - y),
    ).toEqual([firstDue, c].sort((x, y) => x - y));
  });

  it("never hands one message to two connections", () => {
    const other = openStore(path);
    try {
      const a = outbox();
      const b = new Outbox(other, "default", { clock });
      for (let i = 0; i < 200; i++) a.store(`m${i}`);
      const seen: number[] = [];
      for (let round = 0; round < 100; round++) {
        for (const m of [...a.claim(3), ...b.claim(4)]) seen.push(m.id);
      }
      expect(seen).toHaveLength(200);
      expect(new Set(seen).size).toBe(200);
    } finally {
      other.close();
    }
  });
});

describe("list", () => {
  function fill(ob: Outbox): StoreMeta[] {
    const out: StoreMeta[] = [];
    for (let i = 0; i < 25; i++) {
      now = T0 + i;
      out.push(ob.store("x".repeat((i * 7) % 11), { priority: i % 4 }));
    }
    return out;
  }

  it("pages through every message once, in created order by default", () => {
    const ob = outbox();
    const all = fill(ob);
    const pages = [0, 10, 20, 30].map((offset) => ob.list({ limit: 10, offset }));
    expect(pages.map((p) => p.length)).toEqual([10, 10, 5, 0]);
    expect(pages.flat().map((m) => m.id)).toEqual(all.map((m) => m.id));
    expect(pages.flat()[0]).not.toHaveProperty("body");
    expect(ob.list({ order: "desc", limit: 3 }).map((m) => m.id)).toEqual(
      all
        .slice(-3)
        .reverse()
        .map((m) => m.id),
    );
    expect(ob.list()).toHaveLength(25);
  });

  it("sorts by priority, size and updated, both ways, with stable ties", () => {
    const ob = outbox();
    const all = fill(ob);
    const ids = (xs: StoreMeta[]) => xs.map((m) => m.id);

    const byPriorityDesc = [...all].sort((a, b) => b.priority - a.priority || a.id - b.id);
    expect(ids(ob.list({ sortBy: "priority", order: "desc", limit: 100 }))).toEqual(ids(byPriorityDesc));
    expect(ids(ob.list({ sortBy: "priority", order: "asc", limit: 100 }))).toEqual(
      ids(byPriorityDesc).reverse(),
    );
    // priority desc is exactly the order claim takes them in.
    const paged = [0, 7, 14, 21].flatMap((offset) =>
      ids(ob.list({ sortBy: "priority", order: "desc", limit: 7, offset })),
    );
    expect(paged).toEqual(ids(byPriorityDesc));

    const bySize = [...all].sort((a, b) => a.size - b.size || a.id - b.id);
    expect(ids(ob.list({ sortBy: "size", limit: 100 }))).toEqual(ids(bySize));
    expect(ids(ob.list({ sortBy: "size", order: "desc", limit: 100 }))).toEqual(ids(bySize).reverse());

    // Touch three old messages: they become the most recently updated.
    now = T0 + 1000;
    const touched = [all[4]!.id, all[0]!.id, all[9]!.id];
    for (const id of touched) {
      now += 1;
      ob.moveToState(id, "active");
    }
    expect(ids(ob.list({ sortBy: "updated", order: "desc", limit: 3 }))).toEqual([...touched].reverse());
    expect(ids(ob.list({ sortBy: "updated", limit: 100 })).slice(-3)).toEqual(touched);
  });

  it("filters by state, with paging and sorting", () => {
    const ob = outbox();
    const all = fill(ob);
    const active = all.filter((_, i) => i % 3 === 0).map((m) => m.id);
    for (const id of active) ob.moveToState(id, "active");
    expect(ob.list({ state: "active", limit: 100 }).map((m) => m.id)).toEqual(active);
    expect(ob.list({ state: "active", limit: 2, offset: 1 }).map((m) => m.id)).toEqual(active.slice(1, 3));
    expect(ob.list({ state: "incoming", limit: 100 })).toHaveLength(25 - active.length);
    expect(ob.list({ state: "bounced" })).toEqual([]);
    const bySize = ob.list({ state: "active", sortBy: "size", order: "desc" });
    expect(bySize.map((m) => m.size)).toEqual([...bySize.map((m) => m.size)].sort((a, b) => b - a));
    expect(bySize.every((m) => m.state === "active")).toBe(true);
  });
});

describe("counts and purge", () => {
  it("counts per state", () => {
    const ob = outbox();
    const want: Record<OutboxState, number> = {
      incoming: 3,
      active: 2,
      delivered: 4,
      deferred: 1,
      bounced: 2,
    };
    for (const s of OUTBOX_STATES) for (let i = 0; i < want[s]; i++) inState(ob, s);
    expect(ob.counts()).toEqual({ ...want, total: 12 });
    expect(outbox("empty").counts()).toEqual({
      incoming: 0,
      active: 0,
      delivered: 0,
      deferred: 0,
      bounced: 0,
      total: 0,
    });
  });

  it("removes only final messages older than the window", () => {
    const ob = outbox();
    const other = outbox("other");
    for (const s of OUTBOX_STATES) {
      inState(ob, s);
      inState(other, s);
    }
    expect(ob.purge()).toBe(0);
    now += 7 * 86_400_000 + 1;
    const fresh = inState(ob, "delivered");
    expect(ob.purge({ states: ["bounced"] })).toBe(1);
    expect(ob.purge()).toBe(1);
    expect(ob.counts()).toMatchObject({ incoming: 1, active: 1, deferred: 1, delivered: 1, bounced: 0 });
    expect(ob.getMeta(fresh)?.state).toBe("delivered");
    now += 1;
    expect(ob.purge({ olderThanMs: 0 })).toBe(1);
    expect(other.counts().total).toBe(5);
  });
});

describe("the outbox as a drop-in spool", () => {
  it("stores under the caller's id and finds, moves and settles the message by it", () => {
    const ob = outbox();
    const meta = ob.store("hello", { id: "msg-1@example" });
    expect(meta).toMatchObject({ messageId: "msg-1@example", state: "incoming" });
    expect(ob.getMeta("msg-1@example")).toEqual(meta);
    expect(ob.get("msg-1@example")).toEqual({ ...meta, body: "hello" });
    expect(ob.getMeta(meta.id)).toEqual(meta); // the number still works
    expect(ob.moveToState("msg-1@example", "active")).toBe(true);
    expect(ob.defer("msg-1@example", "421 later")).toMatchObject({
      state: "deferred",
      lastError: "421 later",
    });
    now += 60_000;
    expect(ob.claim(1).map((m) => m.messageId)).toEqual(["msg-1@example"]);
    expect(ob.delivered("msg-1@example")).toBe(true);
    expect(ob.getMeta("msg-1@example")).toMatchObject({ state: "delivered", attempts: 2 });
    // Unknown ids, and another outbox's: nothing found, nothing moved.
    expect(ob.get("nope")).toBeUndefined();
    expect(ob.moveToState("nope", "active")).toBe(false);
    expect(ob.delivered("nope")).toBe(false);
    expect(ob.defer("nope", "x")).toBeUndefined();
    expect(ob.update("nope", { priority: 1 })).toBeUndefined();
    const other = outbox("other");
    expect(other.get("msg-1@example")).toBeUndefined();
    expect(other.store("elsewhere", { id: "msg-1@example" }).messageId).toBe("msg-1@example");
  });

  it("refuses an id its outbox already holds, writing nothing", () => {
    const ob = outbox();
    ob.store("first", { id: "dup" });
    const before = fingerprint();
    let caught: unknown;
    try {
      ob.store("second", { id: "dup" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DuplicateMessageError);
    expect(caught).toMatchObject({ code: "ERR_DUPLICATE_ID", outbox: "default", messageId: "dup" });
    expect(fingerprint()).toBe(before);
    expect(ob.get("dup")?.body).toBe("first");
  });

  it("stores a message carried over as it was: state, attempts, next attempt, last error", () => {
    const ob = outbox("carried", { maxAttempts: 4 });
    const later = ob.store("d", {
      id: "d",
      state: "deferred",
      attempts: 2,
      nextAttemptAt: new Date(T0 + 5000),
      lastError: new Error("452 mailbox full"),
    });
    expect(later).toMatchObject({ state: "deferred", attempts: 2, maxAttempts: 4, nextAttemptAt: T0 + 5000 });
    expect(later.lastError).toBe("452 mailbox full");
    const done = ob.store("b", { state: "bounced", attempts: 4, lastError: "550 no such user" });
    expect(done).toMatchObject({ state: "bounced", attempts: 4, nextAttemptAt: null });
    expect(ob.store("a", { state: "active", attempts: 1 }).state).toBe("active");
    expect(ob.claim(5)).toEqual([]); // the deferred one is not due yet
    now = T0 + 5000;
    expect(ob.claim(5)).toMatchObject([{ messageId: "d", state: "active", attempts: 3 }]);
  });

  it("updates metadata without moving the message; updatedAt stays the time of its last move", () => {
    const ob = outbox();
    const id = inState(ob, "deferred");
    const before = ob.getMeta(id)!;
    now += 10;
    const after = ob.update(id, {
      headers: { to: "b@c.d" },
      priority: 7,
      maxAttempts: 9,
      nextAttemptAt: T0 + 1,
      lastError: null,
    });
    expect(after).toEqual({
      ...before,
      headers: { to: "b@c.d" },
      priority: 7,
      maxAttempts: 9,
      nextAttemptAt: T0 + 1,
      lastError: null,
    });
    // Due now (it was set back): claimed at once, with its new priority.
    expect(ob.claim(1)).toMatchObject([{ id, priority: 7, state: "active" }]);
    expect(ob.update(id, { attempts: 3 })).toMatchObject({ state: "active", attempts: 3 });
  });

  it("gives messages stored without a priority the outbox's default priority", () => {
    const ob = outbox("urgent", { defaultPriority: 5 });
    expect(ob.defaultPriority).toBe(5);
    const plain = ob.store("plain");
    const low = ob.store("low", { priority: -1 });
    const high = ob.store("high", { priority: 9 });
    expect(plain.priority).toBe(5);
    expect(ob.claim(3).map((m) => m.id)).toEqual([high.id, plain.id, low.id]);
    expect(outbox().store("x").priority).toBe(0);
  });
});

describe("bad input", () => {
  it("is refused with an error naming the argument, and nothing is written", () => {
    const ob = outbox();
    const ids = Object.fromEntries(OUTBOX_STATES.map((s) => [s, inState(ob, s)])) as Record<
      OutboxState,
      number
    >;
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const call = (fn: () => unknown) => fn as () => void;
    const cases: Array<[string, () => void]> = [
      ["body", call(() => ob.store(123 as never))],
      ["body", call(() => ob.store(null as never))],
      ["body", call(() => ob.store(undefined as never))],
      ["body", call(() => ob.store({ text: "x" } as never))],
      ["body", call(() => ob.store(new Uint16Array(2) as never))],
      ["body", call(() => ob.store("half \ud800 a pair"))],
      ["headers", call(() => ob.store("x", { headers: [] as never }))],
      ["headers", call(() => ob.store("x", { headers: "to: a" as never }))],
      ["headers", call(() => ob.store("x", { headers: null as never }))],
      ["headers", call(() => ob.store("x", { headers: new Map() as never }))],
      ["headers", call(() => ob.store("x", { headers: new Date() as never }))],
      ["headers", call(() => ob.store("x", { headers: { n: Number.NaN } }))],
      ["headers", call(() => ob.store("x", { headers: { n: 1n } }))],
      ["headers", call(() => ob.store("x", { headers: { f: () => 1 } }))],
      ["headers", call(() => ob.store("x", { headers: circular }))],
      ["headers", call(() => ob.store("x", { headers: { m: new Map([["a", 1]]) } }))],
      ["headers", call(() => ob.store("x", { headers: { when: [new Set([1])] } }))],
      ["priority", call(() => ob.store("x", { priority: 1.5 }))],
      ["priority", call(() => ob.store("x", { priority: Number.NaN }))],
      ["priority", call(() => ob.store("x", { priority: "9" as never }))],
      ["maxAttempts", call(() => ob.store("x", { maxAttempts: 0 }))],
      ["maxAttempts", call(() => ob.store("x", { maxAttempts: -1 }))],
      ["options", call(() => ob.store("x", "fast" as never))],
      ["state", call(() => ob.list({ state: "sent" as never }))],
      ["limit", call(() => ob.list({ limit: -1 }))],
      ["limit", call(() => ob.list({ limit: Number.NaN }))],
      ["offset", call(() => ob.list({ offset: -1 }))],
      ["sortBy", call(() => ob.list({ sortBy: "id; DROP TABLE tw_outbox" as never }))],
      ["order", call(() => ob.list({ order: "sideways" as never }))],
      ["limit", call(() => ob.claim(-1))],
      ["limit", call(() => ob.claim(0))],
      ["limit", call(() => ob.claim(Number.NaN))],
      ["limit", call(() => ob.claim("5" as never))],
      ["id", call(() => ob.get(-1))],
      ["id", call(() => ob.getMeta(1.5))],
      ["id", call(() => ob.delivered({ id: 1 } as never))],
      ["id", call(() => ob.get(""))],
      ["id", call(() => ob.store("x", { id: "" }))],
      ["id", call(() => ob.store("x", { id: 5 as never }))],
      ["id", call(() => ob.store("x", { id: "k".repeat(201) }))],
      ["state", call(() => ob.store("x", { state: "sent" as never }))],
      ["attempts", call(() => ob.store("x", { attempts: -1 }))],
      ["attempts", call(() => ob.store("x", { state: "active", attempts: 6 }))],
      ["attempts", call(() => ob.store("x", { attempts: 1 }))], // incoming: never tried
      ["attempts", call(() => ob.store("x", { state: "bounced" }))], // bounced without an attempt
      ["attempts", call(() => ob.store("x", { state: "deferred", attempts: 5, nextAttemptAt: T0 }))],
      ["nextAttemptAt", call(() => ob.store("x", { state: "deferred" }))],
      ["nextAttemptAt", call(() => ob.store("x", { nextAttemptAt: T0 }))],
      ["nextAttemptAt", call(() => ob.store("x", { state: "deferred", nextAttemptAt: "soon" as never }))],
      ["lastError", call(() => ob.store("x", { lastError: 42 as never }))],
      ["patch", call(() => ob.update(ids.incoming, {}))],
      ["patch", call(() => ob.update(ids.incoming, null as never))],
      ["patch", call(() => ob.update(ids.incoming, { state: "active" } as never))],
      ["attempts", call(() => ob.update(ids.incoming, { attempts: 1 }))],
      ["attempts", call(() => ob.update(ids.active, { attempts: 0 }))],
      ["attempts", call(() => ob.update(ids.deferred, { maxAttempts: 1 }))],
      ["maxAttempts", call(() => ob.update(ids.active, { maxAttempts: 0 }))],
      ["nextAttemptAt", call(() => ob.update(ids.incoming, { nextAttemptAt: T0 }))],
      ["priority", call(() => ob.update(ids.incoming, { priority: 0.5 }))],
      ["defaultPriority", call(() => new Outbox(store, "x", { defaultPriority: 0.5 }))],
      ["id", call(() => ob.defer(Number.NaN, "x"))],
      ["error", call(() => ob.defer(ids.active, 42 as never))],
      ["id", call(() => ob.moveToState(0, "active"))],
      ["to", call(() => ob.moveToState(ids.incoming, "sent" as never))],
      ["to", call(() => ob.moveToState(ids.active, "incoming"))],
      ["from", call(() => ob.moveToState(ids.incoming, "active", { from: "sent" as never }))],
      ["from", call(() => ob.moveToState(ids.incoming, "active", { from: [] }))],
      ["from", call(() => ob.moveToState(ids.incoming, "active", { from: ["incoming", "delivered"] }))],
      ["olderThanMs", call(() => ob.purge({ olderThanMs: -1 }))],
      ["olderThanMs", call(() => ob.purge({ olderThanMs: Number.NaN }))],
      ["states", call(() => ob.purge({ states: ["incoming"] }))],
      ["states", call(() => ob.purge({ states: [] }))],
      ["states", call(() => ob.purge({ states: "delivered" as never }))],
      ["states", call(() => ob.purge({ states: ["gone" as never] }))],
      ["name", call(() => new Outbox(store, ""))],
      ["name", call(() => new Outbox(store, "   "))],
      ["name", call(() => new Outbox(store, 7 as never))],
      ["maxAttempts", call(() => new Outbox(store, "x", { maxAttempts: 0 }))],
      ["maxAttempts", call(() => new Outbox(store, "x", { maxAttempts: Number.NaN }))],
      ["backoff.factor", call(() => new Outbox(store, "x", { backoff: { factor: 0 } }))],
      ["clock", call(() => new Outbox(store, "x", { clock: 5 as never }))],
    ];
    now += 30 * 86_400_000;
    const before = fingerprint();
    const counts = ob.counts();
    for (const [argument, fn] of cases) {
      let caught: unknown;
      try {
        fn();
      } catch (err) {
        caught = err;
      }
      expect(caught, `expected ${argument} to be refused`).toBeInstanceOf(InvalidArgumentError);
      expect((caught as InvalidArgumentError).argument).toBe(argument);
      expect((caught as Error).message.startsWith(`${argument}: `)).toBe(true);
      expect(fingerprint(), `${argument} changed the table`).toBe(before);
    }
    expect(ob.counts()).toEqual(counts);
    expect(ob.list({ limit: 100 })).toHaveLength(5);
  });
});

type Op =
  | { k: "store"; priority: number; maxAttempts: number; binary: boolean }
  | { k: "claim"; limit: number }
  | { k: "delivered"; pick: number }
  | { k: "defer"; pick: number }
  | { k: "move"; pick: number; to: OutboxState; from: OutboxState[] | undefined }
  | { k: "tick"; ms: number }
  | { k: "storeAs"; state: OutboxState; attempts: number; maxAttempts: number; nextIn: number | null }
  | {
      k: "update";
      pick: number;
      attempts: number | undefined;
      maxAttempts: number | undefined;
      nextIn: number | undefined;
      priority: number | undefined;
    };

const stateArb = fc.constantFrom(...OUTBOX_STATES);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    k: fc.constant("store" as const),
    priority: fc.integer({ min: -2, max: 2 }),
    maxAttempts: fc.integer({ min: 1, max: 4 }),
    binary: fc.boolean(),
  }),
  fc.record({ k: fc.constant("claim" as const), limit: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ k: fc.constant("delivered" as const), pick: fc.nat() }),
  fc.record({ k: fc.constant("defer" as const), pick: fc.nat() }),
  fc.record({
    k: fc.constant("move" as const),
    pick: fc.nat(),
    to: stateArb,
    from: fc.option(fc.subarray([...OUTBOX_STATES], { minLength: 1 }), { nil: undefined }),
  }),
  fc.record({ k: fc.constant("tick" as const), ms: fc.integer({ min: 0, max: 150 }) }),
  fc.record({
    k: fc.constant("storeAs" as const),
    state: stateArb,
    attempts: fc.integer({ min: 0, max: 4 }),
    maxAttempts: fc.integer({ min: 1, max: 4 }),
    nextIn: fc.option(fc.integer({ min: 0, max: 200 }), { nil: null }),
  }),
  fc.record({
    k: fc.constant("update" as const),
    pick: fc.nat(),
    attempts: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
    maxAttempts: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
    nextIn: fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined }),
    priority: fc.option(fc.integer({ min: -2, max: 2 }), { nil: undefined }),
  }),
);

/** The spool's rule for a message's attempts and next attempt time in a state (src/outbox/spool.ts). */
function consistent(state: OutboxState, attempts: number, maxAttempts: number, next: boolean): boolean {
  if (attempts > maxAttempts) return false;
  if (state === "incoming") return attempts === 0 && !next;
  if (state === "deferred") return attempts >= 1 && attempts < maxAttempts && next;
  return attempts >= 1 && !next;
}

function checkInvariants(ob: Outbox, stored: number, before: Map<number, StoreMeta>): Map<number, StoreMeta> {
  const metas = ob.list({ limit: 10_000 });
  expect(metas).toHaveLength(stored);
  const counts = ob.counts();
  expect(OUTBOX_STATES.reduce((n, s) => n + counts[s], 0)).toBe(stored);
  expect(counts.total).toBe(stored);
  const after = new Map<number, StoreMeta>();
  for (const m of metas) {
    after.set(m.id, m);
    expect(m.attempts).toBeLessThanOrEqual(m.maxAttempts);
    switch (m.state) {
      case "incoming":
        expect(m.attempts).toBe(0);
        expect(m.nextAttemptAt).toBeNull();
        break;
      case "deferred":
        expect(m.attempts).toBeGreaterThanOrEqual(1);
        expect(m.attempts).toBeLessThan(m.maxAttempts);
        expect(m.nextAttemptAt).not.toBeNull();
        break;
      case "active":
      case "delivered":
      case "bounced":
        expect(m.attempts).toBeGreaterThanOrEqual(1);
        expect(m.nextAttemptAt).toBeNull();
        break;
      default:
        throw new Error(`illegal state ${m.state}`);
    }
    const prev = before.get(m.id);
    if (prev && prev.state !== m.state) {
      expect(LEGAL[prev.state], `${prev.state} -> ${m.state}`).toContain(m.state);
      // An attempt is spent exactly when a message enters active.
      expect(m.attempts - prev.attempts).toBe(m.state === "active" ? 1 : 0);
    } else if (prev) {
      expect(m).toEqual(prev);
    }
  }
  return after;
}

/** What moveToState must answer, checked in the order the spec gives: arguments, then the message. */
function expectedMove(was: StoreMeta | undefined, to: OutboxState, from: OutboxState[] | undefined): string {
  if (to === "incoming") return "invalid";
  if (from?.some((f) => !LEGAL[f].includes(to))) return "invalid";
  if (!was || (from && !from.includes(was.state))) return "false";
  if (!LEGAL[was.state].includes(to)) return "illegal";
  if (to === "deferred" && was.attempts >= was.maxAttempts) return "illegal";
  return "true";
}

describe("property: random operations, then a drain", () => {
  it("keeps every message in a legal state and ends each delivered or bounced", () => {
    let run = 0;
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 60 }),
        fc.array(fc.boolean(), { minLength: 1 }),
        (ops, coins) => {
          let t = T0;
          const ob = new Outbox(store, `prop-${run++}`, {
            clock: () => t,
            backoff: { baseMs: 10, maxMs: 100, factor: 2, jitter: 0.5 },
          });
          const ids: number[] = [];
          const pick = (n: number) => (ids.length === 0 ? 1_000_000 : ids[n % ids.length]!);
          let seen = new Map<number, StoreMeta>();

          for (const op of ops) {
            switch (op.k) {
              case "store": {
                const body = op.binary ? randomBytes(op.priority + 3) : `m${ids.length}`;
                ids.push(ob.store(body, { priority: op.priority, maxAttempts: op.maxAttempts }).id);
                break;
              }
              case "claim": {
                // The model: due messages by priority, then oldest first.
                const due = [...seen.values()]
                  .filter((m) => m.state === "incoming" || (m.state === "deferred" && m.nextAttemptAt! <= t))
                  .sort((x, y) => y.priority - x.priority || x.id - y.id)
                  .slice(0, op.limit);
                const claimed = ob.claim(op.limit);
                expect(claimed.map((m) => m.id)).toEqual(due.map((m) => m.id));
                for (const m of claimed) {
                  expect(m).toMatchObject({ state: "active", attempts: seen.get(m.id)!.attempts + 1 });
                }
                break;
              }
              case "delivered": {
                const id = pick(op.pick);
                const was = seen.get(id)?.state;
                expect(ob.delivered(id)).toBe(was === "active");
                break;
              }
              case "defer": {
                const id = pick(op.pick);
                const was = seen.get(id);
                const res = ob.defer(id, "temporary");
                if (was?.state !== "active") expect(res).toBeUndefined();
                else expect(res?.state).toBe(was.attempts < was.maxAttempts ? "deferred" : "bounced");
                break;
              }
              case "move": {
                const id = pick(op.pick);
                const want = expectedMove(seen.get(id), op.to, op.from);
                let got: string;
                const snapshot = fingerprint();
                try {
                  got = String(ob.moveToState(id, op.to, { from: op.from }));
                } catch (err) {
                  if (err instanceof IllegalTransitionError) got = "illegal";
                  else if (err instanceof InvalidArgumentError) got = "invalid";
                  else throw err;
                }
                expect(got, JSON.stringify({ op, was: seen.get(id) })).toBe(want);
                if (got === "true") expect(ob.getMeta(id)!.state).toBe(op.to);
                else expect(fingerprint()).toBe(snapshot);
                break;
              }
              case "tick":
                t += op.ms;
                break;
              case "storeAs": {
                const options = {
                  state: op.state,
                  attempts: op.attempts,
                  maxAttempts: op.maxAttempts,
                  nextAttemptAt: op.nextIn === null ? undefined : t + op.nextIn,
                };
                const ok = consistent(op.state, op.attempts, op.maxAttempts, op.nextIn !== null);
                const snapshot = fingerprint();
                try {
                  ids.push(ob.store("carried", options).id);
                  expect(ok, JSON.stringify(op)).toBe(true);
                } catch (err) {
                  expect(err).toBeInstanceOf(InvalidArgumentError);
                  expect(ok, JSON.stringify(op)).toBe(false);
                  expect(fingerprint()).toBe(snapshot);
                }
                break;
              }
              case "update": {
                const id = pick(op.pick);
                const was = seen.get(id);
                const patch = {
                  attempts: op.attempts,
                  maxAttempts: op.maxAttempts,
                  nextAttemptAt: op.nextIn === undefined ? undefined : t + op.nextIn,
                  priority: op.priority,
                };
                const empty = Object.values(patch).every((v) => v === undefined);
                const ok =
                  !empty &&
                  (!was ||
                    consistent(
                      was.state,
                      op.attempts ?? was.attempts,
                      op.maxAttempts ?? was.maxAttempts,
                      op.nextIn !== undefined || was.nextAttemptAt !== null,
                    ));
                const snapshot = fingerprint();
                try {
                  const res = ob.update(id, patch);
                  expect(ok, JSON.stringify({ op, was })).toBe(true);
                  if (!was) expect(res).toBeUndefined();
                  else {
                    expect(res).toMatchObject({ state: was.state, updatedAt: was.updatedAt });
                    seen.set(id, res!); // a metadata change, not a move: the model takes it as the new truth
                  }
                } catch (err) {
                  expect(err).toBeInstanceOf(InvalidArgumentError);
                  expect(ok, JSON.stringify({ op, was })).toBe(false);
                  expect(fingerprint()).toBe(snapshot);
                }
                break;
              }
            }
            seen = checkInvariants(ob, ids.length, seen);
          }

          // Drain: settle what is active, wait out every backoff, claim again, until nothing moves.
          let coin = 0;
          const settle = (id: number) => {
            if (coins[coin++ % coins.length]) expect(ob.delivered(id)).toBe(true);
            else expect(ob.defer(id, "drain")).toBeDefined();
          };
          for (let round = 0; ; round++) {
            expect(round).toBeLessThan(100);
            for (const m of ob.list({ state: "active", limit: 10_000 })) settle(m.id);
            seen = checkInvariants(ob, ids.length, seen);
            t += 1000;
            const claimed = ob.claim(5);
            seen = checkInvariants(ob, ids.length, seen);
            for (const m of claimed) settle(m.id);
            seen = checkInvariants(ob, ids.length, seen);
            if (claimed.length === 0) break;
          }
          const counts = ob.counts();
          expect(counts.delivered + counts.bounced).toBe(ids.length);
          for (const m of seen.values()) {
            if (m.state === "bounced" && m.lastError === "drain") expect(m.attempts).toBe(m.maxAttempts);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
