/**
 * The dashboard: GET /dashboard serves one static page (dashboard/ at the
 * package root: index.html, app.js, console.js, style.css, jobs.js, schedules.js, storage.js,
 * sync.js, history.js, history.css) that shows the hub's GET /v1/status, refreshed every two
 * seconds, a Jobs view over GET/POST /v1/jobs (src/hub/jobs-routes.ts), a Sync view over the
 * status and GET/POST /v1/conflicts (src/hub/conflicts-routes.ts), and a History view of
 * GET /v1/history charted with uPlot, served from the uplot package under /dashboard/vendor/;
 * GET / redirects to it.
 *
 * Contract: the page holds no data and needs no auth; the data comes from
 * /v1/status with the bearer token the user gives the page (or a
 * `#token=` fragment, which browsers never send to the server), so the
 * dashboard is exactly as open as the sync endpoints. A strict Content
 * Security Policy allows only these files and requests to this origin:
 * with no inline script allowed, a table or node name cannot run as code
 * even if the page mishandled it.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { FastifyInstance } from "fastify";

// The same relative path from src/hub (tsx) and dist/hub (built).
const ASSETS = new URL("../../dashboard/", import.meta.url);
// uPlot (the History view's charts) from the package's own dependency: no CDN, the CSP stays 'self'.
const UPLOT = pathToFileURL(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));

const FILES = {
  "/dashboard": ["index.html", "text/html; charset=utf-8"],
  "/dashboard/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/dashboard/jobs.js": ["jobs.js", "text/javascript; charset=utf-8"],
  "/dashboard/schedules.js": ["schedules.js", "text/javascript; charset=utf-8"],
  "/dashboard/storage.js": ["storage.js", "text/javascript; charset=utf-8"],
  "/dashboard/sync.js": ["sync.js", "text/javascript; charset=utf-8"],
  "/dashboard/console.js": ["console.js", "text/javascript; charset=utf-8"],
  "/dashboard/history.js": ["history.js", "text/javascript; charset=utf-8"],
  "/dashboard/style.css": ["style.css", "text/css; charset=utf-8"],
  "/dashboard/history.css": ["history.css", "text/css; charset=utf-8"],
  // Named by the page, so Chromium does not ask for /favicon.ico and log its 404 as an error.
  "/dashboard/favicon.svg": ["favicon.svg", "image/svg+xml"],
} as const;

const VENDOR = {
  "/dashboard/vendor/uplot.js": [new URL("uPlot.iife.min.js", UPLOT), "text/javascript; charset=utf-8"],
  "/dashboard/vendor/uplot.css": [new URL("uPlot.min.css", UPLOT), "text/css; charset=utf-8"],
} as const;

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  // Read once at start: a few small files, and a missing one fails the start, not a request.
  const files = [
    ...Object.entries(FILES).map(([path, [file, type]]) => [path, new URL(file, ASSETS), type] as const),
    ...Object.entries(VENDOR).map(([path, [url, type]]) => [path, url, type] as const),
  ];
  for (const [path, url, type] of files) {
    const body = readFileSync(url);
    app.get(path, async (_request, reply) =>
      reply
        .type(type)
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-cache")
        .send(body),
    );
  }
  app.get("/", async (_request, reply) => reply.redirect("/dashboard"));
}
