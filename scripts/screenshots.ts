/**
 * `npm run screenshots`: PNGs of the dashboard's main views in
 * docs/screenshots/, taken in Debian's chromium (playwright-core) against a
 * real `tidewire serve` on a temporary database seeded as the browser tests
 * seed it (test/browser.ts, test/conflict-seed.ts), with one client that
 * synced and then fell behind. Rerun it after changing the dashboard.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { Remotes } from "../src/remote/registry.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { JOBS_ADMIN, launchChromium, ROOT, seedHistory, seedJobs, serveJobs } from "../test/browser.js";
import { seedConflicts } from "../test/conflict-seed.js";
import { sql } from "../test/helpers.js";

const OUT = join(ROOT, "docs/screenshots");
const WAIT = { timeout: 60_000 };

async function waitForText(page: Page, selector: string, pattern: RegExp): Promise<void> {
  await page.locator(selector, { hasText: pattern }).waitFor(WAIT);
}

async function filter(page: Page, state: string, type: string): Promise<void> {
  await page.selectOption("#f-state", state);
  await page.fill("#f-type", type);
  await page.click("#f-apply");
  await waitForText(page, "#jobs-status", /matching jobs? in queue ops$/);
}

const dir = mkdtempSync(join(tmpdir(), "tidewire-shots-"));
mkdirSync(OUT, { recursive: true });
const db = join(dir, "hub.db");
const conflicts = seedConflicts(db, dir);
const seeded = seedJobs(db);
seedHistory(db, 30);
// Two remote targets: a mirror the daemon keeps in sync both ways, and one that cannot be reached.
{
  const store = openStore(db);
  const remotes = new Remotes(store);
  remotes.add({ url: `sqlite:${join(dir, "mirror.db")}`, id: "mirror", intervalMs: 60_000 });
  remotes.add({ url: "postgres://app@127.0.0.1:1/reports", id: "reports", intervalMs: 300_000 });
  store.close();
}
const { url, child } = await serveJobs(db, dir);
const browser = await launchChromium();
// A client that synced once, then the hub took writes it has not pulled: the Sync view shows it behind.
const client = Replica.open(join(dir, "laptop.db"), { nodeId: "laptop-42" });
const transport = new HttpTransport(url, { token: JOBS_ADMIN });
try {
  client.store.db.exec(`
    CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT);
    CREATE TABLE album (id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE, artist TEXT)`);
  client.track("artist");
  client.track("album");
  await new SyncManager(client, transport, { intervalMs: 60_000 }).syncOnce();
  sql(db, "INSERT INTO artist VALUES ('h20', 'Rae', 'SE'); INSERT INTO artist VALUES ('h21', 'Sol', 'SE');");

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
  await page.goto(`${url}/dashboard#token=${JOBS_ADMIN}`);
  await page.waitForSelector("#main:not([hidden])", WAIT);
  await waitForText(page, "#state", /^updated /);
  await page.screenshot({ path: join(OUT, "overview.png"), fullPage: true });

  await page.click("#show-jobs");
  await waitForText(page, "#jobs-status", /matching jobs? in queue ops$/);
  await page.screenshot({ path: join(OUT, "jobs.png"), fullPage: true });

  await filter(page, "failed", "");
  await page.click(`#jobs-table button:text-is("${seeded.failed[0]}")`);
  await page.waitForSelector("#job-detail:not([hidden])", WAIT);
  await page.screenshot({ path: join(OUT, "job-detail.png"), fullPage: true });

  await filter(page, "pending", "email");
  await page.selectOption("#bulk-action", "cancel");
  await page.click("#bulk-start");
  await page.waitForSelector("#bulk-confirm:not([hidden])", WAIT);
  await page.screenshot({ path: join(OUT, "bulk-confirm.png"), fullPage: true });

  await page.click("#show-sync");
  await waitForText(page, "#conflicts-status", /^\d+ matching/);
  await waitForText(page, "#sync-clients", /laptop-42/);
  // The mirror's first cycle done, and the unreachable target's first error.
  await waitForText(page, "#sync-remotes", /mirror\.db.*s ago.*cannot reach/s);
  await page.screenshot({ path: join(OUT, "sync.png"), fullPage: true });
  await page.click(`#conflicts-table button:text-is("${conflicts.byName.Nina}")`);
  await page.waitForSelector("#conflict-detail:not([hidden])", WAIT);
  await page.check("#cd-replace");
  await page.locator("#conflict-detail").screenshot({ path: join(OUT, "conflict-detail.png") });
  await page.click("#show-history");
  for (const [range, file] of [
    ["1h", "history.png"],
    ["24h", "history-day.png"],
    ["30d", "history-month.png"],
  ]) {
    await page.click(`#history-range button[data-range="${range}"]`);
    await page.waitForSelector(`figure[data-series="sync.cycle"][data-range="${range}"]`, WAIT);
    await page.screenshot({ path: join(OUT, file!), fullPage: true });
  }
  console.log(
    `wrote overview.png, jobs.png, job-detail.png, bulk-confirm.png, sync.png, conflict-detail.png, history.png, history-day.png, history-month.png to ${OUT}`,
  );
} finally {
  transport.close();
  client.close();
  await browser.close();
  child.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
