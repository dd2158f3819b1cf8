/**
 * pgCopy: a full push to PostgreSQL — every table built in a shadow schema
 * by COPY FROM STDIN, its primary key and indexes added after the load,
 * then swapped into the target's schema, all in one transaction.
 *
 * Contract: readers of the target's schema see the old tables until the
 * COMMIT and the new ones after; the swap (drop the old table, move the new
 * one in with SET SCHEMA, which keeps its indexes and their names) holds the
 * old tables' exclusive locks only for the moments it takes, since the load
 * runs on tables nobody else can see. The sync key is claimed in the history
 * table first, in the same transaction: already there, nothing is done
 * ("duplicate"). Each value goes through its column's type (`convert`, the
 * same check as the incremental path), and is written in COPY's text format.
 * A table is first built with its declared types (one read of the rows);
 * only when a value misfits is it built again with the types chosen from
 * the data (`job.retype`, a scan), so the common case reads the data once.
 * Indexes are rebuilt from their structure and views from their SELECT;
 * whatever PostgreSQL cannot take is skipped in a savepoint with a warning.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { loadOptional } from "../../optional-deps.js";
import { quoteIdent } from "../../replica/schema.js";
import { type SqlValue, typeName } from "../../replica/values.js";
import { type CopyJob, missingColumns, pgIndexSql, viewBody } from "../copy-job.js";
import type { TableSchema } from "../payload.js";
import { anyComments, createTableSql, historySql, pgColumnType, type Renderer } from "../sql.js";
import { type ApplyOutcome, DATA_REFUSED, RemoteError } from "../target.js";
import { describeValue } from "../values.js";
import { MISFIT, type PgParam, type PgType, pgTypeName, toPgValue } from "./postgres-types.js";

export interface PgPlace {
  /** The target's schema. */
  schema: string;
  renderer: Renderer;
}

