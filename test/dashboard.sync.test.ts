/**
 * The dashboard's Sync view in a real browser (Debian's chromium through
 * playwright-core) against a real `tidewire serve` whose conflicts a real
 * apply made (conflict-seed.ts): browsing and filtering conflicts and
 * quarantined changes, inspecting one with both versions, a restore refused
 * by the schema and then done with --replace, changing the SQLite file (read
 * back by a connection of the test's own), a restore refused for a read-only
 * token, a client shown behind after the hub took writes it has not pulled,
 * and the remote targets the daemon has registered (synced, paused, failing).
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { Peers } from "../src/peers/peers.js";
import { Remotes } from "../src/remote/registry.js";
import { readLag } from "../src/replica/lag.js";
import { Replica } from "../src/replica/replica.js";
import { openStore } from "../src/store.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { JOBS_ADMIN, JOBS_READER, serveJobs } from "./browser.js";
import { hasChromium, pageErrors, useChromium } from "./browser-hooks.js";
import { FREED, rowsIn, seedConflicts } from "./conflict-seed.js";
import { freePort, sql, useTempDirs } from "./helpers.js";

/** `text` as a regular expression that matches exactly it. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const tempDir = useTempDirs("tidewire-sync-console-");
const children: ChildProcess[] = [];
const cleanup: Array<() => unknown> = [];
const browser = useChromium("dist/hub/conflicts-routes.js");
const WAIT = { timeout: 30_000 };

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

async function hub() {
  const dir = tempDir();
  const db = join(dir, "hub.db");
  const seeded = seedConflicts(db, dir);
  const served = await serveJobs(db, dir);
  children.push(served.child);
  return { db, dir, url: served.url, seeded, inFile: rowsIn(db) };
}

async function openSync(url: string, token: string): Promise<Page> {
  const page = await browser().newPage();
  Object.assign(page, { errors: pageErrors(page) });
  await page.goto(`${url}/dashboard#token=${token}`);
  await page.waitForSelector("#main:not([hidden])", WAIT);
  await page.click("#show-sync");
  await page.waitForSelector("#sync-view:not([hidden])", WAIT);
  await expect.poll(() => page.textContent("#conflicts-status"), WAIT).toMatch(/^\d+ matching/);
  expect(await page.isHidden("#overview")).toBe(true);
  expect(await page.isHidden("#jobs-view")).toBe(true);
  return page;
}

const errorsOf = (page: Page) => (page as Page & { errors: string[] }).errors;

const rows = (page: Page, table: string) =>
  page.$$eval(`#${table} tbody tr`, (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent).join(" | ")),
  );

async function filter(page: Page, kind: string, table: string) {
  await page.selectOption("#c-kind", kind);
  await page.selectOption("#c-table", table);
  // The list's answer, then the status line it writes.
  const answered = page.waitForResponse((r) => r.url().includes("/v1/conflicts?"), WAIT);
  await page.click("#c-apply");
  await answered;
  await expect.poll(() => page.textContent("#conflicts-status"), WAIT).toMatch(/^\d+ matching/);
}

async function inspect(page: Page, id: number) {
  await page.click(`#conflicts-table button:text-is("${id}")`);
  await expect.poll(() => page.textContent("#cd-id"), WAIT).toBe(String(id));
  await page.waitForSelector("#conflict-detail:not([hidden])", WAIT);
}

describe.skipIf(!hasChromium)("the Sync view, in Chromium", () => {
  it("browses and filters conflicts, inspects one, and restores it with --replace, changing the file", async () => {
    const { url, seeded, inFile } = await hub();
    const page = await openSync(url, JOBS_ADMIN);
    expect(await page.textContent("#conflicts-status")).toBe("7 matching; in all 5 conflicts, 2 quarantined");
    expect(await rows(page, "conflicts-table")).toHaveLength(7);
    // Rows and log entries per table and bucket, from the status.
    await expect
      .poll(() => rows(page, "sync-tables"), WAIT)
      .toEqual([
        expect.stringMatching(/^album \| default \| 1 \| 2 \| 1$/),
        expect.stringMatching(/^artist \| default \| 4 \| \d+ \| \d+$/),
      ]);
    expect(await rows(page, "sync-buckets")).toEqual([
      expect.stringMatching(/^default \| 2 \| 5 \| \d+ \| \d+$/),
    ]);

    await filter(page, "quarantined", "");
    expect(await page.textContent("#conflicts-status")).toMatch(/^2 matching/);
    expect((await rows(page, "conflicts-table")).every((r) => / \| failed \| /.test(r))).toBe(true);
    await filter(page, "conflict", "artist");
    expect(await page.textContent("#conflicts-status")).toMatch(/^4 matching/);
    expect(await rows(page, "conflicts-table")).toHaveLength(4);

    const nina = seeded.byName.Nina!;
    await inspect(page, nina);
    expect(await page.textContent("#cd-what")).toBe("Conflict");
    expect(await page.textContent("#cd-reason")).toMatch(/artist \(name\) = \(Nina\)/);
    expect(JSON.parse((await page.textContent("#cd-lost"))!)).toEqual({
      key: ["h1"],
      name: "Nina",
      country: "FR",
    });
    expect(JSON.parse((await page.textContent("#cd-kept"))!)).toEqual({
      key: ["s1"],
      name: "Nina",
      country: "US",
    });
    expect(await page.isHidden("#cd-retry")).toBe(true);

    await page.click("#cd-restore");
    await expect
      .poll(() => page.textContent("#sync-msg"), WAIT)
      .toMatch(/^restore refused: .*UNIQUE constraint failed: artist\.name.*--replace; nothing was written/);
    expect(inFile("SELECT id, country FROM artist WHERE name = 'Nina'")).toEqual(["s1|US"]);

    await page.check("#cd-replace");
    await page.click("#cd-restore");
    await expect
      .poll(() => page.textContent("#sync-msg"), WAIT)
      .toBe(`restore: conflict ${nina} is restored; the row syncs as a local write`);
    expect(await page.textContent("#cd-state")).toMatch(/^restored /);
    expect(inFile("SELECT id, country FROM artist WHERE name = 'Nina'")).toEqual(["h1|FR"]);
    // The row it displaced is listed as a conflict of its own.
    await expect.poll(() => page.textContent("#conflicts-status"), WAIT).toMatch(/^5 matching/);
    expect(errorsOf(page)).toEqual([]);
    await page.close();
  });

  it("refuses a restore for a read-only token with the hub's reason, changing nothing", async () => {
    const { url, seeded, inFile } = await hub();
    const page = await openSync(url, JOBS_READER);
    await inspect(page, seeded.byName[FREED]!);
    await page.click("#cd-restore");
    await expect
      .poll(() => page.textContent("#sync-msg"), WAIT)
      .toMatch(/^restore refused: .*needs a token with admin access/);
    expect(await page.getAttribute("#sync-msg", "class")).toMatch(/error/);
    expect(inFile("SELECT count(*) FROM artist WHERE name = ?", FREED)).toEqual(["0"]);
    await inspect(page, seeded.refused);
    expect(await page.textContent("#cd-what")).toBe("Quarantined change");
    expect(await page.textContent("#cd-change")).toContain('"country": null');
    await page.click("#cd-retry");
    await expect.poll(() => page.textContent("#sync-msg"), WAIT).toMatch(/^retry refused: .*admin access/);
    expect(inFile("SELECT count(*) FROM tw_conflicts WHERE kind = 'failed'")).toEqual(["2"]);
    expect(errorsOf(page)).toEqual([]);
    await page.close();
  });

  it("shows a client behind once the hub took writes it has not pulled, and caught up after it syncs", async () => {
    const { db, dir, url } = await hub();
    const client = Replica.open(join(dir, "client.db"), { nodeId: "laptop-42" });
    client.store.db.exec(
      "CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT)",
    );
    client.store.db.exec("CREATE TABLE album (id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE, artist TEXT)");
    client.track("artist");
    client.track("album");
    const transport = new HttpTransport(url, { token: JOBS_ADMIN });
    const sync = new SyncManager(client, transport, { intervalMs: 60_000 });
    cleanup.push(() => client.close());
    cleanup.push(() => transport.close());
    cleanup.push(() => sync.stop());
    await sync.syncOnce();

    const page = await openSync(url, JOBS_ADMIN);
    const laptop = async () => (await rows(page, "sync-clients")).find((r) => r.startsWith("laptop-42 |"));
    await expect.poll(laptop, WAIT).toMatch(/^laptop-42 \| default \| 0 \| none \| 0 \| \d+ s ago \| –$/);

    // Another program writes the hub's file: the hub ingests it, the laptop has not pulled it.
    sql(
      db,
      "INSERT INTO artist VALUES ('h20', 'Rae', 'SE'); INSERT INTO artist VALUES ('h21', 'Sol', 'SE');",
    );
    await expect.poll(laptop, WAIT).toMatch(/^laptop-42 \| default \| 2 \| \d+ (s|min) \| [1-9]\d* \| /);
    expect(
      await page.$eval("#sync-clients tbody tr:first-child td:nth-child(3)", (td) => td.className),
    ).toMatch(/behind/);

    await sync.syncOnce();
    await expect.poll(laptop, WAIT).toMatch(/^laptop-42 \| default \| 0 \| none \| 0 \| /);
    expect(errorsOf(page)).toEqual([]);
    await page.close();
  });

  it("shows a peer's push cursor with what it has yet to send, and the peer's last error", async () => {
    const dir = tempDir();
    const db = join(dir, "hub.db");
    seedConflicts(db, dir);
    // This hub pushes to another, which is down (the daemon's pings find it so too): its registry and cursor.
    const store = openStore(db);
    const peers = new Peers(store);
    peers.upsert({ id: "hub-b", address: "http://127.0.0.1:1" });
    peers.noteNodeId("hub-b", "hubb0000beef0001");
    peers.markDown("hub-b", "connect ECONNREFUSED 127.0.0.1:1");
    const cursors = new CursorStore(store, { flushIntervalMs: 0 });
    cursors.set({ peer: "hubb0000beef0001", bucket: "default", direction: "push" }, "3");
    cursors.flushDirty();
    const behind = new Set(
      readLag(store.db, [{ key: "b", cursor: "3", buckets: ["default"], node: "hubb0000beef0001" }]).values(),
    );
    store.close();
    const served = await serveJobs(db, dir);
    children.push(served.child);
    const page = await openSync(served.url, JOBS_READER);
    const [lag] = [...behind];
    expect(lag!.changes).toBeGreaterThan(0);
    await expect
      .poll(() => rows(page, "sync-peers"), WAIT)
      .toEqual([
        expect.stringMatching(
          new RegExp(
            `^hub-b \\(hubb0000beef0001\\) \\| default \\| push \\| 3 \\| ${lag!.changes} \\| \\d+ (s|min) \\| \\d+ (s|min) ago \\| .*(ECONNREFUSED|refused).*$`,
          ),
        ),
      ]);
    expect(errorsOf(page)).toEqual([]);
    await page.close();
  });

  it("draws the daemon's registered remote targets: synced, paused and failing, markup as text", async () => {
    const dir = tempDir();
    const db = join(dir, "hub.db");
    seedConflicts(db, dir);
    const store = openStore(db);
    const remotes = new Remotes(store);
    remotes.add({ url: `sqlite:${join(dir, "mirror.db")}`, id: "mirror", intervalMs: 60_000 });
    const edge = `sqlite:${join(dir, "<b>edge</b>.db")}`;
    remotes.add({ url: edge, id: "edge", direction: "push", intervalMs: 30_000, tables: ["artist"] });
    remotes.setPaused("edge", true);
    const port = await freePort();
    remotes.add({
      url: `postgres://postgres:pw-s3cret@127.0.0.1:${port}/none`,
      id: "down",
      intervalMs: 60_000,
    });
    store.close();
    const served = await serveJobs(db, dir);
    children.push(served.child);
    const page = await browser().newPage();
    await page.goto(`${served.url}/dashboard#token=${JOBS_ADMIN}`);
    await page.waitForSelector("#main:not([hidden])", WAIT);
    await page.click("#show-sync");
    const mirror = new RegExp(
      `^sqlite:${literal(join(dir, "mirror.db"))} \\| sqlite \\| both \\| 60 s \\| all \\| running \\| 20.* \\| 20.* \\| \\d+ s ago \\| 0 \\| –$`,
    );
    const down = new RegExp(
      `^postgres://postgres@127\\.0\\.0\\.1:${port}/none \\| postgres \\| both \\| 60 s \\| all \\| running \\| – \\| – \\| never \\| 0 \\| cannot reach .*\\(\\d+ s ago\\)$`,
    );
    await expect
      .poll(async () => (await rows(page, "sync-remotes")).sort(), { timeout: 40_000 })
      .toEqual([
        expect.stringMatching(down),
        `${edge} | sqlite | push | 30 s | artist | paused | – | – | never | 0 | –`,
        expect.stringMatching(mirror),
      ]);
    expect(await page.$$("#sync-remotes b")).toHaveLength(0);
    expect(await page.textContent("#sync-remotes")).not.toMatch(/s3cret/);
    await page.close();
  }, 90_000);
});
