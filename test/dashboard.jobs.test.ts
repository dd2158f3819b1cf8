/**
 * The dashboard's Jobs view in a real browser (Debian's chromium through
 * playwright-core) against a real `tidewire serve`: browsing and filtering a
 * seeded queue, a job's page, a retry and a bulk cancel that change the
 * SQLite file (read back with a separate connection), a bulk action refused
 * because the count moved, an action refused for a read-only token, and a
 * payload made of markup shown as text; the operator's knobs: a schedule
 * paused and resumed (the file says so), refused for a read-only token, and
 * the overview's database size, attempts per state and outbox counts.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { Outbox } from "../src/outbox/outbox.js";
import { Queue } from "../src/queue/queue.js";
import { openStore } from "../src/store.js";
import { HOSTILE_PAYLOAD, JOBS_ADMIN, JOBS_READER, seedJobs, serveJobs } from "./browser.js";
import { hasChromium, pageErrors, useChromium } from "./browser-hooks.js";
import { useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-console-");
const children: ChildProcess[] = [];
const browser = useChromium("dist/hub/jobs-routes.js");
const WAIT = { timeout: 30_000 };

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

async function hub() {
  const dir = tempDir();
  const db = join(dir, "hub.db");
  const seeded = seedJobs(db);
  const served = await serveJobs(db, dir);
  children.push(served.child);
  /** The jobs as the SQLite file holds them, read by a connection of the test's own. */
  const inFile = <T>(sql: string, ...args: unknown[]): T => {
    const conn = new Database(db, { readonly: true });
    try {
      return conn
        .prepare(sql)
        .pluck()
        .get(...args) as T;
    } finally {
      conn.close();
    }
  };
  return { db, url: served.url, seeded, inFile };
}

async function openJobs(url: string, token: string): Promise<Page> {
  const page = await browser().newPage();
  Object.assign(page, { errors: pageErrors(page) });
  await page.goto(`${url}/dashboard#token=${token}`);
  await page.waitForSelector("#main:not([hidden])", WAIT);
  await page.click("#show-jobs");
  await expect.poll(() => page.textContent("#jobs-status"), WAIT).toMatch(/matching jobs? in queue ops$/);
  return page;
}

const rows = (page: Page) =>
  page.$$eval("#jobs-table tbody tr", (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent).join(" | ")),
  );

async function filter(page: Page, f: { state?: string; type?: string; q?: string }) {
  await page.selectOption("#f-state", f.state ?? "");
  await page.fill("#f-type", f.type ?? "");
  await page.fill("#f-q", f.q ?? "");
  const before = await page.textContent("#jobs-status");
  await page.click("#f-apply");
  // The status line says "loading…" and then the new count.
  await expect.poll(() => page.textContent("#jobs-status"), WAIT).toMatch(/matching jobs? in queue ops$/);
  return before;
}

