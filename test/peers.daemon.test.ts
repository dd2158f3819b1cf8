/**
 * Peers and sync jobs between real daemons (`startDaemon` on loopback, real
 * SQLite files, rows written by a second better-sqlite3 connection as any app
 * would): rows cross both ways through SyncBucket jobs run by A's worker and
 * listed by the queue and `tidewire jobs`; PingPeer marks a stopped peer down
 * and up again with its round-trip time; a sync to an unreachable peer is
 * retried with backoff until the peer comes up; a pending SyncBucket survives
 * a daemon restart; `tidewire peers` and `tidewire status --json`.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { type Daemon, type DaemonOptions, startDaemon } from "../src/daemon/daemon.js";
import {
  PING_PEER,
  PING_PEERS,
  PRIORITY,
  peerJobHandlers,
  peerJobOptions,
  SYNC_BUCKET,
  SYNC_PEERS,
  syncKey,
} from "../src/daemon/sync-jobs.js";
import { createLogger } from "../src/log.js";
import { registry as metricsRegistry } from "../src/metrics.js";
import { Peers } from "../src/peers/peers.js";
import { Queue } from "../src/queue/queue.js";
import type { Job } from "../src/queue/types.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { freePort, runNode, useTempDirs, waitFor } from "./helpers.js";
import { ITEMS } from "./sync-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN_B = "peer-b-token-0123456789abcdef";
const LONG = { timeoutMs: 30_000, intervalMs: 50 };
const tempDir = useTempDirs("tidewire-peers-daemon-");

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/peers.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});

/** A database with the items table tracked, as `tidewire init` leaves it. */
function itemsDb(dir: string, name: string): string {
  const path = join(dir, `${name}.db`);
  const r = Replica.open(path, { nodeId: `node-${name}` });
  r.store.db.exec(ITEMS);
  r.track("items");
  r.close();
  return path;
}

async function daemon(dbPath: string, options: DaemonOptions = {}): Promise<Daemon> {
  const d = await startDaemon({
    dbPath,
    port: 0,
    token: TOKEN_B,
    logger: createLogger({ level: "silent" }),
    syncIntervalMs: 1_000,
    pingIntervalMs: 3_600_000,
    ...options,
  });
  daemons.push(d);
  return d;
}

async function stop(d: Daemon): Promise<void> {
  daemons.splice(daemons.indexOf(d), 1);
  await d.stop();
}

/** What another connection sees in the file (the daemon keeps its own). */
function items(path: string): unknown[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("SELECT id, name, qty FROM items ORDER BY id").all();
  } finally {
    db.close();
  }
}

function write(path: string, sql: string): void {
  const db = new Database(path);
  try {
    db.pragma("busy_timeout = 10000");
    db.exec(sql);
  } finally {
    db.close();
  }
}

function syncJobs(q: Queue) {
  return q.list({ type: SYNC_BUCKET, limit: 1000 });
}

