/**
 * `tidewire jobs`, run as the installed bin runs: `node dist/cli/main.js` in a
 * child process, on real database files. Checks the output in both forms and
 * the CLI contract: exit 0/1/2, one JSON document with --json, one error line
 * on stderr without a stack trace unless --verbose.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Queue } from "../src/queue/queue.js";
import { workerSource } from "../src/queue/source.js";
import { openStore, type Store } from "../src/store.js";
import { type Run, runNode } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const DAY_MS = 86_400_000;

function tidewire(args: string[], cwd: string): Promise<Run> {
  return runNode([CLI, ...args], cwd);
}

/** A failed run: exactly one line on stderr, in the CLI's voice, with no stack trace. */
function expectOneErrorLine(run: Run, pattern: RegExp): void {
  const lines = run.stderr.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^tidewire: /);
  expect(run.stderr).toMatch(pattern);
  expect(run.stderr).not.toMatch(/^\s+at /m);
}

beforeAll(() => {
  // `npm test` builds first; a lone `vitest run` of this file may not have.
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

let dir: string;
let db: string;
/** Ids of the seeded jobs. */
let ids: { email: number; report: number; failed: number; old: number };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tidewire-cli-"));
  db = join(dir, "app.db");
  const store = openStore(db);
  const queue = new Queue(store);
  const email = queue.add("email", { to: "a@example.com" }, { priority: 5 });
  const report = queue.add("report", null, { delayMs: 3_600_000 });
  const failed = queue.add("sync", { bucket: "b" });
  queue.moveToState(failed.id, "failed");
  const old = queue.add("old", {});
  queue.moveToState(old.id, "completed");
  store.db.prepare("UPDATE tw_jobs SET finished_at = ? WHERE id = ?").run(Date.now() - 8 * DAY_MS, old.id);
  new Queue(store, "other").add("elsewhere", {});
  store.close();
  ids = { email: email.id, report: report.id, failed: failed.id, old: old.id };
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function readJobs(queueName = "default") {
  const store = openStore(db);
  try {
    return new Queue(store, queueName).list({ limit: 1000 });
  } finally {
    store.close();
  }
}

describe("help and version", () => {
  it("prints the version and help on every command, exit 0", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const version = await tidewire(["--version"], dir);
    expect(version).toMatchObject({ code: 0, stderr: "" });
    expect(version.stdout.trim()).toBe(pkg.version);

    const top = await tidewire(["--help"], dir);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/Usage: tidewire/);
    expect(top.stdout).toMatch(/jobs <command> <db>/);
    expect(top.stdout).toMatch(/serve/);
    expect(top.stdout).toMatch(/--verbose/);

    const jobs = await tidewire(["jobs", "--help"], dir);
    expect(jobs.code).toBe(0);
    expect(jobs.stdout).toMatch(/Usage: tidewire jobs <command> <db>/);
    for (const action of ["list", "stats", "retry", "cancel", "cleanup"]) {
      const run = await tidewire(["jobs", action, "--help"], dir);
      expect(run.code, action).toBe(0);
      expect(run.stdout).toContain(`Usage: tidewire jobs ${action} <db>`);
      expect(run.stdout).toContain("--json");
      expect(run.stdout).toContain("--queue");
    }
    const serve = await tidewire(["serve", "--help"], dir);
    expect(serve.code).toBe(0);
    expect(serve.stdout).toMatch(/--port/);
  });

  it("no command at all is a usage error", async () => {
    const run = await tidewire([], dir);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
  });
});

