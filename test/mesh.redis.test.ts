/**
 * MeshMember against a real Redis (logical database 7, a unique
 * prefix per test) and real SQLite files: replicas sync with no hub, survive
 * a FLUSHDB, catch up after being down with their position trimmed away,
 * resume exactly after the last applied entry, refuse malformed entries.
 * Skipped with a message when Redis is unreachable, failed under CI=true.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startDaemon } from "../src/daemon/daemon.js";
import { InvalidArgumentError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { MeshMember, type MeshMemberOptions } from "../src/mesh/mesh-member.js";
import { meshRefused } from "../src/metrics.js";
import { Peers } from "../src/peers/peers.js";
import type { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { invalidArgument, useTempDirs, waitFor } from "./helpers.js";
import { REDIS_URL, redisReachable } from "./redis-helpers.js";
import { rng } from "./replica-helpers.js";
import { openItems, rows } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-mesh-");
let reachable = false;
let admin: Redis | null = null;
const running: MeshMember[] = [];
const open: Replica[] = [];

beforeAll(async () => {
  reachable = await redisReachable();
  if (reachable) admin = new Redis(REDIS_URL);
});
afterAll(async () => {
  await admin?.quit();
});
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop();
  for (const r of open.splice(0)) r.close();
});

/** Each wait fails naming what it waited for well before the test's own timeout (SLOW). */
const WAIT = { timeoutMs: 45_000, intervalMs: 10 };
const SLOW = { timeout: 180_000 };

function prefix(): string {
  return `twtest-${randomBytes(4).toString("hex")}`;
}

function replica(dir: string, nodeId: string): Replica {
  const r = openItems(dir, nodeId);
  open.push(r);
  return r;
}

async function member(r: Replica, options: Partial<MeshMemberOptions> & { prefix: string }) {
  const say = (level: string) => (o: unknown, m: string) =>
    console.log(r.nodeId, level, m, JSON.stringify(o));
  const logger = process.env.MESH_DEBUG
    ? { debug: say("debug"), info: say("info"), warn: say("warn"), error: say("error") }
    : undefined;
  const t = new MeshMember(r, {
    redis: REDIS_URL,
    heartbeatMs: 50,
    blockMs: 200,
    logger: logger as never,
    ...options,
  });
  running.push(t);
  await t.start();
  return t;
}

async function stopOne(t: MeshMember): Promise<void> {
  await t.stop();
  running.splice(running.indexOf(t), 1);
}

/** Every member published all it has, and every reader holds every peer's stream up to its end. */
function caughtUp(ts: MeshMember[]): boolean {
  for (const t of ts) {
    if (!t.status.published.every((p) => p.idle)) return false;
    for (const peer of ts) {
      if (peer === t) continue;
      for (const p of peer.status.published) {
        const tail = t.status.peers.find((x) => x.nodeId === peer.nodeId && x.bucket === p.bucket);
        // A rewound publisher may end its run a sequence short of where it ended before: >=.
        if (p.cursor !== "0" && (!tail || BigInt(tail.cursor) < BigInt(p.cursor) || tail.gap)) return false;
      }
    }
  }
  return true;
}

function same(rs: Replica[]): boolean {
  const first = JSON.stringify(rows(rs[0] as Replica));
  return rs.every((r) => JSON.stringify(rows(r)) === first);
}

/** Random inserts, updates and deletes over 30 shared keys. */
function writeRandomly(r: Replica, random: () => number, n: number): void {
  const put = r.store.db.prepare(
    "INSERT INTO items (id, name, qty) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty",
  );
  const set = r.store.db.prepare("UPDATE items SET qty = ? WHERE id = ?");
  const del = r.store.db.prepare("DELETE FROM items WHERE id = ?");
  for (let i = 0; i < n; i++) {
    const id = 1 + Math.floor(random() * 30);
    const x = random();
    if (x < 0.5) put.run(id, `${r.nodeId}-${i}`, Math.floor(random() * 1000));
    else if (x < 0.8) set.run(Math.floor(random() * 1000), id);
    else del.run(id);
  }
}