describe("SyncBucket and PingPeer jobs between two daemons", () => {
  it("moves rows both ways through SyncBucket jobs that the queue and `tidewire jobs` list", async () => {
    const dir = tempDir();
    const [aDb, bDb] = [itemsDb(dir, "a"), itemsDb(dir, "b")];
    const b = await daemon(bDb);
    const a = await daemon(aDb);
    a.peers.upsert({ id: "b", address: b.url, buckets: ["default"], token: TOKEN_B });
    write(aDb, "INSERT INTO items VALUES (1, 'from a', 1), (2, 'from a', 2)");
    write(bDb, "INSERT INTO items VALUES (3, 'from b', 3)");
    const all = [
      { id: 1, name: "from a", qty: 1 },
      { id: 2, name: "from a", qty: 2 },
      { id: 3, name: "from b", qty: 3 },
    ];
    await waitFor(() => JSON.stringify(items(bDb)) === JSON.stringify(all), "A's rows to reach B", LONG);
    await waitFor(() => JSON.stringify(items(aDb)) === JSON.stringify(all), "B's rows to reach A", LONG);

    const done = syncJobs(a.queue).filter((j) => j.state === "completed");
    expect(done.length).toBeGreaterThan(0);
    expect(done[0]).toMatchObject({
      payload: { peer: "b", bucket: "default" },
      key: syncKey("b", "default"),
      priority: PRIORITY.sync,
    });
    // Sync runs against B's hub, which answered with its node id: A now knows it.
    expect(a.peers.get("b")?.nodeId).toBe(b.hub.nodeId);

    const listed = await runNode([CLI, "jobs", "list", aDb, "--type", SYNC_BUCKET, "--json"]);
    expect(listed.code).toBe(0);
    const jobs = JSON.parse(listed.stdout).jobs as Array<{ type: string; state: string }>;
    expect(jobs.some((j) => j.type === SYNC_BUCKET && j.state === "completed")).toBe(true);

    // Its cursors are keyed by B's node id; removing the peer deletes them, and only them.
    const cursorPeers = () => {
      const db = new Database(aDb, { readonly: true });
      try {
        return db.prepare("SELECT DISTINCT peer FROM tw_cursors ORDER BY peer").pluck().all();
      } finally {
        db.close();
      }
    };
    write(aDb, "INSERT INTO tw_cursors VALUES ('someone-else', '*', 'pull', '3', 0)");
    expect(cursorPeers()).toEqual([b.hub.nodeId, "someone-else"]);
    expect(a.peers.remove("b")).toBe(true);
    expect(cursorPeers()).toEqual(["someone-else"]);
  });

  it("carries rows from A to C through B, a daemon that relays the bucket without having the table", async () => {
    const dir = tempDir();
    const [aDb, cDb] = [itemsDb(dir, "a"), itemsDb(dir, "c")];
    const b = await daemon(join(dir, "b.db"));
    const [a, c] = [await daemon(aDb), await daemon(cDb)];
    for (const d of [a, c]) d.peers.upsert({ id: "b", address: b.url, token: TOKEN_B });
    write(aDb, "INSERT INTO items VALUES (1, 'a via b', 1)");
    write(cDb, "INSERT INTO items VALUES (2, 'c via b', 2)");
    const all = JSON.stringify([
      { id: 1, name: "a via b", qty: 1 },
      { id: 2, name: "c via b", qty: 2 },
    ]);
    await waitFor(() => JSON.stringify(items(cDb)) === all, "A's row to reach C", LONG);
    await waitFor(() => JSON.stringify(items(aDb)) === all, "C's row to reach A", LONG);
    // B keeps the log of a table it does not have.
    expect(b.store.db.prepare("SELECT name FROM tw_tracked WHERE relayed = 1").pluck().all()).toEqual([
      "items",
    ]);
  });

  it("PingPeer marks a stopped peer down, and up again with its round-trip time when it returns", async () => {
    const dir = tempDir();
    const bDb = itemsDb(dir, "b");
    let b = await daemon(bDb);
    const a = await daemon(itemsDb(dir, "a"), { pingIntervalMs: 1_000, syncIntervalMs: 3_600_000 });
    a.peers.upsert({ id: "b", address: b.url, token: TOKEN_B });
    await waitFor(() => a.peers.get("b")?.state === "up", "b to be seen up", LONG);
    const up = a.peers.get("b")!;
    expect(up.rttMs).toBeGreaterThan(0);
    expect(up.lastSeenAt).not.toBeNull();
    expect(up.lastError).toBeNull();

    const port = b.port;
    await stop(b);
    await waitFor(() => a.peers.get("b")?.state === "down", "b to be seen down", LONG);
    const down = a.peers.get("b")!;
    expect(down.lastError).toMatch(/ECONNREFUSED|fetch failed/);
    expect(down.lastSeenAt).toBeGreaterThanOrEqual(up.lastSeenAt!);

    b = await daemon(bDb, { port });
    await waitFor(() => a.peers.get("b")?.state === "up", "b to be seen up again", LONG);
    expect(a.peers.get("b")!.lastSeenAt).toBeGreaterThan(down.lastSeenAt!);
    expect(a.peers.get("b")!.rttMs).toBeGreaterThan(0);
    const metrics = await metricsRegistry.metrics();
    expect(metrics).toContain('tidewire_peer_up{peer="b"} 1');
    expect(metrics).toMatch(/tidewire_peer_rtt_seconds\{peer="b"\} \d/);
    const pings = a.queue.list({ type: PING_PEER, state: "completed", limit: 1000 });
    expect(pings.length).toBeGreaterThanOrEqual(3);
    expect(pings.every((j) => j.priority === PRIORITY.ping && j.attempts === 1)).toBe(true);
  });

  it("retries a SyncBucket to an unreachable peer with backoff, and succeeds once the peer is up", async () => {
    const dir = tempDir();
    const [aDb, bDb] = [itemsDb(dir, "a"), itemsDb(dir, "b")];
    const port = await freePort();
    const a = await daemon(aDb, { syncBackoff: { baseMs: 400, factor: 2, maxMs: 1_600, jitter: 0 } });
    a.peers.upsert({ id: "b", address: `http://127.0.0.1:${port}`, token: TOKEN_B });
    write(aDb, "INSERT INTO items VALUES (1, 'waits for b', 1)");
    const job = () => syncJobs(a.queue)[0];
    // While a failed attempt waits, run_at - started_at is its backoff delay (plus the attempt's own time).
    const waits = new Map<number, number>();
    await waitFor(
      () => {
        const j = job();
        if (j?.state === "pending" && j.attempts > 0 && j.startedAt)
          waits.set(j.attempts, j.runAt - j.startedAt);
        return waits.has(3);
      },
      "three failed attempts",
      LONG,
    );
    expect(waits.size).toBeGreaterThanOrEqual(2);
    for (const [attempt, wait] of waits)
      expect(wait).toBeGreaterThanOrEqual(Math.min(1_600, 400 * 2 ** (attempt - 1)));
    const retried = job()!;
    // One job, retried: the dedup key kept the periodic fan-out from adding another.
    expect(syncJobs(a.queue)).toHaveLength(1);
    expect(retried.lastError).toMatch(/ECONNREFUSED|fetch failed|connect/i);

    await daemon(bDb, { port });
    await waitFor(() => syncJobs(a.queue)[0]?.state === "completed", "the retried job to succeed", LONG);
    expect(syncJobs(a.queue)[0]!.id).toBe(retried.id);
    expect(items(bDb)).toEqual([{ id: 1, name: "waits for b", qty: 1 }]);
  });

  it("fails a SyncBucket at once, without retries, when the peer refuses its token", async () => {
    const dir = tempDir();
    const b = await daemon(itemsDb(dir, "b"));
    const a = await daemon(itemsDb(dir, "a"));
    a.peers.upsert({ id: "b", address: b.url, token: "not-the-token-of-b" });
    await waitFor(() => syncJobs(a.queue).some((j) => j.state === "failed"), "the sync to fail", LONG);
    const [failed] = syncJobs(a.queue).filter((j) => j.state === "failed");
    expect(failed).toMatchObject({ attempts: 1 });
    expect(failed!.lastError).toMatch(/peer b refused the sync/);
  });

  it("keeps a pending SyncBucket across a daemon restart and runs it after", async () => {
    const dir = tempDir();
    const [aDb, bDb] = [itemsDb(dir, "a"), itemsDb(dir, "b")];
    const port = await freePort();
    const options = { syncBackoff: { baseMs: 1_500, jitter: 0 } };
    let a = await daemon(aDb, options);
    a.peers.upsert({ id: "b", address: `http://127.0.0.1:${port}`, token: TOKEN_B });
    write(aDb, "INSERT INTO items VALUES (7, 'across a restart', 7)");
    await waitFor(
      () => syncJobs(a.queue).some((j) => j.attempts === 1 && j.state === "pending"),
      "a failed attempt waiting for its retry",
      LONG,
    );
    await stop(a);
    const store = openStore(aDb);
    const [waiting] = new Queue(store).list({ type: SYNC_BUCKET, state: "pending" });
    store.close();
    // Usually after one attempt; a second may have failed too if stopping took longer than the 1.5 s
    // backoff (a loaded machine), and the job is just as pending.
    expect(waiting).toMatchObject({ payload: { peer: "b", bucket: "default" } });
    expect(waiting!.attempts).toBeGreaterThanOrEqual(1);

    await daemon(bDb, { port });
    a = await daemon(aDb, options);
    await waitFor(
      () => a.queue.get(waiting!.id)?.state === "completed",
      "the job to run after the restart",
      LONG,
    );
    expect(a.queue.get(waiting!.id)!.attempts).toBe(waiting!.attempts + 1);
    expect(items(bDb)).toEqual([{ id: 7, name: "across a restart", qty: 7 }]);
  });

  it("enqueues at most one SyncBucket per (peer, bucket) and one PingPeer per peer, none to a down peer", async () => {
    const store = openStore(join(tempDir(), "fan.db"));
    try {
      const queue = new Queue(store);
      const peers = new Peers(store);
      const handlers = peerJobHandlers({
        replica: Replica.attach(store, { relay: true }),
        queue,
        peers,
        cursors: new CursorStore(store, { flushIntervalMs: 0 }),
        logger: createLogger({ level: "silent" }),
        options: peerJobOptions(),
      });
      peers.upsert({ id: "b", address: "http://127.0.0.1:9", buckets: ["default", "orders"] });
      peers.upsert({ id: "c", address: "http://127.0.0.1:10" });
      peers.markDown("c", "connect ECONNREFUSED");
      peers.upsert({ id: "seen-through-redis" });
      for (let i = 0; i < 3; i++) {
        await handlers[SYNC_PEERS]!({} as Job, { signal: new AbortController().signal });
        await handlers[PING_PEERS]!({} as Job, { signal: new AbortController().signal });
      }
      const pending = queue.list({ state: "pending", limit: 100 });
      const keys = (type: string) =>
        pending
          .filter((j) => j.type === type)
          .map((j) => [j.key, j.priority])
          .sort();
      expect(keys(SYNC_BUCKET)).toEqual([
        [syncKey("b", "default"), PRIORITY.sync],
        [syncKey("b", "orders"), PRIORITY.sync],
      ]);
      expect(keys(PING_PEER)).toEqual([
        ["PingPeer:b", PRIORITY.ping],
        ["PingPeer:c", PRIORITY.ping],
      ]);
      expect(PRIORITY.ping).toBeGreaterThan(PRIORITY.sync);
    } finally {
      store.close();
    }
  });
});

