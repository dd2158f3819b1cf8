/**
 * Pulling from remote targets (RemoteSync.sync/pull, src/remote/pull.ts):
 * edits made directly on each kind of target — the sqlite3 shell on a
 * SQLite file, @libsql/client on a libSQL file, psql-like SQL through `pg`,
 * `wrangler d1 execute --local` — arrive locally, merged per column with
 * the local edits of the same cycle, and both sides end equal; Tidewire's
 * own writes (full and incremental pushes) are never captured as edits;
 * a batch read again after a crash before the cursor moved applies nothing.
 */
import { join } from "node:path";
import { createClient } from "@libsql/client";
import type Database from "better-sqlite3";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { registry } from "../src/metrics.js";
import { CHANGES_TABLE, remoteOrigin } from "../src/remote/capture.js";
import { findWrangler } from "../src/remote/d1-target.js";
import { openTarget } from "../src/remote/open-target.js";
import { RemoteSync } from "../src/remote/remote-sync.js";
import type { RemoteTarget } from "../src/remote/target.js";
import { invalidArgument, sql, useTempDirs } from "./helpers.js";
import {
  DATABASE_URL,
  type Dump,
  dumpLibsql,
  dumpPostgres,
  dumpQuotedSqlite,
  dumpSqlite,
  dumpSqliteFile,
  QUOTED,
  quotedDump,
  runOps,
  sourceReplica,
  usePostgres,
  wranglerProject,
  wranglerQuery,
} from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-pull-");
const pgs = usePostgres("tw_pull_");

/** A target as the test reaches it from outside Tidewire: its URL, a client that edits it, its rows. */
interface Remote {
  url: string;
  d1?: { local: boolean; config: string };
  /** Entries per batch read (default 3: several batches, and sequences past 9, 99). */
  batchSize?: number;
  exec(statements: string): Promise<void>;
  dump(): Promise<Dump>;
  /** Entries in the target's change table (capture's backlog). */
  backlog(): Promise<number>;
  /** The same rows in the form the local side is dumped in. */
  local(db: Database.Database): Dump;
}

const REMOTE_EDITS = `UPDATE items SET name = 'remote pen' WHERE id = 1;
  INSERT INTO items (id, name, qty, price, data) VALUES (3, 'remote', 7, 0.5, NULL);
  DELETE FROM items WHERE id = 2;
  INSERT INTO tags (item, tag, note) VALUES (3, 'b', 'from remote');
  UPDATE tags SET tag = 'z' WHERE item = 1 AND tag = 'a';
  INSERT INTO items (id, name) VALUES ${Array.from({ length: 20 }, (_, i) => `(${100 + i}, 'bulk ${i}')`).join(", ")}`;

/** Push, edit both sides, one cycle: both sides equal, the edits merged per column, nothing echoed. */
async function converges(dir: string, remote: Remote): Promise<void> {
  const replica = sourceReplica(dir);
  const db = replica.store.db;
  runOps(db, [
    { kind: "put", id: 1, name: "pen", qty: 3n, price: 1.25, data: Buffer.from([0, 1]) },
    { kind: "put", id: 2, name: "cup", qty: 1n, price: null, data: null },
    { kind: "tag", item: 1, tag: "a", note: "first" },
  ]);
  const sync = new RemoteSync(replica, {
    target: remote.url,
    d1: remote.d1,
    batchSize: remote.batchSize ?? 3,
  });
  try {
    expect(sync.direction).toBe("both");
    const first = await sync.sync();
    expect(first.push?.mode).toBe("full");
    expect(await remote.backlog()).toBe(0); // the full push was not captured
    await remote.exec(REMOTE_EDITS);
    // An update, an insert, a delete, an insert, a key change (2), 20 inserts.
    expect(await remote.backlog()).toBe(26);
    // Meanwhile, locally: another column of the row the remote renamed, and a new row.
    db.prepare("UPDATE items SET qty = 99 WHERE id = 1").run();
    runOps(db, [{ kind: "put", id: 4, name: "local", qty: null, price: 2.5, data: null }]);
    const second = await sync.sync();
    expect(second.pull).toMatchObject({ entries: 26, applied: 26, quarantined: 0, skipped: 0 });
    expect(second.push?.mode).toBe("incremental");
    expect(remote.local(db)).toEqual(await remote.dump());
    const row1 = db.prepare("SELECT name, qty FROM items WHERE id = 1").get();
    expect(row1).toEqual({ name: "remote pen", qty: 99 });
    expect(db.prepare("SELECT count(*) AS n FROM items WHERE id = 2").get()).toEqual({ n: 0 });
    expect(db.prepare("SELECT tag FROM tags WHERE item = 1").all()).toEqual([{ tag: "z" }]);
    // Pulled entries are pruned, and the push of rows 1 and 4 was not captured.
    expect(await remote.backlog()).toBe(0);
    const third = await sync.sync();
    expect(third.pull?.entries).toBe(0);
    expect(third.push?.mutations).toBe(0);
    expect(remote.local(db)).toEqual(await remote.dump());
  } finally {
    await sync.close();
    replica.close();
  }
}

