/**
 * The console's job endpoints against a real daemon on 127.0.0.1: reads with
 * any token, writes only with an admin token, from no or the same origin, a
 * bulk action refused when its count moved, and every refusal changing
 * nothing. Jobs live in queue "ops", which the daemon's worker does not run.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { registry } from "../src/metrics.js";
import { Outbox } from "../src/outbox/outbox.js";
import { Queue } from "../src/queue/queue.js";
import { consoleDaemon } from "./console-hub.js";
import { hubCaller, tokensFile, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-hub-jobs-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const ADMIN = "admin-token-000000001";
const READER = "any-reader-0000000002";

async function hub() {
  const dir = tempDir();
  const d = await consoleDaemon(
    join(dir, "hub.db"),
    tokensFile(dir, [
      { token: ADMIN, buckets: "*", access: "admin", name: "admin" },
      { token: READER, buckets: ["a"], access: "read", name: "reader" },
    ]),
    cleanup,
  );
  const ops = new Queue(d.store, "ops");
  const call = hubCaller(d.url);
  return { d, ops, call };
}

describe("console job endpoints", () => {
  it("lists with filters, search, paging and sorting, and shows one job, for any token", async () => {
    const { ops, call } = await hub();
    for (let i = 0; i < 5; i++) ops.add("mail", { to: `user${i}@example.com` }, { priority: i });
    ops.add("report", { name: "50%_off" });
    const page = await call(
      "GET",
      "/v1/jobs?queue=ops&type=mail&limit=2&offset=1&sort=priority&order=desc",
      READER,
    );
    expect(page.status).toBe(200);
    expect(page.body.total).toBe(5);
    expect(page.body.queues).toContain("ops");
    expect(page.body.jobs.map((j: { priority: number }) => j.priority)).toEqual([3, 2]);
    const found = await call("GET", `/v1/jobs?queue=ops&q=${encodeURIComponent("50%_")}`, READER);
    expect(found.body.jobs.map((j: { type: string }) => j.type)).toEqual(["report"]);
    const id = found.body.jobs[0].id;
    const one = await call("GET", `/v1/jobs/${id}?queue=ops`, READER);
    expect(one.body.job).toMatchObject({ id, payload: { name: "50%_off" }, state: "pending", attempts: 0 });
    expect((await call("GET", "/v1/jobs/999?queue=ops", READER)).status).toBe(404);
    expect((await call("GET", "/v1/jobs?queue=ops&state=bogus", READER)).body.error.code).toBe(
      "ERR_INVALID_ARGUMENT",
    );
    expect((await call("GET", "/v1/jobs?limit=-1", READER)).status).toBe(400);
    expect((await call("GET", "/v1/jobs?limit=501", READER)).status).toBe(400);
    expect((await call("GET", "/v1/jobs", "no-such-token-000000")).status).toBe(401);
    ops.every("tick", 60_000, "mail");
    const periodic = await call("GET", "/v1/periodic?queue=ops", READER);
    expect(periodic.body.schedules).toEqual([
      expect.objectContaining({ name: "tick", everyMs: 60_000, lastRunAt: null }),
    ]);
    expect(periodic.body.schedules[0].nextRunAt).toBeGreaterThan(Date.now());
  });

  it("acts on one job with an admin token, and refuses a reader, another origin and a wrong state", async () => {
    const { d, ops, call } = await hub();
    const job = ops.add("mail", null, { delayMs: 3_600_000 });
    const refused = await call("POST", `/v1/jobs/${job.id}/run`, READER, { queue: "ops" });
    expect(refused).toMatchObject({ status: 403, body: { error: { code: "ERR_ADMIN_REQUIRED" } } });
    const cross = await call(
      "POST",
      `/v1/jobs/${job.id}/run`,
      ADMIN,
      { queue: "ops" },
      { origin: "https://evil.example" },
    );
    expect(cross).toMatchObject({ status: 403, body: { error: { code: "ERR_CROSS_ORIGIN" } } });
    for (const origin of ["null", "http://127.0.0.1.evil.example", `http://127.0.0.1:${d.port + 1}`]) {
      const refused = await call("POST", `/v1/jobs/${job.id}/run`, ADMIN, { queue: "ops" }, { origin });
      expect(refused.status, origin).toBe(403);
    }
    expect(ops.get(job.id)?.runAt).toBeGreaterThan(Date.now() + 60_000);

    const run = await call("POST", `/v1/jobs/${job.id}/run`, ADMIN, { queue: "ops" }, { origin: d.url });
    expect(run).toMatchObject({ status: 200, body: { ok: true, changed: true } });
    expect(ops.get(job.id)!.runAt).toBeLessThanOrEqual(Date.now());
    const prio = await call("POST", `/v1/jobs/${job.id}/priority`, ADMIN, { queue: "ops", priority: 5 });
    expect(prio.body.job.priority).toBe(5);
    const retry = await call("POST", `/v1/jobs/${job.id}/retry`, ADMIN, { queue: "ops" });
    expect(retry).toMatchObject({ status: 409, body: { error: { code: "ERR_JOB_STATE" } } });
    expect(retry.body.error.message).toMatch(/job \d+ is pending; only failed or cancelled/);
    expect((await call("POST", `/v1/jobs/${job.id}/cancel`, ADMIN, { queue: "ops" })).body.job.state).toBe(
      "cancelled",
    );
    expect((await call("POST", `/v1/jobs/${job.id}/delete`, ADMIN, { queue: "ops" })).status).toBe(200);
    expect(ops.get(job.id)).toBeUndefined();
    expect((await call("POST", `/v1/jobs/${job.id}/explode`, ADMIN, { queue: "ops" })).status).toBe(404);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      /tidewire_console_actions_total\{action="run",target="one",result="changed"\} [1-9]/,
    );
  });

  it("a bulk action needs the count it was shown, and refuses whole when it moved", async () => {
    const { ops, call } = await hub();
    for (let i = 0; i < 4; i++) ops.add("sync", { i });
    const filter = { state: "pending", type: "sync" };
    const listed = await call("GET", "/v1/jobs?queue=ops&state=pending&type=sync", ADMIN);
    expect(listed.body.total).toBe(4);
    ops.add("sync", { i: 4 });
    const moved = await call("POST", "/v1/jobs/bulk", ADMIN, {
      queue: "ops",
      action: "cancel",
      filter,
      expect: 4,
    });
    expect(moved).toMatchObject({ status: 409, body: { error: { code: "ERR_COUNT_CHANGED" } } });
    expect(ops.count({ state: "cancelled" })).toBe(0);
    expect(
      (await call("POST", "/v1/jobs/bulk", ADMIN, { queue: "ops", action: "cancel", filter })).status,
    ).toBe(400);
    expect(
      (await call("POST", "/v1/jobs/bulk", READER, { queue: "ops", action: "cancel", filter, expect: 5 }))
        .status,
    ).toBe(403);
    const done = await call("POST", "/v1/jobs/bulk", ADMIN, {
      queue: "ops",
      action: "cancel",
      filter,
      expect: 5,
    });
    expect(done.body).toMatchObject({ ok: true, matched: 5, changed: 5 });
    expect(ops.count({ state: "cancelled" })).toBe(5);
  });

  it("pauses and resumes a schedule with an admin token from the same origin; a reader or another origin cannot", async () => {
    const { d, ops, call } = await hub();
    ops.every("tick", 60_000, "mail");
    const path = "/v1/periodic/tick/pause";
    expect((await call("POST", path, READER, { queue: "ops" })).body.error.code).toBe("ERR_ADMIN_REQUIRED");
    const cross = await call("POST", path, ADMIN, { queue: "ops" }, { origin: "https://evil.example" });
    expect(cross).toMatchObject({ status: 403, body: { error: { code: "ERR_CROSS_ORIGIN" } } });
    expect(ops.listPeriodic()[0]!.paused).toBe(false);

    const paused = await call("POST", path, ADMIN, { queue: "ops" }, { origin: d.url });
    expect(paused).toMatchObject({
      status: 200,
      body: { ok: true, action: "pause", name: "tick", changed: true, schedule: { paused: true } },
    });
    expect(ops.listPeriodic()[0]!.paused).toBe(true);
    expect((await call("POST", path, ADMIN, { queue: "ops" })).body.changed).toBe(false);
    const listed = await call("GET", "/v1/periodic?queue=ops", READER);
    expect(listed.body.schedules[0]).toMatchObject({ name: "tick", paused: true });

    const resumed = await call("POST", "/v1/periodic/tick/resume", ADMIN, { queue: "ops" });
    expect(resumed.body).toMatchObject({ changed: true, schedule: { paused: false, pausedAt: null } });
    expect(resumed.body.schedule.nextRunAt).toBeGreaterThan(Date.now());
    expect(ops.listPeriodic()[0]!.paused).toBe(false);

    const missing = await call("POST", "/v1/periodic/nope/pause", ADMIN, { queue: "ops" });
    expect(missing).toMatchObject({ status: 404, body: { error: { code: "ERR_NO_SCHEDULE" } } });
    expect((await call("POST", "/v1/periodic/tick/explode", ADMIN, { queue: "ops" })).status).toBe(404);
    // The status document carries the operator's stats: attempts per state, outboxes, free pages.
    new Outbox(d.store, "mail").store("hi");
    ops.add("mail", null, { delayMs: 3_600_000 });
    const status = await call("GET", "/v1/status", ADMIN);
    expect(status.body.queues.ops.attempts).toEqual({
      pending: 0,
      running: 0,
      completed: 0,
      failed: 0,
      cancelled: 0,
    });
    expect(status.body.outboxes.mail).toMatchObject({ incoming: 1, total: 1 });
    expect(status.body.storage).toMatchObject({ autoVacuum: "incremental", pageSize: 4096 });
    expect(status.body.storage.pageCount).toBeGreaterThan(0);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(
      /tidewire_console_actions_total\{action="pause",target="schedule",result="changed"\} [1-9]/,
    );
  });
});
