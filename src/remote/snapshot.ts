/**
 * Snapshot: one read transaction on the local file, on a connection of its
 * own, from which a full push reads every table's rows and its catalog.
 *
 * Contract: every read between `open` and `close` sees the database as it
 * was at one instant, so the copy's tables agree with each other (a foreign
 * key's parent is there) and with the change-log position read before it
 * (rows written later are sent again by the next incremental push, which
 * upserts whole rows: harmless). The connection is read-only and separate
 * from the store's, so the copy may span awaits while the store keeps
 * writing (in WAL mode, the store's default; in a rollback-journal mode the
 * snapshot's read lock holds the store's writers off until the copy ends,
 * as any long reader does there). An in-memory database has no second connection: its tables are
 * read whole from the store's connection, one at a time (such a database is
 * small, and an open iterator there would block the store's other
 * statements).
 */
import Database from "better-sqlite3";
import { quoteIdent } from "../replica/schema.js";
import type { SqlValue } from "../replica/values.js";
import type { Store } from "../store.js";
import { Catalog } from "./catalog.js";
import type { TableSchema } from "./payload.js";

export class Snapshot {
  readonly catalog: Catalog;
  private readonly db: Database.Database;
  private readonly own: boolean;

  constructor(store: Store) {
    this.own = store.path !== ":memory:";
    this.db = this.own ? new Database(store.path, { readonly: true, fileMustExist: true }) : store.db;
    if (this.own) {
      this.db.pragma("busy_timeout = 30000");
      this.db.exec("BEGIN");
      // The snapshot starts with the first read, not with BEGIN.
      this.db.prepare("SELECT count(*) FROM sqlite_schema").get();
    }
    this.catalog = new Catalog(this.db);
  }

  /** Every row of `t` (schema column order, storage classes kept), in batches of at most `size`. */
  *rows(t: TableSchema, size: number): Generator<SqlValue[][]> {
    const st = this.db
      .prepare(`SELECT ${t.columns.map((c) => quoteIdent(c.name)).join(", ")} FROM ${quoteIdent(t.name)}`)
      .raw(true)
      .safeIntegers(true);
    if (!this.own) {
      const all = st.all() as SqlValue[][];
      for (let i = 0; i < all.length; i += size) yield all.slice(i, i + size);
      return;
    }
    let batch: SqlValue[][] = [];
    for (const row of st.iterate() as IterableIterator<SqlValue[]>) {
      batch.push(row);
      if (batch.length >= size) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  count(t: TableSchema): number {
    return Number(
      this.db
        .prepare(`SELECT count(*) FROM ${quoteIdent(t.name)}`)
        .pluck()
        .safeIntegers(true)
        .get(),
    );
  }

  /** Every row of `t`, one by one (for choosing PostgreSQL's column types). */
  *scan(t: TableSchema): Generator<SqlValue[]> {
    for (const batch of this.rows(t, 4096)) yield* batch;
  }

  close(): void {
    if (!this.own || !this.db.open) return;
    // Closing ends the read transaction even with an iterator left open by a failed copy.
    this.db.close();
  }
}