function sqliteRemote(path: string): Remote {
  return {
    url: `sqlite:${path}`,
    exec: async (s) => void sql(path, s),
    dump: async () => dumpSqliteFile(path),
    backlog: async () => Number(sql(path, `SELECT count(*) FROM ${CHANGES_TABLE}`).trim()),
    local: dumpSqlite,
  };
}

describe("pull from a SQLite file", () => {
  it("brings the sqlite3 shell's edits in, merged per column, and converges both sides", async () => {
    const dir = tempDir();
    await converges(dir, sqliteRemote(join(dir, "mirror.db")));
  });

  it("reads a batch again after a crash before the cursor moved, and applies nothing twice", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    // A target whose capture never prunes, so the entries stay to be read again.
    const inner = openTarget(`sqlite:${path}`);
    const keep: RemoteTarget = {
      backend: inner.backend,
      id: inner.id,
      apply: (p, k) => inner.apply(p, k),
      copy: (j, k) => inner.copy(j, k),
      close: () => inner.close(),
      capture: () => {
        const c = inner.capture!();
        return {
          install: (t) => c.install(t),
          read: (a, n) => c.read(a, n),
          rows: (t, cols, keys) => c.rows(t, cols, keys),
          prune: async () => {},
        };
      },
    };
    let sync = new RemoteSync(replica, { target: keep });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'remote' WHERE id = 1; INSERT INTO items (id, qty) VALUES (2, 5)");
      const pulled = async () =>
        (await registry.getSingleMetric("tidewire_remote_pull_changes_total")!.get()).values.find(
          (v) => v.labels.backend === "sqlite",
        )?.value ?? 0;
      const before = await pulled();
      const once = await sync.pull();
      expect(once).toMatchObject({ entries: 2, applied: 2 });
      expect(await pulled()).toBe(before + 2);
      const rows = dumpSqlite(replica.store.db);
      const log = replica.stats();
      // The crash: the apply committed, the cursor never did; then a new process.
      await sync.close();
      const cursors = new CursorStore(replica.store, { flushIntervalMs: 0 });
      cursors.delete({ peer: keep.id, bucket: "*", direction: "pull" });
      sync = new RemoteSync(replica, { target: keep });
      const again = await sync.pull();
      expect(again).toMatchObject({ entries: 2, changes: 2, applied: 0 });
      expect(dumpSqlite(replica.store.db)).toEqual(rows);
      expect(replica.stats().lastSeq).toBe(log.lastSeq);
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("a batch the replica refuses (a clock far ahead) leaves the cursor and the entries for the next pull", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    const sync = new RemoteSync(replica, { target: `sqlite:${path}`, batchSize: 10 });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'now' WHERE id = 1");
      const ahead = Date.now() + 86_400_000;
      sql(
        path,
        `INSERT INTO ${CHANGES_TABLE} (tbl, pk, op, cols, at) VALUES ('items', '["1"]', 'update', '["name"]', ${ahead})`,
      );
      await expect(sync.pull()).rejects.toThrow(/ahead/);
      expect(sync.cursor()).toBeDefined(); // the push cursor; the pull's has not moved:
      expect(Number(sql(path, `SELECT count(*) FROM ${CHANGES_TABLE}`).trim())).toBe(2);
      await expect(sync.pull()).rejects.toThrow(/ahead/);
      sql(path, `DELETE FROM ${CHANGES_TABLE} WHERE at = ${ahead}`);
      expect(await sync.pull()).toMatchObject({ entries: 1, applied: 1 });
      expect(replica.store.db.prepare("SELECT name FROM items").pluck().get()).toBe("now");
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("pulls before a full push (--resync), which is not captured, and captures again after it", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    const sync = new RemoteSync(replica, { target: `sqlite:${path}` });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'edited there' WHERE id = 1");
      const r = await sync.sync({ resync: true });
      expect(r.pull?.applied).toBe(1);
      expect(r.push?.mode).toBe("full");
      expect(dumpSqliteFile(path)).toEqual(dumpSqlite(replica.store.db));
      expect(replica.store.db.prepare("SELECT name FROM items").pluck().get()).toBe("edited there");
      expect(Number(sql(path, `SELECT count(*) FROM ${CHANGES_TABLE}`).trim())).toBe(0);
      sql(path, "DELETE FROM items WHERE id = 1");
      expect((await sync.sync()).pull?.applied).toBe(1);
      expect(replica.store.db.prepare("SELECT count(*) FROM items").pluck().get()).toBe(0);
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("marks pulled changes with the target's own node id, and refuses bad options", async () => {
    const dir = tempDir();
    const replica = sourceReplica(dir);
    try {
      invalidArgument(
        () => new RemoteSync(replica, { target: `sqlite:${dir}/m.db`, direction: "sideways" as "both" }),
      );
      const bare: RemoteTarget = {
        backend: "sqlite",
        id: "bare",
        apply: async () => "applied",
        copy: async () => "applied",
        close: async () => {},
      };
      invalidArgument(() => new RemoteSync(replica, { target: bare, direction: "pull" }));
      const pushOnly = new RemoteSync(replica, { target: bare });
      expect(pushOnly.direction).toBe("push");
      await expect(pushOnly.pull()).rejects.toThrow(/bare cannot be pulled from/);
      invalidArgument(() => pushOnly.sync({ resync: "yes" as unknown as boolean }));
      // A tracked table cannot take the name of the pull's own tables on the target.
      replica.store.db.exec(`CREATE TABLE ${CHANGES_TABLE} (id INTEGER PRIMARY KEY, v TEXT)`);
      replica.track(CHANGES_TABLE);
      const clash = new RemoteSync(replica, { target: `sqlite:${dir}/clash.db` });
      await expect(clash.sync()).rejects.toThrow(/the name is reserved on targets/);
      await clash.close();
      expect(remoteOrigin(`sqlite:${dir}/m.db`)).toMatch(/^remote:[0-9a-f]{24}$/);
      expect(remoteOrigin("a")).not.toBe(remoteOrigin("b"));
    } finally {
      replica.close();
    }
  });
});

describe("pull from libSQL (a file: database through @libsql/client)", () => {
  it("brings @libsql/client's edits in and converges both sides", async () => {
    const dir = tempDir();
    const url = `file:${join(dir, "mirror.db")}`;
    const client = createClient({ url });
    try {
      await converges(dir, {
        url,
        exec: async (s) => void (await client.executeMultiple(s)),
        dump: () => dumpLibsql(url),
        backlog: async () =>
          Number((await client.execute(`SELECT count(*) FROM ${CHANGES_TABLE}`)).rows[0]![0]),
        local: dumpSqlite,
      });
    } finally {
      client.close();
    }
  });
});

describe("pull from PostgreSQL", () => {
  it("brings SQL run by another client in and converges both sides", async (ctx) => {
    if (!pgs.reachable()) return ctx.skip();
    const schema = pgs.newSchema();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await client.query(`SET search_path TO "${schema}"`);
      const count = async () => {
        const rs = await client.query(`SELECT count(*)::int AS n FROM "${schema}".${CHANGES_TABLE}`);
        return rs.rows[0].n as number;
      };
      await converges(tempDir(), {
        url: `${DATABASE_URL}?schema=${schema}`,
        exec: async (s) => void (await client.query(s)),
        dump: () => dumpPostgres(client, schema),
        backlog: async () => {
          const exists = await client.query("SELECT to_regclass($1) AS t", [`"${schema}".${CHANGES_TABLE}`]);
          return exists.rows[0].t === null ? 0 : count();
        },
        local: dumpSqlite,
      });
    } finally {
      await client.end();
    }
  });
});

describe("pull from Cloudflare D1 (wrangler's local D1)", () => {
  it.skipIf(findWrangler() === null)(
    "brings wrangler d1 execute's edits in and converges both sides",
    async () => {
      const dir = tempDir();
      const config = wranglerProject(dir);
      await converges(dir, {
        url: "d1:DB",
        d1: { local: true, config },
        batchSize: 1000, // each read is a wrangler process
        exec: async (s) => void wranglerQuery(config, s.replaceAll("\n", " ")),
        dump: async () => quotedDump(wranglerQuery(config, QUOTED) as Array<{ t: string; r: string }>),
        backlog: async () => {
          const rows = wranglerQuery(
            config,
            `SELECT count(*) AS n FROM sqlite_schema WHERE name = '${CHANGES_TABLE}'`,
          ) as Array<{ n: number }>;
          if (rows[0]!.n === 0) return 0;
          return (
            wranglerQuery(config, `SELECT count(*) AS n FROM ${CHANGES_TABLE}`) as Array<{ n: number }>
          )[0]!.n;
        },
        local: dumpQuotedSqlite,
      });
    },
    600_000,
  );
  if (findWrangler() === null)
    console.warn("SKIPPED: D1 pull test, wrangler is not on PATH or in node_modules/.bin");
});