describe("MeshMember (real Redis; skipped with a message when none)", SLOW, () => {
  it("three replicas sync through Redis alone under random writes; FLUSHDB mid-run; they converge", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const random = rng(42);
    const rs = ["a", "b", "c"].map((id) => replica(dir, id));
    const ts: MeshMember[] = [];
    const seen = new Set<string>();
    const onPeerSeen = (peer: string, bucket: string) => seen.add(`${peer}/${bucket}`);
    for (const r of rs) ts.push(await member(r, { prefix: px, batchSize: 7, onPeerSeen }));
    await waitFor(
      () => ts.every((t) => t.status.peers.length === 2),
      "every member to find the others",
      WAIT,
    );
    await waitFor(() => seen.size === 3, "onPeerSeen for each member", WAIT);
    expect([...seen].sort()).toEqual(["a/default", "b/default", "c/default"]);
    for (let round = 0; round < 6; round++) {
      for (const r of rs) writeRandomly(r, random, 20);
      await new Promise((res) => setTimeout(res, 20));
      if (round === 2) {
        // What the loss below relies on, waited for rather than left to 60 ms of rounds: a member that
        // had not published yet when Redis was flushed would have nothing to lose.
        await waitFor(
          () => ts.every((t) => t.status.published.every((p) => p.cursor !== "0")),
          "every member to publish before the flush",
          WAIT,
        );
        await admin?.flushdb();
      }
    }
    // Each had published before the flush, so each finds its stream lost and publishes it again.
    await waitFor(() => ts.every((t) => t.status.counts.gaps > 0), "every member to see the loss", WAIT);
    await waitFor(() => caughtUp(ts), "all three to catch up", WAIT);
    expect(same(rs)).toBe(true);
    expect(rows(rs[0] as Replica).length).toBeGreaterThan(0);
  });

  it("a replica that was down catches up after its position was trimmed away; a removed peer's cursors are gone", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const [a, b, c] = ["a", "b", "c"].map((id) => replica(dir, id)) as [Replica, Replica, Replica];
    const opts = { prefix: px, maxLen: 10, batchSize: 3 };
    const ta = await member(a, opts);
    const tb = await member(b, opts);
    let tc = await member(c, opts);
    a.store.db.prepare("INSERT INTO items VALUES (1, 'first', 1)").run();
    await waitFor(() => rows(c).length === 1 && rows(b).length === 1, "the first row everywhere", WAIT);
    await stopOne(tc);
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, 'a', ?)");
    const insertB = b.store.db.prepare("INSERT INTO items VALUES (?, 'b', ?)");
    for (let i = 0; i < 400; i++) {
      insert.run(1000 + i, i);
      insertB.run(5000 + i, i);
      if (i % 20 === 0) await Promise.all([ta.publishNow(), tb.publishNow()]);
    }
    await Promise.all([ta.publishNow(), tb.publishNow()]);
    // The stream was trimmed: its first entry starts past what c holds.
    const first = (await admin?.xrange(`${px}:default:a`, "-", "+", "COUNT", 1))?.[0];
    expect(first?.[1][3]).not.toBe("0");
    tc = await member(c, opts);
    await waitFor(() => caughtUp([ta, tb, tc]), "c to catch up", WAIT);
    expect(same([a, b, c])).toBe(true);
    expect(rows(c)).toHaveLength(801);
    expect(rows(a)).toHaveLength(801);
    expect(tc.status.counts.gaps).toBeGreaterThan(0);

    // c writes, so a keeps a cursor for it; then a removes it from the mesh.
    c.store.db.prepare("INSERT INTO items VALUES (9999, 'c', 0)").run();
    await waitFor(() => rows(a).length === 802, "a to get c's row", WAIT);
    const cursorsOfC = () => ta.status.peers.filter((p) => p.nodeId === "c").length;
    expect(cursorsOfC()).toBe(1);
    expect(ta.removePeer("c")).toBe(1);
    expect(cursorsOfC()).toBe(0);
    const saved = a.store.db.prepare("SELECT count(*) AS n FROM tw_cursors WHERE peer = 'c'").get() as {
      n: number;
    };
    expect(saved.n).toBe(0);
    // It is not found again from the members hash while this transport runs.
    await new Promise((res) => setTimeout(res, 200));
    expect(cursorsOfC()).toBe(0);
  });

  it("keeps a peer registry in step: members seen are listed up; one removed there leaves the mesh", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const a = replica(dir, "a");
    const b = replica(dir, "b");
    const registry = new Peers(a.store);
    const ta = await member(a, { prefix: px, peers: registry });
    await member(b, { prefix: px });
    b.store.db.prepare("INSERT INTO items VALUES (1, 'b', 1)").run();
    await waitFor(() => rows(a).length === 1, "a to get b's row", WAIT);
    expect(registry.get("b")).toMatchObject({ id: "b", address: null, buckets: ["default"], state: "up" });
    const firstSeen = registry.get("b")!.lastSeenAt;
    expect(firstSeen).toBeGreaterThan(0);
    // Heartbeats every 50 ms do not each write the registry: last_seen_at moves every 10 s.
    await new Promise((res) => setTimeout(res, 400));
    expect(registry.get("b")!.lastSeenAt).toBe(firstSeen);

    // Removed from the registry by another process (`tidewire peers remove`): the mesh lets b go.
    const other = openStore(a.store.path);
    try {
      expect(new Peers(other).remove("b")).toBe(true);
    } finally {
      other.close();
    }
    await waitFor(() => !ta.status.peers.some((p) => p.nodeId === "b"), "a to drop b", WAIT);
    b.store.db.prepare("INSERT INTO items VALUES (2, 'b', 2)").run();
    await new Promise((res) => setTimeout(res, 500));
    expect(rows(a).length).toBe(1);
    expect(a.store.db.prepare("SELECT count(*) FROM tw_cursors WHERE peer = 'b'").pluck().get()).toBe(0);
  });
});

