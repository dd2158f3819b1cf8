/**
 * The hub's dashboard in a real browser (Debian's chromium driven by
 * playwright-core) against a real `tidewire serve` on loopback, fed by a
 * client that syncs through the CLI: the page shows the hub's node, buckets
 * and the client's pushes, follows new syncs on its own, renders hostile
 * table and bucket names as text, and shows nothing without a token for every
 * bucket. GET /v1/status is checked over plain HTTP the same way, and
 * Clients' bound in memory.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Clients } from "../src/hub/clients.js";
import { Remotes } from "../src/remote/registry.js";
import { Replica } from "../src/replica/replica.js";
import { launchChromium } from "./browser.js";
import { listeningUrl, type Run, runNode, serviceReachable, sleep, sql, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ADMIN = "dashboard-admin-token-0001";
const LIMITED = "dashboard-notes-only-0002";
// Names a careless page would turn into markup that runs.
const HOSTILE_TABLE = "<img src=x onerror=window.pwned=1>";
const HOSTILE_BUCKET = "<b onmouseover=window.pwned=2>bucket</b>";
const HOSTILE_FILE = "<img src=y onerror=window.pwned=3>.db";
const PG_SECRET = "dashboard-pg-s3cret";

const tempDir = useTempDirs("tidewire-dashboard-");
const children: ChildProcess[] = [];
let browser: Browser | undefined;
const hasChromium = await serviceReachable("Chromium", CHROMIUM, async () =>
  accessSync(CHROMIUM, constants.X_OK),
);

beforeAll(async () => {
  if (!existsSync(join(ROOT, "dist/hub/dashboard.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
  if (hasChromium) browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

function tidewire(args: string[]): Promise<Run> & { child: ChildProcess } {
  const run = runNode([CLI, ...args]);
  children.push(run.child);
  return run;
}

/** A daemon whose database tracks `notes` and a table and bucket with hostile names. */
async function startHub(dir: string): Promise<{ url: string; nodeId: string }> {
  const db = join(dir, "hub.db");
  const replica = Replica.open(db);
  replica.store.db.exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
    CREATE TABLE "${HOSTILE_TABLE}" (id INTEGER PRIMARY KEY)`);
  replica.track("notes");
  replica.track(HOSTILE_TABLE, { bucket: HOSTILE_BUCKET });
  // A registered remote target whose file name is markup and whose URL would carry a password.
  new Remotes(replica.store).add({ url: `sqlite:${join(dir, HOSTILE_FILE)}`, id: "mirror" });
  new Remotes(replica.store).add({
    url: `postgres://app:${PG_SECRET}@127.0.0.1:1/none`,
    id: "pg",
    intervalMs: 3_600_000,
  });
  const nodeId = replica.nodeId;
  replica.close();
  const tokens = join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({
      tokens: [
        { token: ADMIN, buckets: "*", access: "read-write" },
        { token: LIMITED, buckets: ["default"], access: "read" },
      ],
    }),
  );
  const run = tidewire(["serve", "--db", db, "--port", "0", "--tokens-file", tokens]);
  const url = await listeningUrl(run.child);
  return { url, nodeId };
}

/** A client replica of `notes` holding `rows` rows written by the sqlite3 shell; returns its node id. */
async function writeAndSync(db: string, url: string, from: number, to: number): Promise<string> {
  if (!existsSync(db)) {
    sql(db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);");
    expect((await tidewire(["init", db, "--table", "notes"])).code).toBe(0);
  }
  sql(
    db,
    `WITH RECURSIVE n(i) AS (SELECT ${from} UNION ALL SELECT i + 1 FROM n WHERE i < ${to})
     INSERT INTO notes SELECT i, 'note ' || i FROM n;`,
  );
  const run = await tidewire(["sync", db, "--remote", url, "--token", ADMIN, "--once", "--json"]);
  expect(run.code, run.stderr).toBe(0);
  const status = await tidewire(["status", db, "--json"]);
  return JSON.parse(status.stdout).nodeId as string;
}

async function newPage(): Promise<Page> {
  const page = await browser!.newPage();
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  page.on("console", (m) => m.type() === "error" && !/40[13]/.test(m.text()) && errors.push(m.text()));
  Object.assign(page, { errors });
  return page;
}

