/**
 * bench/remote/pull: how fast the edits made on a remote target come back
 * (RemoteSync.pull), in change entries per second, per kind of target.
 *
 *   node --import tsx bench/remote/pull.ts [--rows 50000] [--rounds 3] [--batch 1000] [--pg URL]
 *
 * A replica of ROWS rows is pushed to a SQLite file, a libSQL file and
 * PostgreSQL (when reachable) with direction "both", which installs capture.
 * Each round then updates one column of every row on the target (ROWS
 * update entries, written by another connection as another program would)
 * and times one `pull()`: reading the entries, reading the rows, the local
 * apply (per-column LWW), moving the cursor and pruning. Beside each, the
 * floor of the same run: `Replica.apply` alone of the same changes (as the
 * last pull logged them) into a fresh replica holding the same rows, in
 * batches of BATCH. Figures are the medians of the rounds.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import pg from "pg";
import { Replica } from "../../src/index.js";
import { RemoteSync } from "../../src/remote/index.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "50000" },
    rounds: { type: "string", default: "3" },
    batch: { type: "string", default: "1000" },
    pg: { type: "string", default: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
  },
});
const ROWS = Number(args.rows);
const ROUNDS = Number(args.rounds);
const BATCH = Number(args.batch);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: 0 });

interface Target {
  name: string;
  url: string;
  /** Updates every row on the target, as another client. */
  edit(round: number): Promise<void>;
  close(): Promise<void>;
}

const EDIT = (round: number) => `UPDATE items SET qty = qty + ${round + 1}`;
const FILL = `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${ROWS})
  INSERT INTO items (id, name, qty) SELECT i, 'item ' || i, i FROM c`;

/** A fresh replica with the same rows, written before the round's edits (so they win there too). */
function floorReplica(path: string): Replica {
  const floor = Replica.open(path);
  floor.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
  floor.track("items");
  floor.store.db.exec(FILL);
  floor.ingest();
  return floor;
}

/** Replica.apply alone, into `floor`, of what the pull after `from` logged: changes/s. */
function applyFloor(source: Replica, from: string, floor: Replica): number {
  try {
    const pages = [];
    for (let at = from; ; ) {
      const cs = source.changesSince(at, { limit: BATCH });
      pages.push(cs.changes);
      at = cs.cursor;
      if (!cs.hasMore) break;
    }
    const t0 = performance.now();
    let n = 0;
    for (const p of pages) n += floor.apply(p, { from: p[0]?.origin }).applied;
    return n / ((performance.now() - t0) / 1000);
  } finally {
    floor.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-pull-"));
try {
  console.log(
    `bench/remote/pull: ${fmt(ROWS)} rows updated on the target per round, ${ROUNDS} rounds, batch ${BATCH}`,
  );
  console.log(
    `machine: ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  const targets: Target[] = [];
  const file = join(dir, "mirror.db");
  let other: Database.Database | null = null;
  targets.push({
    name: "sqlite file",
    url: `sqlite:${file}`,
    edit: async (r) => {
      other ??= new Database(file);
      other.pragma("busy_timeout = 10000");
      other.exec(EDIT(r));
    },
    close: async () => void other?.close(),
  });
  const libsqlUrl = `file:${join(dir, "libsql.db")}`;
  const libsql = createClient({ url: libsqlUrl });
  targets.push({
    name: "libsql file:",
    url: libsqlUrl,
    edit: async (r) => void (await libsql.execute(EDIT(r))),
    close: async () => libsql.close(),
  });
  const schema = `bench_pull_${process.pid}`;
  const admin = new pg.Client({ connectionString: args.pg });
  try {
    await admin.connect();
    await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    targets.push({
      name: "postgres",
      url: `${args.pg}${args.pg!.includes("?") ? "&" : "?"}schema=${schema}`,
      edit: async (r) => void (await admin.query(`${EDIT(r).replace("items", `"${schema}".items`)}`)),
      close: async () => {
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await admin.end();
      },
    });
  } catch (err) {
    console.log(`postgres: skipped (${(err as Error).message})`);
  }

  for (const t of targets) {
    const replica = Replica.open(join(dir, `local-${t.name.replace(/\W/g, "")}.db`));
    replica.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)");
    replica.track("items");
    replica.store.db.exec(FILL);
    const sync = new RemoteSync(replica, { target: t.url, batchSize: BATCH });
    try {
      await sync.sync(); // full push, then capture installed
      const rates: number[] = [];
      const floors: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const floor = floorReplica(join(dir, `floor-${r}-${t.name.replace(/\W/g, "")}.db`));
        await t.edit(r);
        const head = replica.head();
        const t0 = performance.now();
        const res = await sync.pull();
        const s = (performance.now() - t0) / 1000;
        if (res.entries !== ROWS || res.applied !== ROWS)
          throw new Error(
            `${t.name}: pulled ${res.entries} entries, applied ${res.applied}, expected ${ROWS}`,
          );
        rates.push(res.entries / s);
        floors.push(applyFloor(replica, head, floor));
      }
      console.log(
        `${t.name.padEnd(14)} pull: ${fmt(median(rates))} changes/s (rounds: ${rates.map(fmt).join(", ")}); ` +
          `Replica.apply alone: ${fmt(median(floors))} changes/s; pull ÷ apply ${(median(rates) / median(floors)).toFixed(2)}`,
      );
    } finally {
      await sync.close();
      replica.close();
      await t.close();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
