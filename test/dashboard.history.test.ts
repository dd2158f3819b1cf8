/**
 * The dashboard's History view in a real browser (Debian's chromium through
 * playwright-core) against a real daemon on loopback: jobs run and changes
 * pushed over HTTP, the daemon stopped and started again on the same file,
 * and the charts draw what the first daemon recorded: each figure's data,
 * its legend, and pixels of its line on the canvas; the day's range too;
 * with uPlot under the page's strict CSP (a refused inline style or script
 * would be a console error, which fails the test).
 */
import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Daemon } from "../src/daemon/daemon.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { CHROMIUM, launchChromium } from "./browser.js";
import { serviceReachable, useTempDirs } from "./helpers.js";
import { HISTORY_ADMIN, runJobs, startHistoryDaemon, writeHistoryTokens } from "./history-helpers.js";
import { openItems } from "./sync-helpers.js";

const tempDir = useTempDirs("tidewire-history-ui-");
const cleanup: Array<() => unknown> = [];
let browser: Browser | undefined;
const hasChromium = await serviceReachable("Chromium", CHROMIUM, async () =>
  accessSync(CHROMIUM, constants.X_OK),
);
const WAIT = { timeout: 30_000 };
const ADMIN = HISTORY_ADMIN;

beforeAll(async () => {
  if (hasChromium) browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function daemon(dbPath: string, tokensFile: string): Promise<Daemon> {
  const d = await startHistoryDaemon(dbPath, tokensFile);
  cleanup.push(() => d.stop());
  return d;
}

/** What one chart's figure says it drew. */
const figure = (page: Page, series: string) =>
  page.$eval(`figure[data-series="${series}"]`, (f) => {
    // The project's tsconfig has no DOM library: the page's own types, as far as read here.
    const d = (f as unknown as { dataset: Record<string, string | undefined> }).dataset;
    return {
      state: d.state,
      range: d.range,
      total: Number(d.total),
      points: Number(d.points),
      legend: [...f.querySelectorAll(".u-legend .u-label")].map((l) => l.textContent),
    };
  });

/** Pixels of the canvas near `rgb`: the line uPlot drew in that colour (antialiasing blurs its edges). */
const pixelsOf = (page: Page, series: string, rgb: [number, number, number]) =>
  page.$eval(
    `figure[data-series="${series}"] canvas`,
    (canvas, [r, g, b]) => {
      const c = canvas as unknown as {
        width: number;
        height: number;
        getContext(kind: "2d"): {
          getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
        };
      };
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4)
        if (Math.abs(px[i]! - r) < 40 && Math.abs(px[i + 1]! - g) < 40 && Math.abs(px[i + 2]! - b) < 40) n++;
      return n;
    },
    rgb,
  );

describe.skipIf(!hasChromium)("the History view, in Chromium", () => {
  it("draws the charts of jobs run and changes pushed before the daemon was restarted", async () => {
    const dir = tempDir();
    const dbPath = join(dir, "hub.db");
    const tokensFile = writeHistoryTokens(dir);
    const first = await daemon(dbPath, tokensFile);
    await runJobs(first, 12, 3);
    const client = openItems(dir, "client");
    cleanup.push(() => client.close());
    const insert = client.store.db.prepare("INSERT INTO items VALUES (?, ?, ?)");
    client.store.write(() => {
      for (let i = 1; i <= 20; i++) insert.run(i, `n${i}`, i);
    });
    const transport = new HttpTransport(first.url, { token: ADMIN });
    await new SyncManager(client, transport, { buckets: ["default"] }).syncOnce();
    await transport.close();
    await first.stop();

    const second = await daemon(dbPath, tokensFile);
    const page = await browser!.newPage({ viewport: { width: 1200, height: 1400 } });
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(`${second.url}/dashboard#token=${ADMIN}`);
    await page.waitForSelector("#main:not([hidden])", WAIT);
    await page.click("#show-history");
    expect(await page.isHidden("#overview")).toBe(true);
    await page.waitForSelector('figure[data-series="sync.cycle"][data-state="drawn"]', WAIT);

    // The first daemon's maintenance jobs may have completed too: email's count is exact.
    const completed = await figure(page, "jobs.completed");
    expect(completed.state).toBe("drawn");
    expect(completed.range).toBe("1h");
    expect(completed.total).toBeGreaterThanOrEqual(12);
    expect(completed.legend).toContain("email");
    expect(await figure(page, "jobs.failed")).toMatchObject({ total: 3, legend: ["time", "flaky"] });
    expect(await figure(page, "changes.pushed")).toMatchObject({ total: 20, legend: ["time", "hub"] });
    for (const series of ["jobs.run", "jobs.wait"]) {
      const f = await figure(page, series);
      expect(f.legend).toEqual(["time", "p50", "p95", "p99"]);
      expect(f.total).toBeGreaterThanOrEqual(15);
      expect(f.points).toBeGreaterThan(0);
    }
    expect(await figure(page, "sync.cycle")).toMatchObject({ total: 0, points: 0 });
    expect(await page.textContent('figure[data-series="sync.cycle"] .chart-note')).toBe(
      "nothing recorded in the last hour",
    );
    // jobs.failed has one line, flaky, in the first colour (#2563eb): it is on the canvas.
    expect(await pixelsOf(page, "jobs.failed", [0x25, 0x63, 0xeb])).toBeGreaterThan(20);
    expect(await page.textContent('figure[data-series="jobs.run"] .chart-note')).toMatch(
      /^the last hour: p50 .* ms · p95 .* · p99 .* · max .* over \d+ \(percentiles ±4\.4%\)$/,
    );

    await page.click('#history-range button[data-range="24h"]');
    await expect.poll(() => figure(page, "jobs.failed"), WAIT).toMatchObject({ range: "24h", total: 3 });
    expect(await figure(page, "changes.pushed")).toMatchObject({ range: "24h", total: 20 });
    // Past a day, the hour rows: the same counts, one point per hour.
    await page.click('#history-range button[data-range="30d"]');
    await expect.poll(() => figure(page, "jobs.failed"), WAIT).toMatchObject({ range: "30d", total: 3 });
    expect(await page.textContent('figure[data-series="jobs.failed"] figcaption')).toBe(
      "Job attempts failed per hour",
    );

    await page.click("#show-jobs");
    expect(await page.isHidden("#history-view")).toBe(true);
    expect(await page.getAttribute("#show-history", "aria-pressed")).toBe("false");
    expect(errors).toEqual([]);
    await page.close();
  });
});