/** The text of each body row of a table, cells joined by " | ". */
function tableRows(page: Page, id: string): Promise<string[]> {
  return page.$$eval(`#${id} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent).join(" | ")),
  );
}

describe.skipIf(!hasChromium)("the dashboard, in Chromium", () => {
  it("shows the hub's node, buckets and a client's pushes, follows new syncs, and renders hostile names as text", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const client = join(dir, "client.db");
    const clientNode = await writeAndSync(client, hub.url, 1, 3);

    const page = await newPage();
    await page.goto(`${hub.url}/dashboard#token=${ADMIN}`);
    await page.waitForSelector("#main:not([hidden])", { timeout: 15_000 });
    expect(await page.textContent("#node")).toBe(hub.nodeId);
    // The token left the address bar (it stays in this tab's sessionStorage).
    expect(new URL(page.url()).hash).toBe("");

    const buckets = await tableRows(page, "buckets");
    expect(buckets).toContain("default | notes");
    expect(buckets).toContain(`${HOSTILE_BUCKET} | ${HOSTILE_TABLE}`);
    expect(await page.evaluate("window.pwned")).toBeUndefined();
    expect(await page.$$("img, b")).toHaveLength(0);

    const clientRow = async () => (await tableRows(page, "clients")).find((r) => r.startsWith(clientNode));
    expect(await clientRow()).toMatch(/ \| 3 \| 0 \| default$/);
    // Remote targets: listed by id with the URL as text, never the password.
    const mirrorRow = async () => (await tableRows(page, "remotes")).find((r) => r.startsWith("mirror"));
    // Pushed once by the daemon's RemoteSync job: a success, nothing pending, no error.
    await expect
      .poll(mirrorRow, { timeout: 30_000 })
      .toMatch(/^mirror \| sqlite:.* \| both \| \d+ s ago \| 0 \| $/);
    expect(await mirrorRow()).toContain(HOSTILE_FILE);
    const remoteRows = await tableRows(page, "remotes");
    expect(remoteRows.find((r) => r.startsWith("pg"))).toMatch(
      /^pg \| postgres:\/\/app@127\.0\.0\.1:1\/none \| both \| /,
    );
    expect(await page.content()).not.toContain(PG_SECRET);
    expect(await page.evaluate("window.pwned")).toBeUndefined();
    expect(await page.textContent("#log-detail")).toMatch(/^3 rows, 0 tombstones/);

    // The page refreshes itself: a second sync shows without a reload.
    await writeAndSync(client, hub.url, 4, 10);
    await expect.poll(() => page.textContent("#log-detail"), { timeout: 30_000 }).toMatch(/^10 rows/);
    expect(await clientRow()).toMatch(/ \| 10 \| 0 \| default$/);
    expect(await page.textContent("#state")).toMatch(/^updated /);

    // Hidden, the tab asks nothing of the hub (a poll already on its way may still land); shown
    // again, it looks at once.
    let asked = 0;
    page.on("request", (r) => {
      if (r.url().endsWith("/v1/status")) asked++;
    });
    const visibility = (hidden: boolean) =>
      page.evaluate(`Object.defineProperty(document, "hidden", { configurable: true, get: () => ${hidden} });
        document.dispatchEvent(new Event("visibilitychange"));`);
    await visibility(true);
    // The poll timer armed before hiding (2 s) may still fire, late on a loaded machine.
    await sleep(6_000);
    asked = 0;
    await sleep(5_000);
    expect(asked).toBe(0);
    await visibility(false);
    await expect.poll(() => asked, { timeout: 5_000 }).toBeGreaterThan(0);

    await page.screenshot({
      path: process.env.TW_DASHBOARD_SHOT ?? join(dir, "dashboard.png"),
      fullPage: true,
    });
    expect((page as Page & { errors: string[] }).errors).toEqual([]);
    await page.close();
  });

  it("asks for a token, refuses a wrong one and one limited to some buckets, then shows the status for a full one", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const page = await newPage();
    await page.goto(`${hub.url}/dashboard`);
    await page.waitForSelector("#login:not([hidden])");
    expect(await page.textContent("#state")).toBe("a token is needed");
    expect(await page.isHidden("#main")).toBe(true);

    await page.fill("#token", "not-a-token-of-this-hub");
    await page.click("button[type=submit]");
    await expect.poll(() => page.textContent("#state")).toBe("the hub refused this token");
    expect(await page.isHidden("#main")).toBe(true);

    await page.fill("#token", LIMITED);
    await page.click("button[type=submit]");
    await expect.poll(() => page.textContent("#state")).toMatch(/needs a token for every bucket/);
    expect(await page.isHidden("#main")).toBe(true);
    expect(await page.textContent("#node")).toBe("");

    await page.fill("#token", ADMIN);
    await page.click("button[type=submit]");
    await page.waitForSelector("#main:not([hidden])");
    expect(await page.textContent("#node")).toBe(hub.nodeId);
    expect(await page.isHidden("#login")).toBe(true);
    await page.close();
  });
});