// Each step is a CLI process (seconds apiece on a loaded 2-core machine): 26 s and 16 s beside two busy
// loops, against the 60 s default. The timeout only decides how long a hung process takes to be reported.
describe("tidewire peers and status", { timeout: 180_000 }, () => {
  it("adds, lists and removes peers, with --json and without, and never prints a token", async () => {
    const db = itemsDb(tempDir(), "cli");
    // \`tidewire peers <verb> <db> [args]\`
    const peers = (...[verb, ...args]: string[]) => runNode([CLI, "peers", verb!, db, ...args]);

    const added = await peers(
      "add",
      "http://127.0.0.1:7421",
      "--bucket",
      "default",
      "--bucket",
      "orders",
      "--token",
      "t0k",
      "--json",
    );
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({
      ok: true,
      peer: {
        id: "127.0.0.1:7421",
        address: "http://127.0.0.1:7421",
        buckets: ["default", "orders"],
        hasToken: true,
      },
    });
    expect(added.stdout).not.toContain("t0k");
    expect((await peers("add", "http://127.0.0.1:7422", "--id", "node-c")).code).toBe(0);

    const listed = await peers("list", "--json");
    expect(listed.code).toBe(0);
    const doc = JSON.parse(listed.stdout);
    expect(doc.peers.map((p: { id: string; state: string }) => [p.id, p.state])).toEqual([
      ["127.0.0.1:7421", "unknown"],
      ["node-c", "unknown"],
    ]);
    expect(listed.stdout).not.toContain("t0k");

    const text = await peers("list");
    expect(text.stdout).toMatch(/node-c\s+http:\/\/127\.0\.0\.1:7422\s+default\s+unknown\s+never/);

    const removed = await peers("remove", "node-c", "--json");
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout)).toEqual({ ok: true, removed: "node-c" });
    const again = await peers("remove", "node-c", "--json");
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout).error.code).toBe("ERR_NO_PEER");
    expect(JSON.parse((await peers("list", "--json")).stdout).peers).toHaveLength(1);
  });

  it("refuses a bad call with exit 2 and changes nothing; status lists the peers", async () => {
    const db = itemsDb(tempDir(), "cli");
    const store = openStore(db);
    const registry = new Peers(store);
    registry.upsert({ address: "http://127.0.0.1:7421", buckets: ["default", "orders"], token: "t0k" });
    registry.upsert({ id: "node-c", address: "http://127.0.0.1:7422" });
    store.close();
    // \`tidewire peers <verb> <db> [args]\`
    const peers = (...[verb, ...args]: string[]) => runNode([CLI, "peers", verb!, db, ...args]);

    const status = await runNode([CLI, "status", db, "--json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).peers.map((p: { id: string }) => p.id)).toEqual([
      "127.0.0.1:7421",
      "node-c",
    ]);
    expect((await runNode([CLI, "status", db])).stdout).toMatch(/^peers\n\s+ID\s+ADDRESS/m);

    const bad = [["add", "ftp://x"], ["add"], ["frobnicate"], ["add", "http://h:1", "--id", "a/b"]];
    const runs = await Promise.all(bad.map((args) => peers(...args, "--json")));
    runs.forEach((run, i) => {
      expect(run.code, bad[i]!.join(" ")).toBe(2);
      expect(JSON.parse(run.stdout).ok).toBe(false);
    });
    expect(JSON.parse((await peers("list", "--json")).stdout).peers).toHaveLength(2);
    expect((await runNode([CLI, "peers", "list", join(tempDir(), "missing.db")])).code).toBe(1);
  });
});