/** Runs the whole copy on a connected client; the caller handles ROLLBACK and errors. */
export async function pgCopy(
  client: pg.Client,
  place: PgPlace,
  job: CopyJob,
  keepHistory: number,
): Promise<ApplyOutcome> {
  const h = historySql(place.renderer);
  await client.query("BEGIN");
  const claimed = await client.query(h.claim, [job.key, job.name, new Date(), "full"]);
  if (claimed.rowCount === 0) {
    await client.query("ROLLBACK");
    return "duplicate";
  }
  const shadow = `_tw_copy_${createHash("sha1").update(place.schema).digest("hex").slice(0, 12)}`;
  const inShadow: Renderer = { ...place.renderer, table: (n) => `${quoteIdent(shadow)}.${quoteIdent(n)}` };
  await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(shadow)} CASCADE`);
  await client.query(`CREATE SCHEMA ${quoteIdent(shadow)}`);
  const tables: TableSchema[] = [];
  for (const declared of job.tables) {
    // Optimistic: the declared types hold the data nearly always, so one read suffices;
    // a value they cannot hold undoes the table and builds it again with the types chosen from the data.
    let t = declared;
    await client.query("SAVEPOINT tw_table");
    try {
      await build(client, inShadow, t, job);
    } catch (err) {
      if (!misfits.has(err as Error) || !job.retype) throw err;
      await client.query("ROLLBACK TO SAVEPOINT tw_table");
      t = job.retype(declared);
      await build(client, inShadow, t, job);
    }
    await client.query("RELEASE SAVEPOINT tw_table");
    tables.push(t);
    if (t.key.length > 0) {
      await client.query(
        `ALTER TABLE ${inShadow.table(t.name)} ADD PRIMARY KEY (${t.key.map(quoteIdent).join(", ")})`,
      );
    }
  }
  const byName = new Map(tables.map((t) => [t.name, t]));
  for (const ix of job.indexes) {
    const missing = missingColumns(ix, byName.get(ix.table)!);
    const pgIx =
      missing.length > 0
        ? { skip: `${missing.join(", ")} is not pushed` }
        : pgIndexSql(ix, inShadow.table(ix.table));
    if ("skip" in pgIx)
      job.warn(`index ${ix.name} on ${ix.table} is not created on PostgreSQL: ${pgIx.skip}`);
    else
      await attempt(client, pgIx.sql, (why) =>
        job.warn(`index ${ix.name} on ${ix.table} is not created on PostgreSQL: ${why}`),
      );
  }
  const target = place.renderer.table;
  for (const v of job.views) await client.query(`DROP VIEW IF EXISTS ${target(v.name)}`);
  for (const t of job.tables) {
    await client.query(`DROP TABLE IF EXISTS ${target(t.name)}`);
    await client.query(`ALTER TABLE ${inShadow.table(t.name)} SET SCHEMA ${quoteIdent(place.schema)}`);
  }
  await client.query(`DROP SCHEMA ${quoteIdent(shadow)}`);
  if (job.views.length > 0) await client.query(`SET LOCAL search_path TO ${quoteIdent(place.schema)}`);
  for (const v of job.views) {
    const body = viewBody(v.sql);
    if (!body) {
      job.warn(`view ${v.name} is not created on PostgreSQL: its SQL could not be read`);
      continue;
    }
    const sql = `CREATE VIEW ${target(v.name)} ${body.columns} AS ${body.select}`;
    await attempt(client, sql, (why) => job.warn(`view ${v.name} is not created on PostgreSQL: ${why}`));
  }
  await job.afterSwap(async (sql) => void (await client.query(sql)), tables, "postgres");
  if (keepHistory > 0) await client.query(h.prune, [keepHistory]);
  await client.query("COMMIT");
  return "applied";
}

async function build(client: pg.Client, inShadow: Renderer, t: TableSchema, job: CopyJob): Promise<void> {
  await client.query(createTableSql(t, inShadow, false));
  for (const sql of anyComments(t, inShadow)) await client.query(sql);
  await load(client, inShadow.table(t.name), t, job);
}

/** COPY … FROM STDIN of every row, one text chunk per batch the source reads. */
async function load(client: pg.Client, table: string, t: TableSchema, job: CopyJob): Promise<void> {
  // An optional peer dependency like pg: loaded on the first full push, not when the module is.
  const { from: copyFrom } = await loadOptional(
    "pg-copy-streams",
    "A full push to PostgreSQL",
    () => import("pg-copy-streams"),
  );
  const types = t.columns.map(pgColumnType);
  const cols = t.columns.map((c) => quoteIdent(c.name)).join(", ");
  function* chunks(): Generator<string> {
    for (const batch of job.rows(t, 5000)) {
      let text = "";
      for (const row of batch) {
        for (let i = 0; i < types.length; i++) {
          if (i > 0) text += "\t";
          text += copyField(convert(t, t.columns[i]!.name, types[i]!, row[i] ?? null));
        }
        text += "\n";
      }
      yield text;
    }
  }
  await pipeline(Readable.from(chunks()), client.query(copyFrom(`COPY ${table} (${cols}) FROM STDIN`)));
}

const SPECIAL = /[\\\n\r\t]/;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** A value in COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html, "Text Format"). */
export function copyField(v: PgParam): string {
  if (v === null) return "\\N";
  if (typeof v === "number") return String(v);
  if (Buffer.isBuffer(v)) return `\\\\x${v.toString("hex")}`;
  return SPECIAL.test(v) ? v.replace(/[\\\n\r\t]/g, (c) => ESCAPES[c]!) : v;
}

/** Runs an optional statement in a savepoint: a refusal is undone and reported, not fatal. */
async function attempt(client: pg.Client, sql: string, refused: (why: string) => void): Promise<void> {
  await client.query("SAVEPOINT tw_optional");
  try {
    await client.query(sql);
    await client.query("RELEASE SAVEPOINT tw_optional");
  } catch (err) {
    await client.query("ROLLBACK TO SAVEPOINT tw_optional");
    refused(((err as Error).message ?? String(err)).split("\n")[0]!);
  }
}

/** The errors `convert` threw: a value its column's type cannot hold (a class would be a cycle of imports with target.ts). */
const misfits = new WeakSet<Error>();

/** The value as the column's type takes it, or a DATA_REFUSED error naming table, column and value. */
export function convert(t: TableSchema, column: string, type: PgType, v: SqlValue): PgParam {
  const out = toPgValue(v, type);
  if (out !== MISFIT) return out;
  const err = new RemoteError(
    `column ${JSON.stringify(column)} of table ${JSON.stringify(t.name)} is ${pgTypeName(type)} on PostgreSQL and cannot hold the ${typeName(v).toUpperCase()} value ${describeValue(v)}`,
    DATA_REFUSED,
  );
  misfits.add(err);
  throw err;
}