describe("jobs list", () => {
  it("prints a table", async () => {
    const run = await tidewire(["jobs", "list", db], dir);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATE\s+TYPE\s+PRIORITY\s+ATTEMPTS\s+RUN AT\s+CREATED\s+LAST ERROR$/);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(new RegExp(`^${ids.email}\\s+pending\\s+email\\s+5\\s+0/3\\s`));
    expect(run.stdout).not.toContain("elsewhere");
  });

  it("prints one JSON document, filtered, sorted and paged", async () => {
    const all = await tidewire(["jobs", "list", db, "--json"], dir);
    expect(all.code).toBe(0);
    const doc = JSON.parse(all.stdout);
    expect(doc).toMatchObject({ ok: true, queue: "default" });
    expect(doc.jobs.map((j: { id: number }) => j.id)).toEqual([ids.email, ids.report, ids.failed, ids.old]);
    expect(doc.jobs[0]).toMatchObject({ type: "email", payload: { to: "a@example.com" }, state: "pending" });

    const failed = JSON.parse(
      (await tidewire(["jobs", "list", db, "--state", "failed", "--json"], dir)).stdout,
    );
    expect(failed.jobs.map((j: { id: number }) => j.id)).toEqual([ids.failed]);

    const byType = JSON.parse(
      (await tidewire(["jobs", "list", db, "--type", "report", "--json"], dir)).stdout,
    );
    expect(byType.jobs.map((j: { id: number }) => j.id)).toEqual([ids.report]);

    const args = ["--sort", "priority", "--order", "desc", "--limit", "2", "--offset", "0", "--json"];
    const top = JSON.parse((await tidewire(["jobs", "list", db, ...args], dir)).stdout);
    expect(top.jobs).toHaveLength(2);
    expect(top.jobs[0].id).toBe(ids.email);

    const page = JSON.parse((await tidewire(["jobs", "list", db, "--offset", "3", "--json"], dir)).stdout);
    expect(page.jobs.map((j: { id: number }) => j.id)).toEqual([ids.old]);
  });

  it("reads another queue with --queue, wherever the options stand after the command", async () => {
    const run = await tidewire(["jobs", "list", "--queue", "other", db, "--json"], dir);
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc.queue).toBe("other");
    expect(doc.jobs.map((j: { type: string }) => j.type)).toEqual(["elsewhere"]);

    const empty = await tidewire(["jobs", "list", db, "--queue", "nobody"], dir);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/no jobs in queue nobody/);
  });
});

describe("jobs stats", () => {
  it("counts jobs per state, as text and as JSON", async () => {
    const text = await tidewire(["jobs", "stats", db], dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^queue\s+default\s+attempts$/m);
    // Jobs, then the attempts they spent (none of these ever ran).
    expect(text.stdout).toMatch(/^pending\s+2\s+0$/m);
    expect(text.stdout).toMatch(/^failed\s+1\s+0$/m);
    expect(text.stdout).toMatch(/^total\s+4$/m);

    const json = await tidewire(["jobs", "stats", db, "--json"], dir);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: true,
      queue: "default",
      pending: 2,
      running: 0,
      completed: 1,
      failed: 1,
      cancelled: 0,
      total: 4,
    });
  });
});

describe("jobs retry and cancel", () => {
  it("retries a failed job; a pending one cannot be retried (exit 1)", async () => {
    const run = await tidewire(["jobs", "retry", db, String(ids.failed)], dir);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout).toMatch(new RegExp(`job ${ids.failed} \\(sync\\) is pending again`));
    expect(readJobs().find((j) => j.id === ids.failed)?.state).toBe("pending");

    const again = await tidewire(["jobs", "retry", db, String(ids.failed)], dir);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe("");
    expectOneErrorLine(again, /job \d+ is pending; only failed or cancelled jobs can be retried/);
  });

  it("retries with --json", async () => {
    const run = await tidewire(["jobs", "retry", db, String(ids.failed), "--json"], dir);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true, job: { id: ids.failed, state: "pending" } });
  });

  it("cancels a pending job once; the second time and an unknown id fail (exit 1)", async () => {
    const run = await tidewire(["jobs", "cancel", db, String(ids.email)], dir);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout.trim()).toBe(`job ${ids.email} cancelled`);
    expect(readJobs().find((j) => j.id === ids.email)?.state).toBe("cancelled");

    const again = await tidewire(["jobs", "cancel", db, String(ids.email), "--json"], dir);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: false, error: { code: "ERR_JOB_STATE" } });
    expectOneErrorLine(again, /is cancelled; only pending or running jobs can be cancelled/);

    const missing = await tidewire(["jobs", "cancel", db, "9999"], dir);
    expect(missing.code).toBe(1);
    expectOneErrorLine(missing, /no job 9999 in queue default/);
  });

  it("cancels with --json and reports the state it left", async () => {
    const run = await tidewire(["jobs", "cancel", db, String(ids.report), "--json"], dir);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      ok: true,
      previousState: "pending",
      job: { id: ids.report, state: "cancelled" },
    });
  });
});

