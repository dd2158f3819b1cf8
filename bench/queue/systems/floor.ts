/**
 * The floor: the claim and complete row writes a SQLite queue cannot avoid,
 * done by a bare better-sqlite3 loop, so Tidewire's own overhead is visible.
 *
 * The table is Tidewire's `tw_jobs` with all its indexes, copied from a store
 * that the built package creates (so the shape follows src/migrations.ts),
 * including the partial index on pending jobs whose order needs no sort. The
 * file is durable: WAL, synchronous NORMAL, and the page cache Tidewire uses.
 * Each batch of up to 100 jobs is claimed with one
 * `UPDATE … WHERE id IN (SELECT … LIMIT 100) RETURNING *` in an IMMEDIATE
 * transaction, its payloads parsed and handed to the no-op handler with at most
 * `concurrency` calls in flight, then completed with one UPDATE in another
 * IMMEDIATE transaction. Single adds are one autocommit INSERT each; bulk adds
 * one transaction per chunk.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { type BenchConfig, noop, type Payload, runPool, type System } from "../common.js";
import { loadTidewire, removeSqlite } from "./tidewire.js";

const BATCH = 100;
const QUEUE = "bench";

interface Row {
  id: number;
  payload: string;
}

/** The CREATE statements of tw_jobs and its indexes, as the built package makes them. */
async function twJobsSchema(tmpDir: string): Promise<string[]> {
  const tw = await loadTidewire();
  const path = join(tmpDir, "floor-schema.db");
  const store = tw.openStore(path);
  try {
    const rows = store.db
      .prepare(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'tw_jobs' AND sql IS NOT NULL ORDER BY type DESC",
      )
      .all() as Array<{ sql: string }>;
    return rows.map((r) => r.sql);
  } finally {
    store.close();
    removeSqlite(path);
  }
}

export function floor(config: BenchConfig): System {
  let schema: string[] = [];
  let db: Database.Database | undefined;
  let path = "";
  let generation = 0;
  let stmts: ReturnType<typeof prepare>;

  const prepare = (d: Database.Database) => {
    const insert = d.prepare<[string, string, string, number, number, number]>(
      `INSERT INTO tw_jobs (queue, type, payload, state, priority, run_at, max_attempts, created_at)
       VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)`,
    );
    const claim = d.prepare<[string, number, number, string, number, number]>(
      `UPDATE tw_jobs
          SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, started_at = ?
        WHERE id IN (SELECT id FROM tw_jobs
                      WHERE queue = ? AND state = 'pending' AND run_at <= ?
                      ORDER BY priority DESC, run_at, id LIMIT ?)
      RETURNING *`,
    );
    const complete = d.prepare<[number, string]>(
      `UPDATE tw_jobs SET state = 'completed', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL
        WHERE id IN (SELECT value FROM json_each(?))`,
    );
    const addMany = d.transaction((payloads: Payload[]) => {
      const now = Date.now();
      for (const p of payloads) insert.run(QUEUE, "noop", JSON.stringify(p), now, 3, now);
    });
    const claimTx = d.transaction((limit: number) => {
      const now = Date.now();
      return claim.all("floor", now + 30_000, now, QUEUE, now, limit) as Row[];
    });
    const completeTx = d.transaction(
      (ids: number[]) => complete.run(Date.now(), JSON.stringify(ids)).changes,
    );
    const remaining = d.prepare<[string]>(
      "SELECT count(*) AS n FROM tw_jobs WHERE queue = ? AND state IN ('pending', 'running')",
    );
    return { insert, addMany, claimTx, completeTx, remaining };
  };

  const openFresh = () => {
    db?.close();
    if (path) removeSqlite(path);
    path = join(config.tmpDir, `floor-${generation++}.db`);
    db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("busy_timeout = 30000");
    db.pragma("cache_size = -65536");
    for (const sql of schema) db.exec(sql);
    stmts = prepare(db);
  };

  return {
    async open() {
      schema = await twJobsSchema(config.tmpDir);
      openFresh();
    },
    async reset() {
      openFresh();
    },
    add(payload: Payload) {
      const now = Date.now();
      stmts.insert.run(QUEUE, "noop", JSON.stringify(payload), now, 3, now);
    },
    addBulk(payloads: Payload[]) {
      stmts.addMany.immediate(payloads);
    },
    async process(n: number) {
      let done = 0;
      while (done < n) {
        const rows = stmts.claimTx.immediate(BATCH);
        if (rows.length === 0) throw new Error(`the floor ran out of jobs after ${done} of ${n}`);
        await runPool(rows, config.concurrency, (row) => noop(JSON.parse(row.payload)));
        done += stmts.completeTx.immediate(rows.map((r) => r.id));
      }
      return async () => {};
    },
    remaining() {
      return (stmts.remaining.get(QUEUE) as { n: number }).n;
    },
    async close() {
      db?.close();
      db = undefined;
      if (path) removeSqlite(path);
    },
  };
}