describe("GET /v1/status and the dashboard's page over HTTP", () => {
  it("answers 401 without a token, 403 for a bucket-limited one, the status for a full one; serves the page under a strict CSP", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const clientNode = await writeAndSync(join(dir, "client.db"), hub.url, 1, 5);
    const status = (token?: string) =>
      fetch(`${hub.url}/v1/status`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

    const none = await status();
    expect(none.status).toBe(401);
    const limited = await status(LIMITED);
    expect(limited.status).toBe(403);
    expect(((await limited.json()) as { error: unknown }).error).toMatchObject({
      code: "ERR_FORBIDDEN_STATUS",
    });

    const full = await status(ADMIN);
    expect(full.status).toBe(200);
    const body = (await full.json()) as {
      hub: unknown;
      buckets: unknown;
      log: unknown;
      clients: Array<{ nodeId: string; lastAction: string }>;
    };
    expect(body.hub).toMatchObject({
      nodeId: hub.nodeId,
      relay: true,
      protocolVersion: 1,
      liveSubscribers: 0,
    });
    expect(body.buckets).toEqual({ default: ["notes"], [HOSTILE_BUCKET]: [HOSTILE_TABLE] });
    expect(body.log).toMatchObject({ rows: 5, tombstones: 0 });
    const client = body.clients.find((c) => c.nodeId === clientNode);
    expect(client).toMatchObject({ pushed: 5, pulled: 0, buckets: ["default"] });
    expect(["push", "pull"]).toContain(client!.lastAction);
    // Counted at most every 2 s (in a worker thread): a second look at once gets the same read.
    const again = (await (await status(ADMIN)).json()) as typeof body;
    expect((again.hub as { statusAt: string }).statusAt).toBe((body.hub as { statusAt: string }).statusAt);

    const page = await fetch(`${hub.url}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('src="/dashboard/app.js"');
    expect(html).not.toContain(hub.nodeId); // the page holds no data
    for (const asset of ["/dashboard/app.js", "/dashboard/style.css"]) {
      expect((await fetch(`${hub.url}${asset}`)).status).toBe(200);
    }
    const root = await fetch(`${hub.url}/`, { redirect: "manual" });
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe("/dashboard");
  });
});

describe("Clients", () => {
  it("keeps the last `max` node ids, the latest first, with pushed and pulled counts and the buckets named", () => {
    const clients = new Clients(2);
    clients.record("a", "handshake", ["x"]);
    clients.record("a", "push", ["y"], 4);
    clients.record("b", "pull", ["x"], 7);
    clients.record("a", "pull", ["x"], 1);
    expect(clients.list().map((c) => [c.nodeId, c.lastAction, c.pushed, c.pulled, c.buckets])).toEqual([
      ["a", "pull", 4, 1, ["x", "y"]],
      ["b", "pull", 0, 7, ["x"]],
    ]);
    clients.record("c", "handshake", ["z"]);
    // b was heard from longest ago.
    expect(clients.list().map((c) => c.nodeId)).toEqual(["c", "a"]);
    // A copy: changing it changes nothing kept.
    clients.list()[0]!.buckets.push("w");
    expect(clients.list()[0]!.buckets).toEqual(["z"]);
  });
});