describe.skipIf(!hasChromium)("the Jobs view, in Chromium", () => {
  it("browses, pages, filters and searches the queue, and shows a job's page with markup as text", async () => {
    const { url, seeded } = await hub();
    const page = await openJobs(url, JOBS_ADMIN);
    expect(await page.textContent("#jobs-status")).toBe("36 matching jobs in queue ops");
    expect(await page.textContent("#page-info")).toBe("1–25 of 36");
    expect(await rows(page)).toHaveLength(25);
    await expect
      .poll(() => page.$$eval("#schedules tbody tr", (trs) => trs.map((tr) => tr.textContent)), WAIT)
      .toEqual([
        expect.stringMatching(/^hourly-syncsynccron 0 \* \* \* \*20/),
        expect.stringMatching(/^nightly-reportreport86400 s20.*–activePause$/),
      ]);
    await page.click("#page-next");
    await expect.poll(() => page.textContent("#page-info"), WAIT).toBe("26–36 of 36");
    expect(await rows(page)).toHaveLength(11);

    await filter(page, { state: "failed" });
    expect(await page.textContent("#jobs-status")).toBe("3 matching jobs in queue ops");
    expect((await rows(page)).every((r) => / \| failed \| report \| .*upstream timeout/.test(r))).toBe(true);

    await filter(page, { q: "user1@" });
    expect(await page.textContent("#jobs-status")).toBe("1 matching job in queue ops");

    await filter(page, { q: "onerror=" });
    await page.click(`#jobs-table button:text-is("${seeded.hostile}")`);
    await page.waitForSelector("#job-detail:not([hidden])", WAIT);
    expect(await page.textContent("#d-payload")).toContain(HOSTILE_PAYLOAD);
    expect(await page.$$("img")).toHaveLength(0);
    expect(await page.evaluate("window.pwned")).toBeUndefined();
    expect((page as Page & { errors: string[] }).errors).toEqual([]);
    await page.close();
  });

  it("retries a failed job from its page, and the SQLite file says pending", async () => {
    const { url, seeded, inFile } = await hub();
    const id = seeded.failed[0]!;
    const page = await openJobs(url, JOBS_ADMIN);
    await filter(page, { state: "failed" });
    await page.click(`#jobs-table button:text-is("${id}")`);
    await page.waitForSelector("#job-detail:not([hidden])", WAIT);
    expect(await page.textContent("#d-error")).toMatch(/upstream timeout after 30s\n\s+at fetchReport/);
    expect(await page.textContent("#d-state")).toBe("failed");
    await page.click('#job-detail button[data-action="retry"]');
    await expect.poll(() => page.textContent("#action-msg"), WAIT).toBe(`retry: job ${id} is now pending`);
    expect(await page.textContent("#d-state")).toBe("pending");
    expect(inFile("SELECT state || ':' || attempts FROM tw_jobs WHERE id = ?", id)).toBe("pending:0");
    expect((page as Page & { errors: string[] }).errors).toEqual([]);
    await page.close();
  });

  it("bulk-cancels every matching job after a confirmation, refusing first when the count moved", async () => {
    const { db, url, inFile } = await hub();
    const page = await openJobs(url, JOBS_ADMIN);
    await filter(page, { state: "pending", type: "email" });
    expect(await page.textContent("#jobs-status")).toBe("31 matching jobs in queue ops");
    await page.selectOption("#bulk-action", "cancel");
    await page.click("#bulk-start");
    await page.waitForSelector("#bulk-confirm:not([hidden])", WAIT);
    expect(await page.textContent("#bulk-question")).toMatch(
      /^cancel 31 jobs: jobs with state "pending", type "email" in queue ops\?/,
    );

    // Another process adds a matching job while the operator reads the question.
    const store = openStore(db);
    new Queue(store, "ops").add("email", { to: "late@example.com" });
    store.close();
    await page.click("#bulk-yes");
    await expect
      .poll(() => page.textContent("#action-msg"), WAIT)
      .toMatch(/^bulk cancel refused: 32 jobs match the filter now, not the 31 expected/);
    expect(inFile("SELECT count(*) FROM tw_jobs WHERE state = 'cancelled'")).toBe(0);

    await expect.poll(() => page.textContent("#jobs-status"), WAIT).toBe("32 matching jobs in queue ops");
    await page.click("#bulk-start");
    await page.click("#bulk-yes");
    await expect.poll(() => page.textContent("#action-msg"), WAIT).toBe("bulk cancel: 32 of 32 jobs changed");
    expect(
      inFile("SELECT count(*) FROM tw_jobs WHERE queue = 'ops' AND type = 'email' AND state = 'cancelled'"),
    ).toBe(32);
    expect(inFile("SELECT count(*) FROM tw_jobs WHERE state = 'pending'")).toBe(2); // the delayed syncs
    await page.close();
  });

  it("refuses an action for a read-only token with the hub's reason, changing nothing", async () => {
    const { url, seeded, inFile } = await hub();
    const id = seeded.delayed[0]!;
    const page = await openJobs(url, JOBS_READER);
    await filter(page, { type: "sync" });
    await page.click(`#jobs-table button:text-is("${id}")`);
    await page.waitForSelector("#job-detail:not([hidden])", WAIT);
    await page.click('#job-detail button[data-action="cancel"]');
    await expect
      .poll(() => page.textContent("#action-msg"), WAIT)
      .toMatch(/^cancel refused: .*needs a token with admin access/);
    expect(await page.getAttribute("#action-msg", "class")).toMatch(/error/);
    await page.click("#bulk-start");
    await page.click("#bulk-yes");
    await expect
      .poll(() => page.textContent("#action-msg"), WAIT)
      .toMatch(/^bulk retry refused: .*admin access/);
    expect(inFile("SELECT state FROM tw_jobs WHERE id = ?", id)).toBe("pending");
    await page.close();
  });
});

