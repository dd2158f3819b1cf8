/**
 * Catalog: the tracked tables, as recorded in `tw_tracked` — id, bucket, key
 * columns and captured columns — and the relayed ones: tables a relay keeps
 * the log of without having them (no column names, only the key's arity).
 *
 * Contract: reads are served from memory and reloaded whenever SQLite's
 * schema version moves (every track and untrack rebuilds triggers, which
 * moves it, in this process or any other), so a replica never applies changes
 * with a stale idea of a table's columns. A tracked table whose capture a
 * schema change broke beyond what the schema watch repairs by itself (the
 * table is gone, or no longer trackable) has a `problem` (evolve.ts sets it
 * at every check): nothing may be applied to it until the problem is gone,
 * or the applier would write rows reconciliation has not seen.
 */
import type Database from "better-sqlite3";
import { schemaVersion } from "./schema.js";

export interface TrackedTable {
  /** The table's number in the log (`tw_log.tbl`). */
  id: number;
  name: string;
  bucket: string;
  /** Key columns, in key order. */
  pk: string[];
  /** The other columns the triggers capture, in table order. */
  columns: string[];
  pkSet: ReadonlySet<string>;
  columnSet: ReadonlySet<string>;
  /** Kept for relaying only: this database has no such table (pk names are ""). */
  relayed: boolean;
}

interface Row {
  id: number;
  name: string;
  bucket: string;
  pk: string;
  cols: string;
  relayed: number;
}

export class Catalog {
  private version = -1;
  private readonly byName = new Map<string, TrackedTable>();
  private readonly relayedByName = new Map<string, TrackedTable>();
  private readonly byId = new Map<number, TrackedTable>();
  private readonly sql: { all: Database.Statement; foreignKeys: Database.Statement };
  /** Old names of tables renamed here (null: a file from before migration 12, read as it is). */
  private readonly renames: Database.Statement | null;
  private readonly aliases = new Map<string, TrackedTable>();
  /**
   * Whether any table of the schema declares a foreign key (as of the last
   * refresh): the applier defers their checks to commit only then.
   */
  foreignKeys = true;
  private readonly problems = new Map<string, string>();

  constructor(private readonly db: Database.Database) {
    this.sql = {
      all: db.prepare("SELECT id, name, bucket, pk, cols, relayed FROM tw_tracked ORDER BY name"),
      // Every foreign key clause says REFERENCES; a false yes only costs the pragma.
      foreignKeys: db
        .prepare(
          "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%REFERENCES%')",
        )
        .pluck(),
    };
    let renames: Database.Statement | null = null;
    try {
      renames = db.prepare("SELECT old, new FROM tw_renames");
    } catch {}
    this.renames = renames;
  }

  /** Reloads when the schema changed since the last load, or when forced. */
  refresh(force = false): void {
    const v = schemaVersion(this.db);
    if (!force && v === this.version) return;
    this.byName.clear();
    this.relayedByName.clear();
    this.byId.clear();
    for (const r of this.sql.all.all() as Row[]) {
      const pk = JSON.parse(r.pk) as string[];
      const columns = JSON.parse(r.cols) as string[];
      const t: TrackedTable = {
        id: r.id,
        name: r.name,
        bucket: r.bucket,
        pk,
        columns,
        pkSet: new Set(pk),
        columnSet: new Set(columns),
        relayed: r.relayed === 1,
      };
      (t.relayed ? this.relayedByName : this.byName).set(t.name, t);
      this.byId.set(t.id, t);
    }
    this.aliases.clear();
    for (const r of (this.renames?.all() ?? []) as Array<{ old: string; new: string }>) {
      const t = this.byName.get(r.new);
      if (t && !this.byName.has(r.old)) this.aliases.set(r.old, t);
    }
    this.foreignKeys = this.sql.foreignKeys.get() === 1;
    this.version = v;
  }

  /**
   * Why this tracked table's capture is broken, as one sentence saying what to
   * run, or null when it is captured. The applier must hold changes for a
   * table with a problem (they are for rows reconciliation has not seen).
   */
  problem(name: string): string | null {
    return this.problems.get(name) ?? null;
  }

  /** The first problem among these tables' names, or null (cheap when there is none). */
  problemOf(names: Iterable<unknown>): string | null {
    if (this.problems.size === 0) return null;
    for (const n of names) {
      const p = typeof n === "string" ? this.problems.get(n) : undefined;
      if (p !== undefined) return p;
    }
    return null;
  }

  /** Recorded by the schema watch (evolve.ts) at each check; null clears. */
  setProblem(name: string, problem: string | null): void {
    if (problem === null) this.problems.delete(name);
    else this.problems.set(name, problem);
  }

  get(name: string): TrackedTable | undefined {
    this.refresh();
    return this.byName.get(name);
  }

  /** As `get`, without checking for a schema change: for a loop that refreshed once. */
  peek(name: string): TrackedTable | undefined {
    return this.byName.get(name);
  }

  /** A tracked table by a name it had before a rename here, without checking for a schema change. */
  peekRenamed(oldName: string): TrackedTable | undefined {
    return this.aliases.get(oldName);
  }

  /** A relayed table by name, without checking for a schema change (see `peek`). */
  peekRelayed(name: string): TrackedTable | undefined {
    return this.relayedByName.get(name);
  }

  /** Tracked or relayed. */
  getById(id: number): TrackedTable | undefined {
    this.refresh();
    // A relay records tables without a schema change: another connection's may be new.
    if (!this.byId.has(id)) this.refresh(true);
    return this.byId.get(id);
  }

  /** The tracked tables (not the relayed ones). */
  list(): TrackedTable[] {
    this.refresh();
    return [...this.byName.values()];
  }

  /** Tracked and relayed tables. */
  listAll(): TrackedTable[] {
    this.refresh();
    return [...this.byId.values()];
  }
}
