/**
 * The operator's knobs from a shell, run as the installed bin runs, on real
 * database files: `jobs schedules|pause|resume`, the stats in `jobs stats`
 * and `status` (attempts per state, outbox counts, size and free pages), and
 * `vacuum` shrinking the file, or refusing (exit 1, file untouched) one it
 * cannot shrink without `--full`.
 */
import { execFileSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Outbox } from "../src/outbox/outbox.js";
import { Queue } from "../src/queue/queue.js";
import { workerSource } from "../src/queue/source.js";
import { openStore } from "../src/store.js";
import { fileWithoutAutoVacuum, type Run, runNode, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-knobs-");

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/vacuum.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

const tidewire = (...args: string[]): Promise<Run> => runNode([CLI, ...args], ROOT);
const json = (run: Run) => {
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout);
};

let db: string;
beforeEach(() => {
  db = join(tempDir(), "app.db");
  const store = openStore(db);
  const q = new Queue(store);
  q.every("tick", 60_000, "tick");
  q.cron("nightly", "0 3 * * *", "report", null, { timezone: "UTC" });
  // Two failed jobs that spent one attempt each, one pending that never ran.
  for (let i = 0; i < 2; i++) {
    q.add("sync", { i }, { maxAttempts: 1 });
    const [job] = workerSource(q).claim("w", 1, 60_000);
    workerSource(q).settle("w", [{ job: job!, ok: false, error: "boom", retry: false }]);
  }
  q.add("mail", {});
  const mail = new Outbox(store, "mail");
  mail.store("a");
  mail.store("b", { state: "bounced", attempts: 3, lastError: "550" });
  store.close();
});

function scheduleRow(name: string) {
  const conn = new Database(db, { readonly: true });
  try {
    return conn.prepare("SELECT paused_at, next_run_at FROM tw_periodic WHERE name = ?").get(name) as {
      paused_at: number | null;
      next_run_at: number;
    };
  } finally {
    conn.close();
  }
}

describe("tidewire jobs schedules|pause|resume", () => {
  it("lists the schedules with their next run, pauses one and resumes it", async () => {
    const listed = json(await tidewire("jobs", "schedules", db, "--json"));
    expect(listed.schedules.map((s: { name: string; paused: boolean }) => [s.name, s.paused])).toEqual([
      ["nightly", false],
      ["tick", false],
    ]);
    const text = await tidewire("jobs", "schedules", db);
    expect(text.stdout).toMatch(/^NAME\s+TYPE\s+EVERY\s+NEXT RUN\s+LAST RUN\s+STATE$/m);
    expect(text.stdout).toMatch(/^tick\s+tick\s+60000 ms\s+20\S+Z\s+-\s+active$/m);

    const paused = await tidewire("jobs", "pause", db, "tick");
    expect(paused).toMatchObject({ code: 0, stdout: "schedule tick paused\n", stderr: "" });
    expect(scheduleRow("tick").paused_at).toBeGreaterThan(0);
    const again = json(await tidewire("jobs", "pause", db, "tick", "--json"));
    expect(again).toMatchObject({ ok: true, changed: false, schedule: { name: "tick", paused: true } });
    expect((await tidewire("jobs", "schedules", db)).stdout).toMatch(/^tick\s+.*paused since 20\S+Z$/m);

    const resumed = await tidewire("jobs", "resume", db, "tick");
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/^schedule tick resumed; it fires next at 20\S+Z$/m);
    expect(scheduleRow("tick").paused_at).toBeNull();
    expect(scheduleRow("tick").next_run_at).toBeGreaterThan(Date.now());
  });

  it("fails on an unknown schedule (exit 1) and on a missing name (exit 2), changing nothing", async () => {
    const before = scheduleRow("tick");
    const missing = await tidewire("jobs", "pause", db, "nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^tidewire: no periodic schedule "nope" in queue default\n$/);
    const missingJson = await tidewire("jobs", "resume", db, "nope", "--json");
    expect(JSON.parse(missingJson.stdout)).toMatchObject({ ok: false, error: { code: "ERR_NO_SCHEDULE" } });
    expect((await tidewire("jobs", "pause", db)).code).toBe(2);
    expect(scheduleRow("tick")).toEqual(before);
    const help = await tidewire("jobs", "pause", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/stop a periodic schedule firing/);
  });
});

