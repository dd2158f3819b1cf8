/**
 * bench/remote: what one remote push cycle costs against the common way of
 * keeping a copy current, in one invocation on this machine.
 *
 *   node --import tsx bench/remote/run.ts [--rows 1000000] [--changed 100] [--rounds 3] [--pg URL]
 *
 * - incremental cycle: a database of ROWS rows with CHANGED rows updated;
 *   one `RemoteSync.push()` to a SQLite file target;
 * - snapshot-and-diff cycle, on the same changes: `sqldiff --table items`
 *   between the last snapshot and the live file (Debian's sqlite3-tools),
 *   the diff applied to the mirror, then `VACUUM INTO` a new snapshot;
 * - full push throughput: the whole table to PostgreSQL (`--pg`, default
 *   DATABASE_URL or the local server), rows/s.
 *
 * Each round changes CHANGED random rows and times both cycles; figures are
 * medians of the rounds.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import pg from "pg";
import { RemoteSync } from "../../src/remote/index.js";
import { itemsReplica, machine } from "./source.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    changed: { type: "string", default: "100" },
    rounds: { type: "string", default: "3" },
    pg: { type: "string", default: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
  },
});
const ROWS = Number(args.rows);
const CHANGED = Number(args.changed);
const ROUNDS = Number(args.rounds);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (t0: number) => performance.now() - t0;
const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: 1 });

const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-remote-"));
try {
  console.log(`bench/remote: ${fmt(ROWS)} rows, ${CHANGED} changed per round, ${ROUNDS} rounds`);
  console.log(machine());
  const live = join(dir, "live.db");
  let t0 = performance.now();
  const replica = itemsReplica(live, ROWS);
  const db = replica.store.db;
  console.log(
    `setup: ${fmt(ROWS)} rows written and tracked in ${fmt(ms(t0) / 1000)} s; file ${fmt(statSync(live).size / 1e6)} MB`,
  );

  // Both ways start from a copy of the same state.
  const mirror = join(dir, "mirror.db");
  const sync = new RemoteSync(replica, { target: `sqlite:${mirror}`, chunkRows: 5000 });
  t0 = performance.now();
  await sync.push();
  console.log(
    `full push to the SQLite target: ${fmt(ms(t0) / 1000)} s (${fmt(ROWS / (ms(t0) / 1000))} rows/s)`,
  );
  replica.store.checkpoint("TRUNCATE");
  let snapshot = join(dir, "snapshot-0.db");
  db.prepare("VACUUM INTO ?").run(snapshot);
  const diffMirror = join(dir, "diff-mirror.db");
  copyFileSync(snapshot, diffMirror);

  const update = db.prepare("UPDATE items SET qty = qty + 1, name = ? WHERE id = ?");
  const inc: number[] = [];
  const diff: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    db.transaction(() => {
      for (let i = 0; i < CHANGED; i++)
        update.run(`changed ${round}.${i}`, 1 + Math.floor(Math.random() * ROWS));
    })();
    t0 = performance.now();
    const r = await sync.push();
    inc.push(ms(t0));
    if (r.mode !== "incremental" || r.mutations > CHANGED)
      throw new Error(`unexpected cycle ${JSON.stringify(r)}`);

    t0 = performance.now();
    const sql = execFileSync("sqldiff", ["--table", "items", snapshot, live], {
      maxBuffer: 1 << 30,
      encoding: "utf8",
    });
    const m = new Database(diffMirror);
    m.exec(`BEGIN; ${sql} COMMIT;`);
    m.close();
    const next = join(dir, `snapshot-${round}.db`);
    db.prepare("VACUUM INTO ?").run(next);
    rmSync(snapshot);
    snapshot = next;
    diff.push(ms(t0));
    console.log(
      `round ${round}: incremental ${fmt(inc.at(-1)!)} ms (${r.mutations} rows), snapshot-and-diff ${fmt(diff.at(-1)!)} ms (${sql.split("\n").filter(Boolean).length} statements)`,
    );
  }
  const a = median(inc);
  const b = median(diff);
  console.log(`incremental cycle, median: ${fmt(a)} ms`);
  console.log(`snapshot-and-diff cycle, median: ${fmt(b)} ms`);
  console.log(`ratio: ${fmt(b / a)}x (target >= 50x)`);
  const check = new Database(mirror, { readonly: true });
  const same = check.prepare("SELECT count(*) FROM items").pluck().get() === ROWS;
  check.close();
  console.log(`mirror holds ${same ? "every" : "NOT every"} row`);
  await sync.close();

  // Full push throughput to PostgreSQL, in its own schema, dropped afterwards.
  const schema = `tw_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: args.pg });
  try {
    await admin.connect();
  } catch (err) {
    console.log(`PostgreSQL full push: skipped, ${args.pg} unreachable (${(err as Error).message})`);
  }
  try {
    const toPg = new RemoteSync(replica, { target: `${args.pg}?schema=${schema}`, chunkRows: 5000 });
    t0 = performance.now();
    await toPg.push();
    const s = ms(t0) / 1000;
    const n = Number((await admin.query(`SELECT count(*) AS n FROM "${schema}".items`)).rows[0].n);
    console.log(`full push to PostgreSQL: ${fmt(n)} rows in ${fmt(s)} s = ${fmt(n / s)} rows/s`);
    await toPg.close();
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end().catch(() => {});
  }
  replica.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