describe("MeshMember entries (real Redis; skipped with a message when none)", SLOW, () => {
  it("a restart resumes exactly after the last applied entry: none applied twice, none skipped", async (ctx) => {
    if (!reachable) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const a = replica(dir, "a");
    const b = replica(dir, "b");
    const ta = await member(a, { prefix: px, batchSize: 1 });
    const applied: string[] = [];
    const watch = (t: MeshMember) => t.on("applied", (e) => applied.push(e.streamId));
    let tb = await member(b, { prefix: px });
    watch(tb);
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, 'a', ?)");
    for (let i = 1; i <= 40; i++) {
      insert.run(i, i);
      if (i === 20) await waitFor(() => applied.length >= 10, "b to apply some", WAIT);
      if (i === 25) await stopOne(tb); // while a keeps writing and publishing
      if (i % 5 === 0) await ta.publishNow();
    }
    const before = applied.length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(40);
    tb = await member(b, { prefix: px });
    watch(tb);
    await waitFor(() => rows(b).length === 40, "b to hold all 40 rows", WAIT);
    const ids = ((await admin?.xrange(`${px}:default:a`, "-", "+")) ?? []).map(([id]) => id);
    expect(ids).toHaveLength(40);
    expect(applied).toEqual(ids);
    expect(tb.status.counts.gaps).toBe(0);
  });

  it("a stream deleted while its publisher is down: the reader finds it gone, the publisher publishes again from 0", async (ctx) => {
    if (!reachable || !admin) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const a = replica(dir, "a");
    const b = replica(dir, "b");
    let ta = await member(a, { prefix: px });
    const tb = await member(b, { prefix: px });
    const gaps: string[] = [];
    tb.on("gap", (g) => gaps.push(`${g.peer}:${g.reason}:${g.from}`));
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, 'a', ?)");
    for (let i = 1; i <= 5; i++) insert.run(i, i);
    await waitFor(() => rows(b).length === 5, "b to get five rows", WAIT);
    await stopOne(ta);
    await admin.del(`${px}:default:a`); // evicted, say; the members hash stays
    await waitFor(() => gaps.length > 0, "b to find a's stream gone", WAIT);
    expect(gaps[0]).toBe("a:gone:5");
    expect(tb.status.peers[0]).toMatchObject({ nodeId: "a", streamId: "0-0", cursor: "5" });
    ta = await member(a, { prefix: px });
    insert.run(6, 6);
    await waitFor(() => rows(b).length === 6, "b to get the sixth row", WAIT);
    await waitFor(() => caughtUp([ta, tb]), "b to hold a's stream to its end", WAIT);
    expect(ta.status.counts.gaps).toBe(1); // its own stream, found lost at start
    const first = (await admin.xrange(`${px}:default:a`, "-", "+", "COUNT", 1))[0];
    expect(first?.[1].slice(2, 4)).toEqual(["since", "0"]);
    expect(same([a, b])).toBe(true);
  });

  it("refuses malformed entries (logged, counted, nothing applied) and keeps running", async (ctx) => {
    if (!reachable || !admin) return ctx.skip();
    const dir = tempDir();
    const px = prefix();
    const a = replica(dir, "a");
    const b = replica(dir, "b");
    const ta = await member(a, { prefix: px });
    const errors: string[] = [];
    const tb = await member(b, {
      prefix: px,
      logger: {
        debug() {},
        info() {},
        warn() {},
        error: (o: { err: string }) => errors.push(o.err),
      } as never,
    });
    const refused: string[] = [];
    tb.on("refused", (e) => refused.push(e.error.message));
    const before = await refusedMetric();
    const stream = `${px}:default:a`;
    const change = {
      table: "items",
      pk: [1],
      op: "insert",
      columns: { name: "x", qty: 1 },
      hlc: a.now(),
      origin: "a",
      seq: 1,
    };
    const entry = (v: string, changes: string) =>
      admin?.xadd(stream, "*", "v", v, "since", "0", "cursor", "1", "changes", changes);
    await admin.xadd(stream, "*", "garbage", "1");
    await entry("1", "[{");
    await entry("1", JSON.stringify([{ ...change, op: "upsert" }]));
    await entry("2", JSON.stringify([change]));
    await entry("1", JSON.stringify([{ ...change, op: "delete" }]));
    // A change for a table b does not track (yet) is no fault of the entry: b keeps it in quarantine.
    await entry("1", JSON.stringify([{ ...change, table: "nope" }]));
    await waitFor(() => refused.length === 5, "five refusals", WAIT);
    expect(refused.join("\n")).toMatch(/malformed stream entry/);
    expect(refused.join("\n")).toMatch(/protocol version 2/);
    expect(refused.join("\n")).toMatch(/delete that carries columns/);
    expect(errors).toHaveLength(5);
    expect(tb.status.counts.refused).toBe(5);
    expect((await refusedMetric()) - before).toBe(5);
    expect(rows(b)).toEqual([]);
    await waitFor(() => b.conflicts().quarantined.length === 1, "the change for nope in quarantine", WAIT);
    expect(b.conflicts().quarantined).toMatchObject([{ kind: "failed", table: "nope" }]);
    // Still running: a real change goes through, and the refused ones never arrived. (The
    // quarantined entry moved b's cursor on a's stream to 1: a's real entry must end past it.)
    a.store.db.exec("INSERT INTO items VALUES (6, 'first', 6); INSERT INTO items VALUES (7, 'real', 7)");
    await waitFor(() => rows(b).length === 2, "b to apply a's rows", WAIT);
    expect(rows(b)).toEqual([
      { id: 6, name: "first", qty: 6 },
      { id: 7, name: "real", qty: 7 },
    ]);
    expect(tb.status.state).toBe("running");
    expect(ta.status.state).toBe("running");
  });
});

