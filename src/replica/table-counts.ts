/**
 * TableCounts: per tracked (or relayed) table, the rows it holds and what the
 * change log keeps of it, for the status document and the console's Sync view.
 *
 * Contract: reads only. The log is counted for every table in one GROUP BY
 * over tw_log's primary key (table first); each tracked table's rows are one
 * count(*) of its own, since SQLite keeps no row count. A relayed table has
 * no table here (`rows` null); a table a schema change removed under the
 * catalog is null too, never an error, as the status must still be read.
 */
import type Database from "better-sqlite3";
import type { Catalog } from "./catalog.js";
import { quoteIdent } from "./schema.js";
import { ALIVE } from "./triggers.js";

export interface TableCount {
  table: string;
  bucket: string;
  relayed: boolean;
  /** Rows in the table itself (null: relayed, or the table is gone). */
  rows: number | null;
  /** Entries stored in the log for the table. */
  logEntries: number;
  /** Keys whose row entry says the row exists, and deleted keys the log remembers. */
  liveKeys: number;
  tombstones: number;
}

/** Per bucket, the sums of its tables' counts. */
export interface BucketCount {
  bucket: string;
  tables: number;
  rows: number;
  logEntries: number;
  tombstones: number;
}

const PER_TABLE = `
  SELECT tbl, count(*) AS entries,
         coalesce(sum(col = '' AND val = ${ALIVE}), 0) AS live,
         coalesce(sum(col = '' AND val <> ${ALIVE}), 0) AS tombstones
  FROM tw_log GROUP BY tbl`;

export function tableCounts(db: Database.Database, catalog: Catalog): TableCount[] {
  const log = new Map(
    (
      db.prepare(PER_TABLE).all() as Array<{ tbl: number; entries: number; live: number; tombstones: number }>
    ).map((r) => [r.tbl, r]),
  );
  return catalog.listAll().map((t) => {
    const l = log.get(t.id);
    return {
      table: t.name,
      bucket: t.bucket,
      relayed: t.relayed,
      rows: t.relayed ? null : rowCount(db, t.name),
      logEntries: l?.entries ?? 0,
      liveKeys: l?.live ?? 0,
      tombstones: l?.tombstones ?? 0,
    };
  });
}

export function bucketCounts(tables: TableCount[]): BucketCount[] {
  const out = new Map<string, BucketCount>();
  for (const t of tables) {
    const b = out.get(t.bucket) ?? { bucket: t.bucket, tables: 0, rows: 0, logEntries: 0, tombstones: 0 };
    b.tables++;
    b.rows += t.rows ?? t.liveKeys;
    b.logEntries += t.logEntries;
    b.tombstones += t.tombstones;
    out.set(t.bucket, b);
  }
  return [...out.values()].sort((a, b) => a.bucket.localeCompare(b.bucket));
}

function rowCount(db: Database.Database, table: string): number | null {
  try {
    return db
      .prepare(`SELECT count(*) FROM ${quoteIdent(table)}`)
      .pluck()
      .get() as number;
  } catch {
    return null; // dropped or renamed under the catalog: the status says so elsewhere (capture)
  }
}
