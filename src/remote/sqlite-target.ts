/**
 * SqliteTarget: `sqlite:PATH`, a SQLite file on this machine (a backup copy,
 * a file another process serves).
 *
 * Contract: a payload is one IMMEDIATE transaction — claim the sync key in
 * the history table (no row back: already applied, nothing more happens),
 * the statements, the history pruning — so the file holds all of a payload
 * or none of it. The file is created when missing. A full push (`copy`) is
 * one IMMEDIATE transaction too — claim, drop and create each table, fill it
 * by large prepared multi-row INSERTs, indexes, views, the swap hook — so
 * readers (WAL) see the old tables until the commit; it yields to the event
 * loop between batches, so a daemon stays responsive while it runs.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { type CopyJob, insertSql, missingColumns, rowsPerInsert, sqliteIndexSql } from "./copy-job.js";
import type { Payload } from "./payload.js";
import { createTableSql, dropTableSql, historySql, renderPayload, sqliteRenderer } from "./sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "./target.js";
import { quoteIdent, type Value } from "./values.js";

/** Rows written between two yields to the event loop. */
const YIELD_ROWS = 50_000;

export class SqliteTarget implements RemoteTarget {
  readonly backend = "sqlite";
  readonly id: string;
  private readonly path: string;
  private db: Database.Database | null = null;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly renderer = sqliteRenderer();

  constructor(path: string) {
    if (path.trim() === "")
      throw new InvalidArgumentError("target", "sqlite: needs a file path, as sqlite:PATH");
    this.path = resolve(path);
    this.id = `sqlite:${this.path}`;
  }

  async apply(payload: Payload, keepHistory: number): Promise<ApplyOutcome> {
    const db = this.open();
    const h = historySql(this.renderer);
    const statements = renderPayload(payload, this.renderer);
    try {
      return db
        .transaction((): ApplyOutcome => {
          const claimed = this.prepare(h.claim).get(
            payload.key,
            payload.name,
            new Date().toISOString(),
            payload.mode,
          );
          if (claimed === undefined) return "duplicate";
          for (const s of statements) this.run(s.sql, s.params);
          if (keepHistory > 0) this.prepare(h.prune).run(keepHistory);
          return "applied";
        })
        .immediate();
    } catch (err) {
      throw new RemoteError(`${this.id} refused payload ${payload.name}: ${describeError(err)}`);
    }
  }

  async copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome> {
    const db = this.open();
    const r = this.renderer;
    const h = historySql(r);
    this.statements.clear();
    try {
      db.exec("BEGIN IMMEDIATE");
    } catch (err) {
      throw new RemoteError(`${this.id} is busy: ${describeError(err)}`);
    }
    try {
      if (db.prepare(h.claim).get(job.key, job.name, new Date().toISOString(), "full") === undefined) {
        db.exec("ROLLBACK");
        return "duplicate";
      }
      for (const v of job.views) db.exec(`DROP VIEW IF EXISTS ${quoteIdent(v.name)}`);
      for (const t of job.tables) {
        db.exec(dropTableSql(t, r));
        db.exec(createTableSql(t, r));
        await this.fill(db, job, t);
      }
      const byName = new Map(job.tables.map((t) => [t.name, t]));
      for (const ix of job.indexes) {
        const missing = missingColumns(ix, byName.get(ix.table)!);
        if (missing.length > 0) {
          job.warn(`index ${ix.name} is not created: ${ix.table}.${missing.join(", ")} is not pushed`);
          continue;
        }
        this.attempt(db, sqliteIndexSql(ix), (why) => job.warn(`index ${ix.name} is not created: ${why}`));
      }
      for (const v of job.views)
        this.attempt(db, v.sql, (why) => job.warn(`view ${v.name} is not created: ${why}`));
      await job.afterSwap(async (sql) => void db.exec(sql), job.tables, "sqlite");
      if (keepHistory > 0) db.prepare(h.prune).run(keepHistory);
      db.exec("COMMIT");
      return "applied";
    } catch (err) {
      if (db.inTransaction) db.exec("ROLLBACK");
      if (err instanceof RemoteError) throw err;
      throw new RemoteError(`${this.id} refused full push ${job.name}: ${describeError(err)}`);
    } finally {
      this.statements.clear();
    }
  }

  /** The table's rows by prepared INSERTs of many rows each (one prepared statement per row count). */
  private async fill(db: Database.Database, job: CopyJob, t: CopyJob["tables"][number]): Promise<void> {
    const per = rowsPerInsert(t.columns.length);
    const inserts = new Map<number, Database.Statement>();
    const insert = (n: number) => {
      let st = inserts.get(n);
      if (!st) {
        st = db.prepare(insertSql(quoteIdent(t.name), t, n));
        inserts.set(n, st);
      }
      return st;
    };
    const n = t.columns.length;
    // One parameter array, refilled: better-sqlite3 copies the values when it binds them.
    const params: Value[] = new Array(per * n);
    let since = 0;
    for (const batch of job.rows(t, per * 64)) {
      for (let i = 0; i < batch.length; i += per) {
        const rows = Math.min(per, batch.length - i);
        if (rows < per) params.length = rows * n;
        for (let r = 0; r < rows; r++) {
          const row = batch[i + r]!;
          for (let c = 0; c < n; c++) params[r * n + c] = row[c]!;
        }
        insert(rows).run(params);
        params.length = per * n;
      }
      since += batch.length;
      if (since >= YIELD_ROWS) {
        since = 0;
        await new Promise((go) => setImmediate(go));
      }
    }
  }

  /** Runs one optional statement in a savepoint; a refusal is reported and undone, not fatal. */
  private attempt(db: Database.Database, sql: string, refused: (why: string) => void): void {
    db.exec("SAVEPOINT tw_optional");
    try {
      db.exec(sql);
    } catch (err) {
      db.exec("ROLLBACK TO tw_optional");
      refused(describeError(err));
    }
    db.exec("RELEASE tw_optional");
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = null;
    this.statements.clear();
  }

  private open(): Database.Database {
    if (this.db) return this.db;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      const db = new Database(this.path);
      db.pragma("busy_timeout = 30000");
      db.pragma("journal_mode = WAL");
      db.exec(historySql(this.renderer).create);
      this.db = db;
      return db;
    } catch (err) {
      throw new RemoteError(`cannot open ${this.id}: ${describeError(err)}`);
    }
  }

  private run(sql: string, params: Value[]): void {
    // DDL changes the schema, after which a statement prepared before must not be cached.
    if (params.length === 0 && /^(CREATE|DROP) /.test(sql)) {
      this.db!.exec(sql);
      this.statements.clear();
      return;
    }
    this.prepare(sql).run(...params);
  }

  private prepare(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db!.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }
}