async function refusedMetric(): Promise<number> {
  const m = await meshRefused.get();
  return m.values.filter((v) => v.labels.bucket === "default").reduce((n, v) => n + v.value, 0);
}

describe("MeshMember options", () => {
  it("refuses bad options with InvalidArgumentError", () => {
    const dir = tempDir();
    const r = replica(dir, "x");
    const make = (o: Partial<MeshMemberOptions>) => () =>
      new MeshMember(r, { redis: REDIS_URL, ...o } as MeshMemberOptions);
    expect(invalidArgument(make({ redis: "http://x" })).argument).toBe("redis");
    expect(invalidArgument(make({ redis: 42 as unknown as string })).argument).toBe("redis");
    expect(invalidArgument(make({ maxLen: 0 })).argument).toBe("maxLen");
    expect(invalidArgument(make({ batchSize: 1.5 })).argument).toBe("batchSize");
    expect(invalidArgument(make({ buckets: [""] })).argument).toBe("buckets");
    expect(invalidArgument(make({ prefix: "a b" })).argument).toBe("prefix");
    expect(invalidArgument(make({ onPeerSeen: 1 as unknown as () => void })).argument).toBe("onPeerSeen");
    expect(() => new MeshMember(r, null as unknown as MeshMemberOptions)).toThrow(InvalidArgumentError);
  });
});

describe(
  "two hubs bridged by a mesh (real Redis, real daemons; skipped with a message when no Redis)",
  SLOW,
  () => {
    it("a client of one hub sees the rows a client of the other pushed, woken by the live notice", async (ctx) => {
      if (!reachable) return ctx.skip();
      const dir = tempDir();
      const mesh = { redis: REDIS_URL, prefix: prefix() };
      const hub = (name: string) =>
        startDaemon({
          dbPath: join(dir, `${name}.db`),
          port: 0,
          insecure: true,
          mesh,
          syncIntervalMs: 3_600_000,
          logger: createLogger({ level: "silent" }),
        });
      const h1 = await hub("hub1");
      const h2 = await hub("hub2");
      try {
        const a = replica(dir, "a");
        const b = replica(dir, "b");
        const sa = new SyncManager(a, new HttpTransport(h1.url), { intervalMs: 60_000 });
        const sb = new SyncManager(b, new HttpTransport(h2.url), { intervalMs: 60_000 });
        await sb.start(); // its next poll is a minute away: only the live notice can bring the rows in time
        a.store.db.prepare("INSERT INTO items VALUES (1, 'from a', 1), (2, 'from a', 2)").run();
        await sa.syncOnce();
        await waitFor(() => rows(b).length === 2, "b, a client of hub2, to get a's rows", WAIT);
        expect(rows(b)).toEqual(rows(a));
        await sb.stop();
        // Each hub lists the other as a mesh peer in its registry.
        await waitFor(() => h1.peers.get(h2.hub.nodeId)?.state === "up", "hub1 to list hub2 as up", WAIT);
        expect(h2.peers.get(h1.hub.nodeId)).toMatchObject({ address: null, buckets: ["default"] });
      } finally {
        await h1.stop();
        await h2.stop();
      }
    });
  },
);
