/**
 * What the browser test files share inside vitest: whether Chromium is
 * here (a visible skip when not, a failure under CI=true), one browser per
 * file launched before its tests — building dist/ first when `built` is
 * missing, as the tests run `tidewire serve` from it — and closed after, and
 * a page's errors collected so a test can say there were none.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { CHROMIUM, launchChromium, ROOT } from "./browser.js";
import { serviceReachable } from "./helpers.js";

export const hasChromium = await serviceReachable("Chromium", CHROMIUM, async () =>
  accessSync(CHROMIUM, constants.X_OK),
);

/** `built`: a file under dist/ the tests need, e.g. "dist/hub/jobs-routes.js". */
export function useChromium(built: string): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!existsSync(join(ROOT, built))) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
    if (hasChromium) browser = await launchChromium();
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
  });
  return () => browser!;
}

/**
 * The page's script errors and console errors, as they come. The hub's
 * deliberate refusals (403, 409) show in the console as failed loads; nothing else may.
 */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  page.on("console", (m) => m.type() === "error" && !/40[39]/.test(m.text()) && errors.push(m.text()));
  return errors;
}
