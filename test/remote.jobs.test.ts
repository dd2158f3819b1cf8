/**
 * RemoteSync jobs in a daemon started in-process (`startDaemon` on loopback,
 * real SQLite files, a real closed port for an unreachable PostgreSQL): an
 * unreachable target's job is retried with backoff and its error recorded in
 * the registry, status and metrics; a cycle that cannot succeed (no table
 * matches the filter) fails at once; an edit made on a target registered
 * both ways comes back; a
 * paused target gets no job; a target added while the daemon runs is synced
 * with its rows, its metrics labelled by backend and id.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type Daemon, startDaemon } from "../src/daemon/daemon.js";
import { CLEANUP_REMOTES, REMOTE_SYNC, remoteJobOptions } from "../src/daemon/remote-jobs.js";
import { createLogger } from "../src/log.js";
import { registry as metricsRegistry } from "../src/metrics.js";
import { Remotes } from "../src/remote/registry.js";
import { readStatus } from "../src/status.js";
import { freePort, invalidArgument, useTempDirs, waitFor } from "./helpers.js";
import { dumpSqliteFile, runOps, sourceReplica } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-remote-jobs-");
const LONG = { timeoutMs: 30_000, intervalMs: 20 };
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
});

async function daemon(dir: string): Promise<{ d: Daemon; remotes: Remotes }> {
  const r = sourceReplica(dir);
  runOps(r.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: 1.5, data: null }]);
  const dbPath = r.store.path;
  r.close();
  const d = await startDaemon({
    dbPath,
    port: 0,
    token: "remote-jobs-token-0123456789abcdef",
    logger: createLogger({ level: "silent" }),
    remoteScanMs: 50,
    remoteBackoff: { baseMs: 50, maxMs: 100, jitter: 0 },
    remoteMaxAttempts: 20,
  });
  daemons.push(d);
  return { d, remotes: new Remotes(d.store) };
}

const syncJobs = (d: Daemon, remote: string) =>
  d.remotes.queue
    .list({ type: REMOTE_SYNC, limit: 1000 })
    .filter((j) => (j.payload as { remote: string }).remote === remote);

describe("RemoteSync jobs", () => {
  it("syncs a target added while it runs, and labels its metrics by backend and id", async () => {
    const dir = tempDir();
    const { d, remotes } = await daemon(dir);
    const mirror = join(dir, "mirror.db");
    remotes.add({ url: `sqlite:${mirror}`, id: "file", intervalMs: 50 });
    await waitFor(() => remotes.get("file")?.lastSuccessAt !== null, "a successful cycle", LONG);
    expect(dumpSqliteFile(mirror)).toEqual(dumpSqliteFile(d.store.path));
    const text = await metricsRegistry.metrics();
    expect(text).toMatch(
      /tidewire_remote_target_cycles_total\{backend="sqlite",target="file",result="ok"\} [1-9]/,
    );
    expect(text).toMatch(/tidewire_remote_target_pending_payloads\{backend="sqlite",target="file"\} 0/);
    expect(readStatus(d.store).remotes[0]).toMatchObject({ id: "file", lastError: null, pending: 0 });
  });

  it("retries an unreachable target with backoff and records its error; a paused target gets no job", async () => {
    const dir = tempDir();
    const { d, remotes } = await daemon(dir);
    const port = await freePort();
    remotes.add({ url: `postgres://postgres:pw-s3cret@127.0.0.1:${port}/none`, id: "down", intervalMs: 50 });
    await waitFor(() => syncJobs(d, "down").some((j) => j.attempts >= 3), "three attempts of one job", LONG);
    const jobs = syncJobs(d, "down");
    // One job, retried: the dedup key keeps the scans from piling up more.
    expect(jobs.filter((j) => j.state === "pending" || j.state === "running")).toHaveLength(1);
    const down = remotes.get("down")!;
    expect(down.lastError).toMatch(/cannot reach postgres:\/\/postgres@127\.0\.0\.1/);
    expect(down.lastError).not.toMatch(/s3cret/);
    expect(down.lastErrorAt).toEqual(expect.any(Number));
    expect(down.lastSuccessAt).toBeNull();
    expect(await metricsRegistry.metrics()).toMatch(
      /tidewire_remote_target_cycles_total\{backend="postgres",target="down",result="error"\} [1-9]/,
    );

    expect(remotes.setPaused("down", true)).toBe(true);
    // A job already queued finds the target paused and does nothing; the scans add none after it.
    await waitFor(
      () => syncJobs(d, "down").every((j) => j.state !== "pending" && j.state !== "running"),
      "the queued job to end",
      LONG,
    );
    const count = syncJobs(d, "down").length;
    const attempt = remotes.get("down")!.lastAttemptAt;
    const scans = d.remotes.queue.list({ type: "tidewire.syncRemotes", limit: 1000 }).length;
    await waitFor(
      () => d.remotes.queue.list({ type: "tidewire.syncRemotes", limit: 1000 }).length >= scans + 3,
      "three more scans",
      LONG,
    );
    expect(syncJobs(d, "down")).toHaveLength(count);
    expect(remotes.get("down")!.lastAttemptAt).toBe(attempt);
  });

  it("fails at once a cycle that cannot succeed: a filter matching no table", async () => {
    const dir = tempDir();
    const { d, remotes } = await daemon(dir);
    remotes.add({
      url: `sqlite:${join(dir, "a.db")}`,
      id: "nobucket",
      buckets: ["elsewhere"],
      intervalMs: 3_600_000,
    });
    await waitFor(() => syncJobs(d, "nobucket").some((j) => j.state === "failed"), "the job to fail", LONG);
    expect(syncJobs(d, "nobucket")[0]).toMatchObject({ state: "failed", attempts: 1 });
    expect(remotes.get("nobucket")!.lastError).toMatch(
      /no tracked tables matching the bucket and table filter/,
    );
  });

  it("pulls back an edit made directly on a target registered both ways, and records the pull", async () => {
    const dir = tempDir();
    const { d, remotes } = await daemon(dir);
    const mirror = join(dir, "mirror.db");
    remotes.add({ url: `sqlite:${mirror}`, id: "both", intervalMs: 50 });
    await waitFor(() => remotes.get("both")?.lastSuccessAt != null, "the first cycle", LONG);
    const other = new Database(mirror);
    try {
      other.prepare("UPDATE items SET name = 'edited on the target' WHERE id = 1").run();
    } finally {
      other.close();
    }
    const local = () => d.store.db.prepare("SELECT name FROM items WHERE id = 1").pluck().get();
    await waitFor(() => local() === "edited on the target", "the target's edit to arrive", LONG);
    expect(remotes.get("both")!.lastPullAt).toEqual(expect.any(Number));
  });

  it("cleans its own queue: completed jobs after a day, failed ones after the queue's seven days", async () => {
    const dir = tempDir();
    const { d } = await daemon(dir);
    const q = d.remotes.queue;
    const day = 86_400_000;
    const old = (state: "completed" | "failed", ageMs: number) => {
      const job = q.add("Old", {});
      d.store.db
        .prepare("UPDATE tw_jobs SET state = ?, finished_at = ? WHERE id = ?")
        .run(state, Date.now() - ageMs, job.id);
      return job.id;
    };
    const gone = [old("completed", 2 * day), old("failed", 8 * day)];
    const kept = [old("completed", day / 2), old("failed", 2 * day)];
    const cleaned = q.add(CLEANUP_REMOTES, {});
    await waitFor(() => q.get(cleaned.id)?.state === "completed", "the cleanup job", LONG);
    expect([...gone, ...kept].map((id) => q.get(id) !== undefined)).toEqual([false, false, true, true]);
  });

  it("refuses bad options before anything starts", () => {
    invalidArgument(() => remoteJobOptions({ remoteScanMs: 0 }));
    invalidArgument(() => remoteJobOptions({ remoteConcurrency: 1.5 }));
    invalidArgument(() => remoteJobOptions({ remoteMaxAttempts: -1 }));
    invalidArgument(() => remoteJobOptions({ remoteBackoff: { baseMs: -5 } }));
  });
});
