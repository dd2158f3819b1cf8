/**
 * What the browser tests and `npm run screenshots` share: Debian's chromium
 * launched by playwright-core with the flags this closed, loaded machine
 * needs, a `tidewire serve` child on loopback, and a hub database seeded with
 * jobs in queue "ops" (which the daemon's worker does not run), so views and
 * tests see the same data.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { MINUTE_MS, Rollups } from "../src/history/rollups.js";
import { Queue } from "../src/queue/queue.js";
import { workerSource } from "../src/queue/source.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { listeningUrl, runNode, tokensFile } from "./helpers.js";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const CLI = join(ROOT, "dist/cli/main.js");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Without the background-networking flags Chromium keeps dialling out, which this
    // machine's closed network refuses; --no-sandbox because CI runs as root.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export const JOBS_ADMIN = "console-admin-token-0001";
export const JOBS_READER = "console-reader-token-002";
export const HOSTILE_PAYLOAD = "<img src=x onerror=window.pwned=1>";

/**
 * Seeds `db` (a new file) with a relay's tables and queue "ops": 30 pending
 * `email` jobs, 3 failed `report` jobs with a stack in their error, 2 delayed
 * `sync` jobs, one `email` whose payload is markup, and two periodic schedules
 * (an interval and a cron). Returns the ids by kind.
 */
export function seedJobs(db: string): { failed: number[]; delayed: number[]; hostile: number } {
  const replica = Replica.open(db);
  try {
    const ops = new Queue(replica.store, "ops");
    for (let i = 1; i <= 30; i++)
      ops.add("email", { to: `user${i}@example.com`, template: "welcome" }, { priority: i % 3 });
    const failed = [1, 2, 3].map((i) => ops.add("report", { month: `2026-0${i}` }, { maxAttempts: 1 }).id);
    const claimed = workerSource(ops).claim("worker-7f3a", 100, 60_000, ["report"]);
    workerSource(ops).settle(
      "worker-7f3a",
      claimed.map((job) => ({
        job,
        ok: false as const,
        retry: false,
        error: `Error: upstream timeout after 30s\n    at fetchReport (reports.js:42:11)\n    at run (worker.js:210:5)`,
      })),
    );
    const delayed = [1, 2].map((i) => ops.add("sync", { bucket: `b${i}` }, { delayMs: 3_600_000 * i }).id);
    const hostile = ops.add("email", { to: HOSTILE_PAYLOAD }).id;
    ops.every("nightly-report", 86_400_000, "report", { month: "current" });
    ops.cron("hourly-sync", "0 * * * *", "sync");
    return { failed, delayed, hostile };
  } finally {
    replica.close();
  }
}

/** `tidewire serve` on `db` with an admin and a read-only token (both for every bucket). */
export async function serveJobs(db: string, dir: string): Promise<{ url: string; child: ChildProcess }> {
  const tokens = tokensFile(dir, [
    { token: JOBS_ADMIN, buckets: "*", access: "admin", name: "ops-admin" },
    { token: JOBS_READER, buckets: "*", access: "read", name: "ops-reader" },
  ]);
  const run = runNode([CLI, "serve", "--db", db, "--port", "0", "--tokens-file", tokens]);
  return { url: await listeningUrl(run.child, 60_000), child: run.child };
}

/**
 * Writes `days` of plausible per-minute history into `db` (through Rollups, as
 * the daemon would: the last day's minutes, and the hours of them all), ending at `now`: email and report jobs with a daily
 * swell, a few failed reports, lognormal-ish run and wait times, changes
 * pushed and pulled on the hub and by sync, and sync cycles with one peer.
 * Deterministic: the same picture every time.
 */
export function seedHistory(db: string, days = 1, now = Date.now()): void {
  const store = openStore(db);
  let seed = 42;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const skewed = (median: number) => median * Math.exp((random() + random() + random() - 1.5) * 1.2);
  const minutes = days * 1440;
  let t = now - minutes * MINUTE_MS;
  const rollups = new Rollups(store, { now: () => t });
  try {
    for (let i = 0; i < minutes; i++, t += MINUTE_MS) {
      const swell = 1 + Math.sin((i / 1440) * 2 * Math.PI);
      const emails = Math.round(30 + 25 * swell * random());
      const reports = Math.round(4 * random());
      rollups.add("jobs.completed", "email", emails);
      if (reports > 0) rollups.add("jobs.completed", "report", reports);
      if (random() < 0.08) rollups.add("jobs.failed", "report", 1 + Math.round(random()));
      for (let k = 0; k < 24; k++) {
        rollups.observe("jobs.run", "email", skewed(18));
        rollups.observe("jobs.wait", "email", skewed(40 * (1 + swell)));
      }
      rollups.add("changes.pushed", "hub", Math.round(80 * swell * random()));
      rollups.add("changes.pulled", "hub", Math.round(160 * swell * random()));
      if (i % 2 === 0) {
        rollups.add("changes.pulled", "sync", Math.round(20 * random()));
        rollups.observe("sync.cycle", "hub-eu", skewed(45));
      }
      if (i % 60 === 59) rollups.flush();
    }
    rollups.flush();
  } finally {
    store.close();
  }
}