describe("the stats in jobs stats and status", () => {
  it("jobs stats shows attempts per state, the outboxes and the file's pages, as text and JSON", async () => {
    const doc = json(await tidewire("jobs", "stats", db, "--json"));
    expect(doc).toMatchObject({
      failed: 2,
      pending: 1,
      attempts: { pending: 0, running: 0, completed: 0, failed: 2, cancelled: 0 },
      outboxes: { mail: { incoming: 1, bounced: 1, total: 2 } },
      storage: { autoVacuum: "incremental", pageSize: 4096 },
    });
    expect(doc.storage.sizeBytes).toBe(doc.storage.pageSize * doc.storage.pageCount);
    const text = (await tidewire("jobs", "stats", db)).stdout;
    expect(text).toMatch(/^failed\s+2\s+2$/m);
    expect(text).toMatch(/^OUTBOX\s+INCOMING\s+ACTIVE\s+DEFERRED\s+DELIVERED\s+BOUNCED\s+TOTAL$/m);
    expect(text).toMatch(/^mail\s+1\s+0\s+0\s+0\s+1\s+2$/m);
    expect(text).toMatch(/^storage {2}\d.* in \d+ pages of 4096 bytes, \d+ free .*auto-vacuum incremental$/m);
  });

  it("status shows the same, as text and JSON", async () => {
    const doc = json(await tidewire("status", db, "--json"));
    expect(doc.queues.default.attempts.failed).toBe(2);
    expect(doc.outboxes.mail).toMatchObject({ incoming: 1, bounced: 1 });
    expect(doc.storage).toMatchObject({ autoVacuum: "incremental" });
    const text = (await tidewire("status", db)).stdout;
    expect(text).toMatch(/^ {2}default\s+1\s+0\s+0\s+2\s+0$/m);
    expect(text).toMatch(/^ {4}attempts\s+0\s+0\s+0\s+2\s+0$/m);
    expect(text).toMatch(/^ {2}mail\s+1\s+0\s+0\s+0\s+1\s+2$/m);
    expect(text).toMatch(/^storage {2}.*auto-vacuum incremental$/m);
  });
});

describe("tidewire vacuum", () => {
  function bloat(path: string): void {
    const store = openStore(path);
    const q = new Queue(store, "bulk");
    q.addMany(
      Array.from({ length: 2000 }, (_, i) => ({ type: "big", payload: { i, pad: "x".repeat(3000) } })),
    );
    store.db.prepare("DELETE FROM tw_jobs WHERE queue = 'bulk'").run();
    store.close();
  }

  it("returns the free pages of an incremental file and the file shrinks", async () => {
    bloat(db);
    const before = statSync(db).size;
    const doc = json(await tidewire("vacuum", db, "--step", "100", "--json"));
    expect(doc).toMatchObject({ ok: true, mode: "incremental", stoppedBy: null, after: { freePages: 0 } });
    expect(doc.steps).toBeGreaterThanOrEqual(Math.ceil(doc.before.freePages / 100));
    const after = statSync(db).size;
    expect(after).toBe(doc.after.sizeBytes);
    expect(after).toBeLessThan(before / 4);
    const text = await tidewire("vacuum", db);
    expect(text.stdout).toMatch(/^returned 0 free pages in 0 steps/);
  });

  it("refuses a file without auto-vacuum (exit 1, untouched) until --full converts it", async () => {
    const old = fileWithoutAutoVacuum(join(tempDir(), "old.db"));
    bloat(old);
    const before = statSync(old).size;
    const refused = await tidewire("vacuum", old);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/has no incremental auto-vacuum, so its \d+ free pages .* --full/);
    expect(statSync(old).size).toBe(before);
    const full = json(await tidewire("vacuum", old, "--full", "--json"));
    expect(full).toMatchObject({ mode: "full", before: { autoVacuum: "none" } });
    expect(full.after).toMatchObject({ autoVacuum: "incremental", freePages: 0 });
    expect(statSync(old).size).toBeLessThan(before / 4);
    expect((await tidewire("vacuum", old, "--step", "0")).code).toBe(2);
    expect((await tidewire("vacuum", join(tempDir(), "nope.db"))).code).toBe(1);
  });
});
