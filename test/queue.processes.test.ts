/**
 * The queue across real processes: each fixture in test/fixtures/ is started
 * with `node --import tsx`, talks JSON lines on stdout and takes commands on
 * stdin. Children still alive when a test ends are killed in afterEach.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore, Queue, type Store } from "../src/index.js";
import { waitFor } from "./helpers.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

interface ChildEvent {
  event: string;
  pid: number;
  at: number;
  [key: string]: unknown;
}

class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly events: ChildEvent[] = [];
  stderr = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    script: string,
    args: string[],
  ) {
    this.proc = spawn(process.execPath, ["--import", "tsx", join("test/fixtures", script), ...args], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let pending = "";
    this.proc.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim() === "") continue;
        try {
          this.events.push(JSON.parse(line) as ChildEvent);
        } catch {
          this.events.push({ event: "garbage", pid: -1, at: Date.now(), line });
        }
      }
      this.notify();
    });
    this.proc.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        this.notify();
        resolve({ code, signal });
      });
    });
    children.push(this);
  }

  get alive(): boolean {
    return this.exitInfo === null;
  }

  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }

  of(event: string): ChildEvent[] {
    return this.events.filter((e) => e.event === event);
  }

  /** Resolves with the first event that matches; fails on timeout or if the process exits first. */
  waitFor(match: (e: ChildEvent) => boolean, what: string, timeoutMs = 20_000): Promise<ChildEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      const check = () => {
        const hit = this.events.find(match);
        if (hit) {
          done();
          resolve(hit);
        } else if (!this.alive) {
          done();
          reject(new Error(`${this.name} exited before ${what}\n${this.describe()}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      check();
    });
  }

  /** Waits for a clean exit (status 0); fails with the child's output otherwise. */
  async exit(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.describe()}`)),
        timeoutMs,
      );
    });
    try {
      const { code, signal } = await Promise.race([this.exited, timeout]);
      if (code !== 0) throw new Error(`${this.name} exited with ${code ?? signal}\n${this.describe()}`);
    } finally {
      clearTimeout(timer);
    }
  }

  describe(): string {
    const tail = this.events.slice(-20).map((e) => JSON.stringify(e));
    return `--- ${this.name} stdout (last events)\n${tail.join("\n")}\n--- stderr\n${this.stderr.slice(-4000)}`;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

const children: Child[] = [];
let dir: string;
const stores: Store[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tw-procs-"));
});

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.alive) {
      c.proc.kill("SIGKILL");
      await c.exited;
    }
  }
  for (const s of stores.splice(0)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(file: string): Store {
  const store = openStore(file);
  stores.push(store);
  return store;
}

function closeAll(): void {
  for (const s of stores.splice(0)) s.close();
}

/** No child reported a worker error, a failure it was not meant to have, or an uncaught error. */
function expectNoErrors(...cs: Child[]): void {
  for (const c of cs) {
    expect(c.of("error"), c.describe()).toEqual([]);
    expect(c.of("uncaught"), c.describe()).toEqual([]);
    expect(c.of("garbage"), c.describe()).toEqual([]);
  }
}

describe("queue across processes", () => {
  it("a worker killed with SIGKILL mid-job: another process finishes the job after the lease expires, counting the lost attempt", async () => {
    const file = join(dir, "kill.db");
    const setup = new Queue(open(file));
    const hung = setup.add("work", { hang: true }, { priority: 10, maxAttempts: 3 });
    const others = setup.addMany(Array.from({ length: 4 }, (_, i) => ({ type: "work", payload: { i } })));
    closeAll();

    const leaseMs = 1500;
    const victim = new Child("victim", "sigkill-worker.ts", [file, String(leaseMs), "victim"]);
    const started = await victim.waitFor((e) => e.event === "started", "started");
    expect(started.id).toBe(hung.id);
    expect(started.attempt).toBe(1);
    victim.proc.kill("SIGKILL");
    const { signal } = await victim.exited;
    expect(signal).toBe("SIGKILL");

    // What the dead process left behind: the job is running under its lease, one attempt spent.
    const observer = new Queue(open(file));
    const orphan = observer.get(hung.id)!;
    expect(orphan.state).toBe("running");
    expect(orphan.attempts).toBe(1);
    expect(orphan.leaseOwner).toBe(started.worker);
    const leaseExpiresAt = orphan.leaseExpiresAt!;
    for (const j of others) expect(observer.get(j.id)!.state).toBe("pending");

    const rescuer = new Child("rescuer", "sigkill-worker.ts", [file, String(leaseMs), "rescuer"]);
    await rescuer.exit();
    expectNoErrors(victim, rescuer);

    const retaken = rescuer.of("started").find((e) => e.id === hung.id);
    expect(retaken, rescuer.describe()).toBeDefined();
    expect(retaken!.attempt).toBe(2);
    // Nobody took the job while the dead worker's lease was still valid.
    expect(retaken!.at).toBeGreaterThan(leaseExpiresAt);

    const job = observer.get(hung.id)!;
    expect(job.state).toBe("completed");
    expect(job.attempts).toBe(2);
    expect(job.lastError).toMatch(/lease expired/);
    for (const j of others) {
      const after = observer.get(j.id)!;
      expect(after.state).toBe("completed");
      expect(after.attempts).toBe(1);
    }
    const stats = observer.stats();
    expect(stats.completed).toBe(5);
    expect(stats.total).toBe(5);
  });

  it("four processes drain 20,000 jobs from one file: each completes exactly once, no SQLITE_BUSY reaches a caller", async () => {
    const N = 20_000;
    const file = join(dir, "drain.db");
    const setupStore = open(file);
    setupStore.db.exec(
      "CREATE TABLE done (job_id INTEGER PRIMARY KEY); CREATE TABLE entered (pid INTEGER PRIMARY KEY)",
    );
    const setup = new Queue(setupStore);
    setup.addMany(Array.from({ length: N }, (_, i) => ({ type: "work", payload: { i } })));
    closeAll();

    const workers = Array.from({ length: 4 }, (_, i) => new Child(`drain-${i}`, "drain-worker.ts", [file]));
    await Promise.all(workers.map((w) => w.waitFor((e) => e.event === "ready", "ready", 30_000)));
    for (const w of workers) w.send("go");
    // 8-17 s here beside two busy loops (2 cores): the bounds leave room for a CI run that is
    // slower still, which the vitest default of 60 s per test would not.
    await Promise.all(workers.map((w) => w.exit(90_000)));

    expectNoErrors(...workers);
    for (const w of workers) expect(w.of("failed"), w.describe()).toEqual([]);
    const exits = workers.map((w) => w.of("exit")[0]!);
    const completed = exits.map((e) => e.completed as number);
    expect(completed.reduce((a, b) => a + b, 0)).toBe(N);
    // All four took part (each process's jobs wait for the others to start one, so none is starved out).
    for (const n of completed) expect(n).toBeGreaterThan(0);

    const store = open(file);
    expect((store.db.prepare("SELECT count(*) AS n FROM done").get() as { n: number }).n).toBe(N);
    const missing = store.db
      .prepare("SELECT count(*) AS n FROM tw_jobs WHERE id NOT IN (SELECT job_id FROM done)")
      .get() as { n: number };
    expect(missing.n).toBe(0);
    const stats = new Queue(store).stats();
    expect(stats.completed).toBe(N);
    expect(stats.total).toBe(N);
    expect(stats.averageAttempts).toBe(1);
  }, 150_000);

  it("retries follow the backoff and stop at maxAttempts with the last error kept", async () => {
    const file = join(dir, "retry.db");
    const setup = new Queue(open(file));
    // Per-job backoff: delays 100, 300.
    const own = setup.add("flaky", {}, { maxAttempts: 3, backoff: { baseMs: 100, factor: 3, jitter: 0 } });
    // The queue's default (set in the worker process): delays 150, 300, 600.
    const dflt = setup.add("flaky", {}, { maxAttempts: 4 });
    // Capped: delays 100, then 250 instead of 1000.
    const capped = setup.add(
      "flaky",
      {},
      { maxAttempts: 3, backoff: { baseMs: 100, factor: 10, maxMs: 250, jitter: 0 } },
    );
    // Succeeds on its second attempt.
    const recovers = setup.add("flaky", { succeedOn: 2 }, { maxAttempts: 5 });
    closeAll();

    const child = new Child("retry", "retry-worker.ts", [file]);
    await child.exit();
    expectNoErrors(child);

    const delays = new Map([
      [own.id, [100, 300]],
      [dflt.id, [150, 300, 600]],
      [capped.id, [100, 250]],
      [recovers.id, [150]],
    ]);
    for (const [id, expected] of delays) {
      const attempts = child.of("attempt").filter((e) => e.id === id);
      const threw = child.of("threw").filter((e) => e.id === id);
      const failed = child.of("failed").filter((e) => e.id === id);
      expect(attempts.map((e) => e.attempt)).toEqual(
        expected.map((_, i) => i + 1).concat(expected.length + 1),
      );
      expect(failed.map((e) => e.attempt)).toEqual(threw.map((e) => e.attempt));
      for (let n = 0; n < expected.length; n++) {
        const threwAt = threw[n]!.at;
        const writtenBy = failed[n]!.at;
        const next = attempts[n + 1]!;
        const runAt = next.runAt as number;
        // The retry is scheduled `delay` after the failure was written, which happened between the
        // throw and the worker's "failed" event: bounds from the process's own events, not from how
        // soon a loaded machine gets round to the write.
        expect(runAt - expected[n]!, `job ${id} retry ${n + 1} scheduled`).toBeGreaterThanOrEqual(threwAt);
        expect(runAt - expected[n]!, `job ${id} retry ${n + 1} scheduled`).toBeLessThanOrEqual(writtenBy);
        // ... and not run before it is due, nor left for long after (poll interval 10 ms; the bound
        // is loose because how soon a due job starts depends on when the process gets the CPU).
        expect(next.startedAt as number).toBeGreaterThanOrEqual(runAt);
        expect(next.at - threwAt, `job ${id} retry ${n + 1} ran`).toBeGreaterThanOrEqual(expected[n]!);
        expect(next.at - writtenBy, `job ${id} retry ${n + 1} ran`).toBeLessThan(expected[n]! + 5_000);
      }
    }

    const q = new Queue(open(file));
    for (const [job, attempts] of [
      [own, 3],
      [dflt, 4],
      [capped, 3],
    ] as const) {
      const after = q.get(job.id)!;
      expect(after.state).toBe("failed");
      expect(after.attempts).toBe(attempts);
      expect(after.lastError).toBe(`attempt ${attempts} of job ${job.id} failed`);
      expect(after.finishedAt).not.toBeNull();
    }
    const ok = q.get(recovers.id)!;
    expect(ok.state).toBe("completed");
    expect(ok.attempts).toBe(2);
    expect(ok.lastError).toBe(`attempt 1 of job ${recovers.id} failed`);
  });

  it("a periodic job fires once per period across two processes", async () => {
    const PERIOD = 300;
    const file = join(dir, "periodic.db");
    const watcher = new Queue(open(file));

    const schedulers = [0, 1].map((i) => new Child(`scheduler-${i}`, "periodic-scheduler.ts", [file]));
    await Promise.all(schedulers.map((s) => s.waitFor((e) => e.event === "ready", "ready", 30_000)));
    // Until six periods have fired, not for a fixed time: a loaded machine runs the schedulers less often.
    await waitFor(() => watcher.list({ type: "tick", limit: 1000 }).length >= 6, "six ticks", {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    for (const s of schedulers) s.send("stop");
    await Promise.all(schedulers.map((s) => s.exit()));
    expectNoErrors(...schedulers);
    closeAll();

    const exits = schedulers.map((s) => s.of("exit")[0]!);
    const store = open(file);
    const q = new Queue(store);
    const ticks = q.list({ type: "tick", limit: 1000 });
    const [periodic] = q.listPeriodic();
    expect(periodic?.name).toBe("tick");
    // The schedule's grid: every PERIOD ms from the first registration, as the queue keeps it.
    const grid = (t: number) => Math.floor((t - periodic!.nextRunAt) / PERIOD);
    const periods = ticks.map((j) => grid(j.createdAt));
    // At most once per period ...
    expect(new Set(periods).size, `periods ${periods.join(",")}`).toBe(ticks.length);
    expect(ticks.length).toBeGreaterThanOrEqual(6);

    // ... each fired by a scheduler's call (a job is stamped with the time inside that call) ...
    const calls = exits.flatMap((e) => {
      const flat = e.calls as number[];
      return Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!] as const);
    });
    for (const j of ticks) {
      expect(
        calls.some(([from, to]) => from <= j.createdAt && j.createdAt <= to),
        `tick ${j.id} at ${j.createdAt}`,
      ).toBe(true);
    }
    // ... and at least once in every period a scheduler ran in: missed periods are skipped by design,
    // so only a period in which no call ran from start to end may go without a tick. The first period
    // due is the one after the schedule was saved.
    const savedAt = store.db.prepare("SELECT created_at FROM tw_periodic WHERE name = 'tick'").pluck().get();
    const firstDue = grid((savedAt as number) + PERIOD);
    const due = new Set(
      calls
        .filter(([from, to]) => grid(from) === grid(to) && grid(from) >= firstDue)
        .map(([from]) => grid(from)),
    );
    const fired = new Set(periods);
    expect(
      [...due].filter((p) => !fired.has(p)),
      `periods run in ${[...due].join(",")}, fired ${periods.join(",")}`,
    ).toEqual([]);
    // Every job was counted by the scheduler that fired it, and by no other.
    expect(exits.reduce((a, e) => a + (e.fired as number), 0)).toBe(ticks.length);
  });
});
