/**
 * SqliteTarget: `sqlite:PATH`, a SQLite file on this machine (a backup copy,
 * a file another process serves).
 *
 * Contract: a payload is one IMMEDIATE transaction — claim the sync key in
 * the history table (no row back: already applied, nothing more happens),
 * the statements, the history pruning — so the file holds all of a payload
 * or none of it. The file is created when missing.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import type { Capture } from "./capture.js";
import { SqliteCapture } from "./capture-sqlite.js";
import type { Payload } from "./payload.js";
import { applyingSql, historySql, renderPayload, sqliteRenderer } from "./sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "./target.js";
import type { Value } from "./values.js";

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
