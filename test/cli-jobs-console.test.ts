/**
 * `tidewire jobs update` and the bulk forms of `jobs retry|cancel`, run as the
 * installed bin runs, on real database files: the file changes as the
 * command says, and a usage error or a job in the wrong state changes nothing.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Queue } from "../src/queue/queue.js";
import { openStore } from "../src/store.js";
import { type Run, runNode, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-console-");

beforeAll(() => {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

let db: string;
let delayed: number;
beforeEach(() => {
  db = join(tempDir(), "app.db");
  const store = openStore(db);
  const q = new Queue(store);
  delayed = q.add("report", null, { delayMs: 3_600_000 }).id;
  for (let i = 0; i < 3; i++) q.moveToState(q.add("sync", { i }).id, "failed");
  q.moveToState(q.add("mail", {}).id, "failed");
  store.close();
});

const tidewire = (...args: string[]): Promise<Run> => runNode([CLI, ...args], ROOT);
function read<T>(fn: (q: Queue) => T): T {
  const store = openStore(db);
  try {
    return fn(new Queue(store));
  } finally {
    store.close();
  }
}

describe("tidewire jobs update", () => {
  it("re-prioritises and re-schedules a pending job", async () => {
    const run = await tidewire(
      "jobs",
      "update",
      db,
      String(delayed),
      "--priority",
      "-4",
      "--run-at",
      "2030-01-02T03:04:05Z",
      "--json",
    );
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).job).toMatchObject({
      priority: -4,
      runAt: Date.parse("2030-01-02T03:04:05Z"),
    });
    expect(read((q) => q.get(delayed))).toMatchObject({
      priority: -4,
      runAt: Date.parse("2030-01-02T03:04:05Z"),
    });
    const now = await tidewire("jobs", "update", db, String(delayed), "--run-at", "now");
    expect(now.code).toBe(0);
    expect(read((q) => q.get(delayed)!.runAt)).toBeLessThanOrEqual(Date.now());
  });

  it("refuses bad input (exit 2) and a job that is not pending (exit 1), changing nothing", async () => {
    expect((await tidewire("jobs", "update", db, String(delayed))).code).toBe(2);
    expect((await tidewire("jobs", "update", db, String(delayed), "--priority", "1.5")).code).toBe(2);
    expect((await tidewire("jobs", "update", db, String(delayed), "--run-at", "tomorrowish")).code).toBe(2);
    const failed = read((q) => q.list({ state: "failed" })[0]!.id);
    const run = await tidewire("jobs", "update", db, String(failed), "--priority", "9");
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/job \d+ is failed; only a pending job can be updated/);
    expect(read((q) => q.get(failed)!.priority)).toBe(0);
  });
});

describe("tidewire jobs retry|cancel --state --type", () => {
  it("retries every failed job of a type, and cancels every pending one", async () => {
    const retry = await tidewire("jobs", "retry", db, "--state", "failed", "--type", "sync", "--json");
    expect(retry.code).toBe(0);
    expect(JSON.parse(retry.stdout)).toMatchObject({ ok: true, action: "retry", matched: 3, changed: 3 });
    expect(read((q) => [q.count({ state: "pending" }), q.count({ state: "failed", type: "mail" })])).toEqual([
      4, 1,
    ]);
    const cancel = await tidewire("jobs", "cancel", db, "--state", "pending");
    expect(cancel).toMatchObject({ code: 0 });
    expect(cancel.stdout).toMatch(/cancelled 4 of 4 matching jobs/);
    expect(read((q) => q.count({ state: "cancelled" }))).toBe(4);
  });

  it("without an id or a filter is a usage error that changes nothing", async () => {
    const run = await tidewire("jobs", "cancel", db);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/needs a job id, or --state/);
    expect(read((q) => q.count({ state: "cancelled" }))).toBe(0);
  });
});
