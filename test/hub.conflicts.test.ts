/**
 * The console's sync endpoints against a real daemon on 127.0.0.1 over a
 * hub database whose conflicts were made by a real apply (conflict-seed.ts):
 * GET /v1/conflicts lists, filters, pages and inspects for a token of every
 * bucket; restore and retry need an admin token from no or the same origin,
 * run the replica's own restore (--replace included), change the SQLite file
 * and are counted; every refusal changes nothing. GET /v1/status carries a
 * client's lag counted from its last pull, its last error, and per-table
 * counts; a replica's own status carries its push cursor's lag.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { registry } from "../src/metrics.js";
import { Replica } from "../src/replica/replica.js";
import { readStatus } from "../src/status.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { CLI } from "./browser.js";
import { FREED, rowsIn, seedConflicts } from "./conflict-seed.js";
import { consoleDaemon } from "./console-hub.js";
import { hubCaller, runNode, tokensFile, useTempDirs } from "./helpers.js";

const tempDir = useTempDirs("tidewire-hub-conflicts-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const ADMIN = "admin-token-000000001";
const READER = "every-reader-00000002";
const NARROW = "bucket-a-reader-00003";
const WAIT = { timeout: 15_000 };

async function hub() {
  const dir = tempDir();
  const dbPath = join(dir, "hub.db");
  const seeded = seedConflicts(dbPath, dir);
  const d = await consoleDaemon(
    dbPath,
    tokensFile(dir, [
      { token: ADMIN, buckets: "*", access: "admin", name: "admin" },
      { token: READER, buckets: "*", access: "read-write", name: "reader" },
      { token: NARROW, buckets: ["a"], access: "read", name: "narrow" },
    ]),
    cleanup,
  );
  const call = hubCaller(d.url);
  return { d, dir, seeded, call, inFile: rowsIn(dbPath) };
}

async function counted(action: string, target: string, result: string): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === "tidewire_console_actions_total");
  const values = (metric?.values ?? []) as Array<{ labels: Record<string, string>; value: number }>;
  return (
    values.find((v) => v.labels.action === action && v.labels.target === target && v.labels.result === result)
      ?.value ?? 0
  );
}

describe("console conflict endpoints", () => {
  it("lists, filters by kind and table, pages and inspects, for a token of every bucket only", async () => {
    const { seeded, call } = await hub();
    const all = await call("GET", "/v1/conflicts", READER);
    expect(all.status).toBe(200);
    expect(all.body.total).toBe(7);
    expect(all.body.counts).toEqual({ unique: 5, insert: 0, orphan: 0, held: 0, failed: 2 });
    expect(all.body.tables).toEqual([
      { table: "album", count: 1 },
      { table: "artist", count: 5 },
      { table: "later", count: 1 },
    ]);
    expect(all.body.items.map((i: { id: number }) => i.id)).toEqual([7, 6, 5, 4, 3, 2, 1]);

    const artists = await call("GET", "/v1/conflicts?kind=conflict&table=artist&limit=3&offset=1", READER);
    expect(artists.body.total).toBe(4);
    expect(artists.body.items.map((i: { id: number }) => i.id)).toEqual([
      seeded.byName.Pia,
      seeded.byName.Omar,
      seeded.byName.Nina,
    ]);
    const quarantined = await call("GET", "/v1/conflicts?kind=quarantined&table=later", READER);
    expect(quarantined.body.items).toEqual([
      expect.objectContaining({ id: seeded.later, kind: "failed", table: "later", from: "studio" }),
    ]);
    const refused = await call("GET", `/v1/conflicts/${seeded.refused}`, READER);
    expect(refused.body).toMatchObject({
      quarantined: true,
      item: {
        reason: "NOT NULL constraint failed: artist.country",
        change: { table: "artist", pk: ["s9"], op: "insert", columns: { name: "Wen", country: null } },
      },
    });

    const one = await call("GET", `/v1/conflicts/${seeded.byName.Nina}`, READER);
    expect(one.body).toMatchObject({
      quarantined: false,
      item: {
        kind: "unique",
        table: "artist",
        reason: expect.stringMatching(/artist \(name\) = \(Nina\)/),
        lost: { pk: ["h1"], columns: { name: "Nina", country: "FR" } },
        kept: { pk: ["s1"], columns: { name: "Nina", country: "US" } },
        restoredAt: null,
      },
    });

    for (const [path, code] of [
      ["/v1/conflicts?kind=bogus", "ERR_INVALID_ARGUMENT"],
      ["/v1/conflicts?limit=0", "ERR_INVALID_ARGUMENT"],
      ["/v1/conflicts?limit=201", "ERR_INVALID_ARGUMENT"],
      ["/v1/conflicts?offset=-1", "ERR_INVALID_ARGUMENT"],
      ["/v1/conflicts/x", "ERR_INVALID_ARGUMENT"],
      ["/v1/conflicts/0", "ERR_INVALID_ARGUMENT"],
    ] as const)
      expect((await call("GET", path, READER)).body.error.code, path).toBe(code);
    expect(await call("GET", "/v1/conflicts/999", READER)).toMatchObject({
      status: 404,
      body: { error: { code: "ERR_NO_CONFLICT" } },
    });
    expect(await call("GET", "/v1/conflicts", NARROW)).toMatchObject({
      status: 403,
      body: { error: { code: "ERR_FORBIDDEN_CONFLICTS" } },
    });
    expect((await call("GET", "/v1/conflicts", "no-such-token-000000")).status).toBe(401);
  });

  it("restores with an admin token only, refusing a reader, another origin and a unique clash, and --replace swaps", async () => {
    const { d, seeded, call, inFile } = await hub();
    const nina = seeded.byName.Nina!;
    const path = `/v1/conflicts/${nina}/restore`;
    const rows = () => inFile("SELECT id, name, country FROM artist WHERE name LIKE 'Nina%' ORDER BY id");
    const before = rows();
    expect(before).toEqual(["s1|Nina|US"]);
    const refusedBefore = await counted("restore", "conflict", "refused");

    expect(await call("POST", path, READER, {})).toMatchObject({
      status: 403,
      body: { error: { code: "ERR_ADMIN_REQUIRED", message: expect.stringMatching(/admin access/) } },
    });
    for (const origin of ["https://evil.example", "null", `http://127.0.0.1:${d.port + 1}`])
      expect(await call("POST", path, ADMIN, {}, { origin }), origin).toMatchObject({
        status: 403,
        body: { error: { code: "ERR_CROSS_ORIGIN" } },
      });
    expect((await call("POST", path, ADMIN, { replace: "yes" })).body.error.code).toBe(
      "ERR_INVALID_ARGUMENT",
    );
    expect((await call("POST", path, ADMIN, [])).body.error.code).toBe("ERR_MALFORMED");
    expect((await call("POST", `/v1/conflicts/${nina}/explode`, ADMIN, {})).status).toBe(404);
    expect((await call("POST", "/v1/conflicts/999/restore", ADMIN, {})).status).toBe(404);
    expect((await call("POST", `/v1/conflicts/${nina}/retry`, ADMIN, {})).body.error.code).toBe(
      "ERR_CONFLICT_KIND",
    );
    const clash = await call("POST", path, ADMIN, {}, { origin: d.url });
    expect(clash).toMatchObject({
      status: 409,
      body: {
        error: {
          code: "ERR_RESTORE_REFUSED",
          message: expect.stringMatching(
            /UNIQUE constraint failed: artist\.name.*--replace; nothing was written/,
          ),
        },
      },
    });
    expect(rows()).toEqual(before);
    // Every refusal of a known action is counted: the token, the origins, the bodies, the id, the clash.
    expect(await counted("restore", "conflict", "refused")).toBe(refusedBefore + 8);

    // What the restore wrote is told to live subscribers at once.
    const announced = new Promise<string[]>((resolve) => d.hub.once("changes", resolve));
    const swapped = await call("POST", path, ADMIN, { replace: true });
    expect(await announced).toEqual(["default"]);
    expect(swapped).toMatchObject({
      status: 200,
      body: {
        ok: true,
        action: "restore",
        id: nina,
        restored: true,
        item: { restoredAt: expect.any(Number) },
      },
    });
    expect(rows()).toEqual(["h1|Nina|FR"]);
    // The row it displaced is a conflict of its own, restorable in turn.
    const listed = await call("GET", "/v1/conflicts?table=artist", READER);
    expect(listed.body.items[0]).toMatchObject({
      lost: { pk: ["s1"] },
      reason: /deleted to restore conflict/,
    });

    // The winner of "Omar" was renamed since: its rival restores as is.
    const freed = await call("POST", `/v1/conflicts/${seeded.byName[FREED]}/restore`, ADMIN, {});
    expect(freed.body).toMatchObject({ ok: true, restored: true });
    expect(inFile("SELECT id FROM artist WHERE name = ?", FREED)).toEqual(["h2"]);
    // A local write: in the hub's log, so clients pull it.
    expect(inFile("SELECT origin FROM tw_log WHERE pk = 'h2' AND col = '' AND val = 1").length).toBe(1);
  });

  it("retries quarantined changes: one the schema still refuses is kept again, one a relay can keep applies", async () => {
    const { seeded, call, inFile } = await hub();
    expect((await call("POST", `/v1/conflicts/${seeded.refused}/restore`, ADMIN, {})).body.error.code).toBe(
      "ERR_CONFLICT_KIND",
    );
    expect((await call("POST", `/v1/conflicts/${seeded.refused}/retry`, READER, {})).status).toBe(403);
    expect((await call("POST", "/v1/conflicts/retry", READER, {})).status).toBe(403);
    const still = await call("POST", `/v1/conflicts/${seeded.refused}/retry`, ADMIN, {});
    expect(still).toMatchObject({
      status: 409,
      body: {
        error: {
          code: "ERR_STILL_QUARANTINED",
          message: expect.stringMatching(/NOT NULL.*kept in quarantine again/),
        },
      },
    });
    expect(inFile("SELECT tbl FROM tw_conflicts WHERE kind = 'failed' ORDER BY tbl")).toEqual([
      "artist",
      "later",
    ]);
    expect(inFile("SELECT count(*) FROM artist WHERE id = 's9'")).toEqual(["0"]);

    // `tidewire serve` runs the hub as a relay: a change for a table it does not have is kept and relayed.
    const one = await call("POST", `/v1/conflicts/${seeded.later}/retry`, ADMIN, {});
    expect(one.body).toEqual({ ok: true, action: "retry", id: seeded.later, restored: true });
    expect(inFile("SELECT tbl FROM tw_conflicts WHERE kind = 'failed'")).toEqual(["artist"]);
    expect(inFile("SELECT relayed FROM tw_tracked WHERE name = 'later'")).toEqual(["1"]);

    const all = await call("POST", "/v1/conflicts/retry", ADMIN, {});
    expect(all.body).toEqual({ ok: true, action: "retry", applied: 0, left: 1 });
    expect(await counted("retry", "all", "unchanged")).toBeGreaterThanOrEqual(1);
  });
});

describe("sync state in the status", () => {
  it("shows a client's lag from its last pull, its last error, and rows and log entries per table and bucket", async () => {
    const { d, dir, call } = await hub();
    const client = Replica.open(join(dir, "client.db"), { nodeId: "client-7" });
    client.store.db.exec(
      "CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT)",
    );
    client.store.db.exec("CREATE TABLE album (id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE, artist TEXT)");
    client.track("artist");
    client.track("album");
    const transport = new HttpTransport(d.url, { token: READER });
    const sync = new SyncManager(client, transport, { intervalMs: 60_000 });
    cleanup.push(() => client.close());
    cleanup.push(() => transport.close());
    cleanup.push(() => sync.stop());
    await sync.syncOnce();

    const status = async () => (await call("GET", "/v1/status", READER)).body;
    const lagOf = async () =>
      (await status()).clients.find((c: { nodeId: string }) => c.nodeId === "client-7")?.lag;
    await expect.poll(lagOf, WAIT).toMatchObject({ changes: 0, oldestAt: null });

    // Written on the hub after the client's last pull: the client is behind by them.
    const written = Date.now();
    d.hub.replica.store.db.exec("INSERT INTO artist VALUES ('h9', 'Rae', 'SE'), ('h10', 'Sol', 'SE')");
    d.hub.replica.ingest();
    await expect.poll(lagOf, WAIT).toMatchObject({ changes: 2, seqBehind: expect.any(Number) });
    const lag = await lagOf();
    expect(lag.oldestAt).toBeGreaterThanOrEqual(written - 1000);
    expect(lag.cursor + lag.seqBehind).toBe(lag.head);

    await sync.syncOnce();
    await expect.poll(lagOf, WAIT).toMatchObject({ changes: 0 });

    // A refused request is kept as the client's last error.
    const narrow = new HttpTransport(d.url, { token: NARROW });
    cleanup.push(() => narrow.close());
    const refused = new SyncManager(client, narrow, { intervalMs: 60_000 });
    await expect(refused.syncOnce()).rejects.toThrow(/may not read bucket "default"/);
    const seen = (await status()).clients.find((c: { nodeId: string }) => c.nodeId === "client-7");
    expect(seen).toMatchObject({
      lastAction: "handshake",
      lastError: expect.stringMatching(/may not read bucket "default"/),
      lastErrorAt: expect.any(Number),
      lastSuccessAt: expect.any(Number),
    });

    const s = await status();
    expect(s.counts.tables).toEqual([
      expect.objectContaining({ table: "album", bucket: "default", rows: 1, logEntries: 2 }),
      expect.objectContaining({ table: "artist", bucket: "default", rows: 6 }),
    ]);
    expect(s.counts.buckets).toEqual([expect.objectContaining({ bucket: "default", tables: 2, rows: 7 })]);
    expect(s.readerLag).toBeUndefined();
  });

  it("gives a replica's push cursor its lag: what it wrote since its last push", async () => {
    const { d, dir } = await hub();
    const client = Replica.open(join(dir, "pusher.db"), { nodeId: "pusher" });
    client.store.db.exec(
      "CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT)",
    );
    client.track("artist");
    const transport = new HttpTransport(d.url, { token: READER });
    const sync = new SyncManager(client, transport, { intervalMs: 60_000, direction: "push" });
    cleanup.push(() => client.close());
    cleanup.push(() => transport.close());
    cleanup.push(() => sync.stop());
    client.store.db.exec("INSERT INTO artist VALUES ('p1', 'Tova', 'NO')");
    await sync.syncOnce();
    const pushLag = () => readStatus(client.store).cursors.find((c) => c.direction === "push")?.lag;
    expect(pushLag()).toMatchObject({ changes: 0, oldestAt: null });
    client.store.db.exec("INSERT INTO artist VALUES ('p2', 'Uma', 'NO'), ('p3', 'Vic', 'NO')");
    client.ingest();
    expect(pushLag()).toMatchObject({ changes: 2, seqBehind: 2, oldestAt: expect.any(Number) });
    const text = await runNode([CLI, "status", join(dir, "pusher.db")]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/VALUE\s+BEHIND\s+UPDATED\n\s+\S+\s+default\s+push\s+1\s+2 \(oldest 20\d\d-/);
    expect(text.stdout).toMatch(
      /^rows\n\s+TABLE\s+BUCKET\s+ROWS\s+LOG ENTRIES\s+TOMBSTONES\n\s+artist\s+default\s+3\s+3\s+0$/m,
    );
  });
});