describe.skipIf(!hasChromium)("the operator's knobs, in Chromium", () => {
  const pausedAt = (inFile: <T>(sql: string, ...args: unknown[]) => T) =>
    inFile<number | null>(
      "SELECT paused_at FROM tw_periodic WHERE queue = 'ops' AND name = 'nightly-report'",
    );
  const scheduleButton = '#schedules tr[data-name="nightly-report"] button';

  it("pauses a schedule and resumes it, and the SQLite file says so", async () => {
    const { url, inFile } = await hub();
    const page = await openJobs(url, JOBS_ADMIN);
    await page.waitForSelector(`${scheduleButton}[data-action="pause"]`, WAIT);
    await page.click(scheduleButton);
    await expect
      .poll(() => page.textContent("#schedules-msg"), WAIT)
      .toBe("schedule nightly-report is paused");
    expect(pausedAt(inFile)).toBeGreaterThan(0);
    await page.waitForSelector(`${scheduleButton}[data-action="resume"]`, WAIT);
    expect(await page.textContent('#schedules tr[data-name="nightly-report"]')).toMatch(/paused since 20/);

    await page.click(scheduleButton);
    await expect
      .poll(() => page.textContent("#schedules-msg"), WAIT)
      .toMatch(/^schedule nightly-report is active; it runs next at 20/);
    expect(pausedAt(inFile)).toBeNull();
    const next = inFile<number>(
      "SELECT next_run_at FROM tw_periodic WHERE queue = 'ops' AND name = 'nightly-report'",
    );
    expect(next).toBeGreaterThan(Date.now());
    expect((page as Page & { errors: string[] }).errors).toEqual([]);
    await page.close();
  });

  it("refuses to pause a schedule for a read-only token, changing nothing", async () => {
    const { url, inFile } = await hub();
    const page = await openJobs(url, JOBS_READER);
    await page.waitForSelector(`${scheduleButton}[data-action="pause"]`, WAIT);
    await page.click(scheduleButton);
    await expect
      .poll(() => page.textContent("#schedules-msg"), WAIT)
      .toMatch(/^pause refused: .*needs a token with admin access/);
    expect(pausedAt(inFile)).toBeNull();
    await page.close();
  });

  it("shows the database's size and free pages, attempts per state and the outboxes' messages", async () => {
    const { db, url } = await hub();
    const store = openStore(db);
    const mail = new Outbox(store, "mail");
    mail.store("one");
    mail.store("two", { id: "m-2", state: "deferred", attempts: 1, nextAttemptAt: Date.now() + 60_000 });
    store.close();
    const page = await browser().newPage();
    await page.goto(`${url}/dashboard#token=${JOBS_READER}`);
    await page.waitForSelector("#main:not([hidden])", WAIT);
    await expect.poll(() => page.textContent("#db-size"), WAIT).toMatch(/^\d+(\.\d)? (KiB|MiB)$/);
    expect(await page.textContent("#db-detail")).toMatch(/free pages .* auto-vacuum incremental$/);
    // The three failed reports spent one attempt each.
    expect(await page.textContent("#queue-attempts tbody")).toBe("ops00030");
    await expect.poll(() => page.textContent("#outboxes tbody"), WAIT).toBe("mail101002"); // incoming 1, active 0, deferred 1, delivered 0, bounced 0, total 2;
    await page.close();
  });
});