describe("jobs stuck", () => {
  /** A job claimed 10 minutes ago whose lease its worker still renews. */
  function seedLongRunner(): number {
    const store = openStore(db);
    try {
      const queue = new Queue(store);
      const job = queue.add("long", null, { priority: 100 });
      expect(workerSource(queue).claim("w1", 1, 60_000)[0]!.id).toBe(job.id);
      store.db
        .prepare("UPDATE tw_jobs SET started_at = ?, lease_expires_at = ? WHERE id = ?")
        .run(Date.now() - 10 * 60_000, Date.now() + 60_000, job.id);
      return job.id;
    } finally {
      store.close();
    }
  }

  it("lists a job running longer than --older-than though its lease is renewed", async () => {
    const id = seedLongRunner();
    const run = await tidewire(["jobs", "stuck", db, "--json"], dir);
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc).toMatchObject({ ok: true, queue: "default", olderThanMs: 300_000 });
    expect(doc.stuck).toHaveLength(1);
    expect(doc.stuck[0]).toMatchObject({
      reason: "running",
      job: { id, state: "running", leaseOwner: "w1" },
    });
    expect(doc.stuck[0].forMs).toBeGreaterThanOrEqual(10 * 60_000);

    const text = await tidewire(["jobs", "stuck", db, "--older-than", "5m"], dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^${id}\\s+running\\s+long\\s+1/3\\s+10m\\s+running\\s+w1$`, "m"));

    const none = await tidewire(["jobs", "stuck", db, "--older-than", "20m"], dir);
    expect(none.code).toBe(0);
    expect(none.stdout).toMatch(/no job in queue default has been running or waiting longer than 20m/);
  });

  it("refuses a bad --older-than (exit 2)", async () => {
    const run = await tidewire(["jobs", "stuck", db, "--older-than", "soon"], dir);
    expect(run.code).toBe(2);
    expectOneErrorLine(run, /older-than/);
  });
});

/** Undoes every migration after 10, as a file tidewire 10 wrote would be. */
function downgradeTo10(store: Store): void {
  store.db.exec(`
    ALTER TABLE tw_jobs DROP COLUMN trace;
    ALTER TABLE tw_jobs DROP COLUMN timeout_ms;
    DROP INDEX tw_outbox_message_id;
    ALTER TABLE tw_outbox DROP COLUMN message_id;
    ALTER TABLE tw_periodic DROP COLUMN paused_at;
    DROP TABLE IF EXISTS tw_renames;
    DROP TABLE IF EXISTS tw_remotes;
    DROP TABLE IF EXISTS tw_rollups;
    PRAGMA user_version = 10;
  `);
}

describe("a file an older tidewire wrote", () => {
  it("is brought up to date by jobs list and by status, instead of failing on a missing column", async () => {
    const store = openStore(db);
    downgradeTo10(store);
    store.close();
    const list = await tidewire(["jobs", "list", db, "--json"], dir);
    expect(list.stderr).toBe("");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).jobs.map((j: { timeoutMs: unknown }) => j.timeoutMs)).toContain(null);

    const again = openStore(db);
    downgradeTo10(again);
    again.close();
    const status = await tidewire(["status", db, "--json"], dir);
    expect(status.stderr).toBe("");
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).queues.default.pending).toBeGreaterThan(0);
  });
});

describe("jobs cleanup", () => {
  it("removes finished jobs older than 7 days by default", async () => {
    const run = await tidewire(["jobs", "cleanup", db], dir);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(run.stdout.trim()).toBe("removed 1 finished job older than 7d from queue default");
    expect(readJobs().map((j) => j.id)).toEqual([ids.email, ids.report, ids.failed]);
  });

  it("takes --older-than and prints JSON", async () => {
    const run = await tidewire(["jobs", "cleanup", db, "--older-than", "10d", "--json"], dir);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      ok: true,
      queue: "default",
      removed: 0,
      olderThanMs: 10 * DAY_MS,
    });

    await new Promise((r) => setTimeout(r, 5));
    const all = await tidewire(["jobs", "cleanup", db, "--older-than", "0s", "--json"], dir);
    expect(JSON.parse(all.stdout)).toMatchObject({ removed: 2, olderThanMs: 0 });
    expect(readJobs().map((j) => j.state)).toEqual(["pending", "pending"]);
  });
});

describe("usage errors exit 2", () => {
  const cases: Array<[string, (db: string) => string[], RegExp]> = [
    ["an unknown state", (db) => ["jobs", "list", db, "--state", "bogus"], /Allowed choices are pending/],
    ["a non-numeric id", (db) => ["jobs", "retry", db, "abc"], /argument 'id'.*positive integer/],
    ["a zero id", (db) => ["jobs", "cancel", db, "0"], /positive integer/],
    ["a missing id", (db) => ["jobs", "cancel", db], /cancel needs a job id, or --state/],
    ["a negative limit", (db) => ["jobs", "list", db, "--limit", "-1"], /--limit/],
    ["a bad sort key", (db) => ["jobs", "list", db, "--sort", "size"], /Allowed choices are created/],
    [
      "a bad duration",
      (db) => ["jobs", "cleanup", db, "--older-than", "soon"],
      /duration such as 500ms, 30s, 5m, 12h or 7d/,
    ],
    [
      "a bare number as a duration",
      (db) => ["jobs", "cleanup", db, "--older-than", "7"],
      /duration with its unit, such as 7s or 7ms/,
    ],
    ["an unknown option", (db) => ["jobs", "stats", db, "--frob"], /unknown option '--frob'/],
    ["an unknown jobs command", (db) => ["jobs", "frobnicate", db], /unknown command 'frobnicate'/],
    ["a missing jobs command", (db) => ["jobs", db], /unknown command '.*app\.db', expected one of list/],
    ["jobs alone", () => ["jobs"], /jobs needs a command, one of list, stats/],
    // One grammar, no rewriting: the old order is refused, with the order to use.
    [
      "the database before the command",
      (db) => ["jobs", db, "list"],
      /the command comes first: tidewire jobs list \S+app\.db$/m,
    ],
    [
      "an option before the command",
      (db) => ["jobs", "--queue", "q", "stats", db],
      /comes first: tidewire jobs stats --queue q /,
    ],
    ["an unknown command", () => ["frobnicate"], /unknown command 'frobnicate'/],
    ["an empty queue name", (db) => ["jobs", "stats", db, "--queue", " "], /non-empty/],
    // Refused by the library (InvalidArgumentError), not by the CLI's own parsing.
    ["a queue name too long", (db) => ["jobs", "stats", db, "--queue", "q".repeat(201)], /at most 200/],
  ];
  it.each(cases)("%s", async (_name, args, pattern) => {
    const run = await tidewire(args(db), dir);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/^tidewire: /);
    expect(run.stderr).toMatch(pattern);
    expect(run.stderr).not.toMatch(/^\s+at /m);
  });

  it("with --json, stdout still carries one JSON document", async () => {
    const run = await tidewire(["jobs", "retry", db, "abc", "--json"], dir);
    expect(run.code).toBe(2);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, error: { code: "ERR_USAGE" } });
    expect(run.stderr).toMatch(/^tidewire: /);
  });
});

describe("database files", () => {
  it("a missing database is an error and is not created", async () => {
    const missing = join(dir, "nope.db");
    const run = await tidewire(["jobs", "stats", missing], dir);
    expect(run.code).toBe(1);
    expectOneErrorLine(run, /no database at .*nope\.db/);
    expect(existsSync(missing)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith("nope"))).toEqual([]);
  });

  it("a file that is not a SQLite database is refused and left byte-identical", async () => {
    const other = mkdtempSync(join(tmpdir(), "tidewire-notdb-"));
    try {
      const file = join(other, "notes.db");
      const bytes = Buffer.from("these are my notes, not a database\n".repeat(200));
      writeFileSync(file, bytes);
      for (const args of [
        ["jobs", "list", file],
        ["jobs", "cleanup", file, "--json"],
      ]) {
        const run = await tidewire(args, other);
        expect(run.code).toBe(1);
        expectOneErrorLine(run, /is not a SQLite database/);
      }
      expect(readFileSync(file).equals(bytes)).toBe(true);
      expect(readdirSync(other)).toEqual(["notes.db"]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("another application's SQLite file is refused and left byte-identical, with no WAL", async () => {
    const other = mkdtempSync(join(tmpdir(), "tidewire-foreign-"));
    try {
      const file = join(other, "app.db");
      execFileSync("sqlite3", [
        file,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi');",
      ]);
      const bytes = readFileSync(file);
      for (const args of [
        ["jobs", "list", file],
        ["jobs", "stats", file, "--json"],
        ["jobs", "cancel", file, "1"],
        ["jobs", "cleanup", file],
      ]) {
        const run = await tidewire(args, other);
        expect(run.code).toBe(1);
        expectOneErrorLine(run, /is not a tidewire database \(it has no tw_jobs table\)/);
      }
      expect(readFileSync(file).equals(bytes)).toBe(true);
      expect(readdirSync(other)).toEqual(["app.db"]);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("--verbose adds the stack trace", async () => {
    const run = await tidewire(["--verbose", "jobs", "stats", join(dir, "nope.db")], dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^tidewire: StoreError: no database at/);
    expect(run.stderr).toMatch(/^\s+at /m);
  });
});
