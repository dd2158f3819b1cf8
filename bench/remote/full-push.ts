/**
 * bench/remote/full-push: a full push's throughput to each target beside
 * the floor of the same run — the least work that puts the same rows in the
 * same kind of table — printing rows/s and the ratio.
 *
 *   npm run bench:remote -- [--rows 1000000] [--rounds 3] [--pg URL] [--base DIR]
 *
 * - SQLite file: `RemoteSync.push()` to a new `sqlite:` file, against a bare
 *   INSERT … SELECT: the source ATTACHed and copied by one statement in one
 *   transaction into the table a full push creates (same columns, same
 *   primary key) — the way the push itself copies, without its chunks.
 * - libSQL file: the same push to `file:` (through @libsql/client), against a
 *   bare batched INSERT: the rows read from the source on a second connection
 *   and written by one prepared 256-row INSERT in one transaction.
 * - PostgreSQL: the push to a new schema, against a bare COPY: the rows read
 *   from the source, joined as COPY text with no type checks, COPY FROM
 *   STDIN into a plain table, primary key added, in one transaction.
 *
 * Figures are medians of the rounds. With `--base DIR` (a checkout of the
 * code before issue 14, e.g. `git worktree add DIR <commit>` with
 * node_modules linked), the same push by that code is timed in the same
 * rounds to the SQLite file and PostgreSQL, and the ratio printed.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { RemoteSync } from "../../src/remote/index.js";
import { itemsReplica, machine } from "./source.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    pg: { type: "string", default: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
    base: { type: "string" },
  },
});
const ROWS = Number(args.rows);
const ROUNDS = Number(args.rounds);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: 2 });
const rate = (s: number) => ROWS / s;

async function timed(fn: () => Promise<void> | void): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-fullpush-"));
try {
  console.log(`bench/remote/full-push: ${fmt(ROWS)} rows, ${ROUNDS} rounds`);
  console.log(machine());
  const live = join(dir, "live.db");
  const replica = itemsReplica(live, ROWS);
  replica.store.checkpoint("TRUNCATE");
  console.log(`source: ${fmt(statSync(live).size / 1e6)} MB`);

  const reader = new Database(live, { readonly: true });
  const rows = () =>
    reader.prepare("SELECT id, name, qty, price FROM items").raw(true).safeIntegers(true).iterate();

  const sqliteFloor = (path: string) => {
    const t = new Database(path);
    t.pragma("journal_mode = WAL");
    t.exec("CREATE TABLE items (id INT, name TEXT, qty INT, price REAL, PRIMARY KEY (id))");
    const per = 256;
    const st = t.prepare(`INSERT INTO items VALUES ${Array(per).fill("(?, ?, ?, ?)").join(", ")}`);
    t.transaction(() => {
      let batch: unknown[] = [];
      for (const r of rows()) {
        batch.push(...(r as unknown[]));
        if (batch.length === per * 4) {
          st.run(batch);
          batch = [];
        }
      }
      for (let i = 0; i < batch.length; i += 4)
        t.prepare("INSERT INTO items VALUES (?, ?, ?, ?)").run(batch.slice(i, i + 4));
    })();
    t.close();
  };

  // --base: the same push by the code before issue 14 (a checkout with its own src/), timed in the same rounds.
  const Before = args.base
    ? ((await import(join(args.base, "src/index.ts"))) as { RemoteSync: typeof RemoteSync }).RemoteSync
    : null;
  // The floor of the way a sqlite: target copies: the source attached, one INSERT … SELECT.
  const attachFloor = (path: string) => {
    const t = new Database(path);
    t.pragma("journal_mode = WAL");
    t.prepare("ATTACH DATABASE ? AS src").run(live);
    t.exec(`BEGIN;
      CREATE TABLE main.items (id INT, name TEXT, qty INT, price REAL, PRIMARY KEY (id));
      INSERT INTO main.items SELECT id, name, qty, price FROM src.items;
      COMMIT; DETACH src`);
    t.close();
  };
  const results: string[] = [];
  const compare = async (
    label: string,
    push: (round: number) => Promise<void>,
    floor: (round: number) => Promise<void>,
    before?: (round: number) => Promise<void>,
  ) => {
    const ours: number[] = [];
    const bare: number[] = [];
    const old: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternated, so a change in the machine's load falls on each.
      bare.push(await timed(() => floor(round)));
      ours.push(await timed(() => push(round)));
      if (before) old.push(await timed(() => before(round)));
      console.log(
        `${label} round ${round}: push ${fmt(rate(ours.at(-1)!))} rows/s, floor ${fmt(rate(bare.at(-1)!))} rows/s${before ? `, before ${fmt(rate(old.at(-1)!))} rows/s` : ""}`,
      );
    }
    const a = rate(median(ours));
    const b = rate(median(bare));
    const c = before ? rate(median(old)) : 0;
    const line = `${label}: full push ${fmt(a)} rows/s, floor ${fmt(b)} rows/s, ratio to the floor ${fmt(a / b)}${before ? `; before issue 14 ${fmt(c)} rows/s, ${fmt(a / c)}x` : ""}`;
    results.push(line);
    console.log(line);
  };

  const pushTo = async (target: string, Sync: typeof RemoteSync = RemoteSync) => {
    const sync = new Sync(replica, { target });
    const r = await sync.push({ resync: true });
    if (r.mode !== "full" || r.mutations !== ROWS) throw new Error(`unexpected cycle ${JSON.stringify(r)}`);
    await sync.close();
  };
  const beforeTo = (target: (n: number) => string) =>
    Before ? (n: number) => pushTo(target(n), Before) : undefined;

  await compare(
    "SQLite file",
    (n) => pushTo(`sqlite:${join(dir, `push-${n}.db`)}`),
    async (n) => attachFloor(join(dir, `floor-${n}.db`)),
    beforeTo((n) => `sqlite:${join(dir, `before-${n}.db`)}`),
  );
  await compare(
    "libSQL file",
    (n) => pushTo(`file:${join(dir, `libsql-${n}.db`)}`),
    async (n) => sqliteFloor(join(dir, `floor-l${n}.db`)),
  );

  const admin = new pg.Client({ connectionString: args.pg });
  let up = true;
  await admin.connect().catch((err) => {
    up = false;
    console.log(`PostgreSQL: skipped, ${args.pg} unreachable (${(err as Error).message})`);
  });
  if (up) {
    const schemas: string[] = [];
    const schema = (kind: string, n: number) => {
      const s = `tw_bench_${kind}_${process.pid}_${n}`;
      schemas.push(s);
      return s;
    };
    try {
      await compare(
        "PostgreSQL",
        (n) => pushTo(`${args.pg}?schema=${schema("push", n)}`),
        async (n) => {
          const s = schema("floor", n);
          const c = new pg.Client({ connectionString: args.pg });
          await c.connect();
          await c.query("BEGIN");
          await c.query(`CREATE SCHEMA "${s}"`);
          await c.query(
            `CREATE TABLE "${s}".items (id bigint, name text, qty bigint, price double precision)`,
          );
          function* text() {
            let chunk = "";
            let n = 0;
            for (const r of rows()) {
              chunk += `${(r as unknown[]).join("\t")}\n`;
              if (++n % 5000 === 0) {
                yield chunk;
                chunk = "";
              }
            }
            if (chunk) yield chunk;
          }
          await pipeline(Readable.from(text()), c.query(copyFrom(`COPY "${s}".items FROM STDIN`)));
          await c.query(`ALTER TABLE "${s}".items ADD PRIMARY KEY (id)`);
          await c.query("COMMIT");
          await c.end();
        },
        beforeTo((n) => `${args.pg}?schema=${schema("before", n)}`),
      );
    } finally {
      for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
      await admin.end().catch(() => {});
    }
  }
  reader.close();
  replica.close();
  console.log("\nsummary:");
  for (const l of results) console.log(`  ${l}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
