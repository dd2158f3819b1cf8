/**
 * SqliteTarget: `sqlite:PATH`, a SQLite file on this machine (a backup copy,
 * a file another process serves).
 *
 * Contract: a payload is one IMMEDIATE transaction — claim the sync key in
 * the history table (no row back: already applied, nothing more happens),
 * the statements, the history pruning — so the file holds all of a payload
 * or none of it. The file is created when missing. A full push (`copy`) is
 * one transaction too — claim, drop and create each table, fill it (the
 * local file ATTACHed and read by INSERT … SELECT, or for an in-memory
 * source large prepared multi-row INSERTs), indexes, views, the swap hook — so
 * readers (WAL) see the old tables until the commit; it yields to the event
 * loop between batches, so a daemon stays responsive while it runs.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { InvalidArgumentError } from "../../errors.js";
import { quoteIdent } from "../../replica/schema.js";
import type { SqlValue } from "../../replica/values.js";
import type { Capture } from "../capture.js";
import { type CopyJob, insertSql, missingColumns, rowsPerInsert, sqliteIndexSql } from "../copy-job.js";
import type { Payload } from "../payload.js";
import {
  applyingSql,
  createTableSql,
  dropTableSql,
  historySql,
  renderPayload,
  sqliteRenderer,
} from "../sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "../target.js";
import { SqliteCapture } from "./sqlite-capture.js";

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
    const marker = applyingSql();
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
          // The marker keeps these writes out of the target's capture; gone again at commit.
          this.prepare(marker.set).run();
          for (const s of statements) this.run(s.sql, s.params);
          if (keepHistory > 0) this.prepare(h.prune).run(keepHistory);
          this.prepare(marker.clear).run();
          return "applied";
        })
        .immediate();
    } catch (err) {
      throw new RemoteError(`${this.id} refused payload ${payload.name}: ${describeError(err)}`);
    }
  }

  async copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome> {
    const db = this.open();
    this.statements.clear();
    const attached = job.sourceFile !== null && this.attach(db, job.sourceFile);
    // With the source attached, an unqualified name absent from main would find the source's object:
    // every name this copy writes is main's.
    const r = attached ? { ...this.renderer, table: (n: string) => `main.${quoteIdent(n)}` } : this.renderer;
    const h = historySql(r);
    try {
      // Deferred with the source attached: IMMEDIATE would take the source's write lock too.
      // The claim, the first statement, takes the target's.
      db.exec(attached ? "BEGIN" : "BEGIN IMMEDIATE");
    } catch (err) {
      if (attached) db.exec("DETACH DATABASE tw_source");
      throw new RemoteError(`${this.id} is busy: ${describeError(err)}`);
    }
    try {
      if (db.prepare(h.claim).get(job.key, job.name, new Date().toISOString(), "full") === undefined) {
        db.exec("ROLLBACK");
        return "duplicate";
      }
      for (const v of job.views) db.exec(`DROP VIEW IF EXISTS ${r.table(v.name)}`);
      for (const t of job.tables) {
        db.exec(dropTableSql(t, r));
        db.exec(createTableSql(t, r));
        if (attached) await this.copyAttached(db, job, t);
        else await this.fill(db, job, t);
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
      if (attached) db.exec("DETACH DATABASE tw_source");
    }
  }

  /** ATTACHes the local file for INSERT … SELECT; false (copy by batches) when it cannot be. */
  private attach(db: Database.Database, file: string): boolean {
    try {
      db.prepare("ATTACH DATABASE ? AS tw_source").run(file);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The table's rows straight from the attached source, in SQLite: a rowid
   * table in chunks of `chunkRows` rows by rowid (the event loop runs between
   * chunks, progress is reported after each), any other in one statement.
   * The source's read transaction lasts until the commit, so every chunk and
   * table comes from one snapshot.
   */
  private async copyAttached(
    db: Database.Database,
    job: CopyJob,
    t: CopyJob["tables"][number],
  ): Promise<void> {
    const from = `tw_source.${quoteIdent(t.name)}`;
    const insert = `INSERT INTO main.${quoteIdent(t.name)} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) SELECT ${t.columns.map((c) => quoteIdent(c.name)).join(", ")} FROM ${from}`;
    const withoutRowid = db
      .prepare("SELECT wr FROM pragma_table_list WHERE schema = 'tw_source' AND name = ?")
      .pluck()
      .get(t.name);
    const shadowed = t.columns.some((c) => /^(rowid|_rowid_|oid)$/i.test(c.name));
    job.progress(t, 0);
    if (withoutRowid !== 0 || shadowed) {
      const n = db.prepare(insert).run().changes;
      if (n > 0) job.progress(t, n);
      return;
    }
    // The rowid chunkRows rows on: each chunk is one range of the rowid b-tree.
    const next = db
      .prepare(`SELECT rowid FROM ${from} WHERE rowid > ? ORDER BY rowid LIMIT 1 OFFSET ?`)
      .pluck()
      .safeIntegers(true);
    const chunk = db.prepare(`${insert} WHERE rowid > ? AND rowid <= ? ORDER BY rowid`);
    const rest = db.prepare(`${insert} WHERE rowid > ? ORDER BY rowid`);
    let after = -(2n ** 63n);
    let rows = 0;
    for (;;) {
      const upto = next.get(after, job.chunkRows - 1) as bigint | undefined;
      if (upto === undefined) {
        const n = rest.run(after).changes;
        if (n > 0) job.progress(t, rows + n);
        return;
      }
      rows += chunk.run(after, upto).changes;
      after = upto;
      job.progress(t, rows);
      await new Promise((go) => setImmediate(go));
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
    const params: SqlValue[] = new Array(per * n);
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

  capture(): Capture {
    return new SqliteCapture({
      query: async (sql) =>
        sql.map((q) => this.open().prepare(q).raw(true).safeIntegers(true).all() as unknown[][]),
      batch: async (sql) => {
        const db = this.open();
        db.transaction(() => {
          for (const s of sql) db.exec(s);
        }).immediate();
        // DDL may have changed the schema a cached statement was prepared against.
        this.statements.clear();
      },
    });
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
      db.exec(applyingSql().create);
      this.db = db;
      return db;
    } catch (err) {
      throw new RemoteError(`cannot open ${this.id}: ${describeError(err)}`);
    }
  }

  private run(sql: string, params: SqlValue[]): void {
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
