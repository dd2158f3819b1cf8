/**
 * Catalog: the tracked tables, as recorded in `tw_tracked` — id, bucket, key
 * columns and captured columns.
 *
 * Contract: reads are served from memory and reloaded whenever SQLite's
 * schema version moves (every track and untrack rebuilds triggers, which
 * moves it, in this process or any other), so a replica never applies changes
 * with a stale idea of a table's columns.
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
}

interface Row {
  id: number;
  name: string;
  bucket: string;
  pk: string;
  cols: string;
}

export class Catalog {
  private version = -1;
  private readonly byName = new Map<string, TrackedTable>();
  private readonly byId = new Map<number, TrackedTable>();
  private readonly sql: { all: Database.Statement };

  constructor(private readonly db: Database.Database) {
    this.sql = { all: db.prepare("SELECT id, name, bucket, pk, cols FROM tw_tracked ORDER BY name") };
  }

  /** Reloads when the schema changed since the last load, or when forced. */
  refresh(force = false): void {
    const v = schemaVersion(this.db);
    if (!force && v === this.version) return;
    this.byName.clear();
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
      };
      this.byName.set(t.name, t);
      this.byId.set(t.id, t);
    }
    this.version = v;
  }

  get(name: string): TrackedTable | undefined {
    this.refresh();
    return this.byName.get(name);
  }

  /** As `get`, without checking for a schema change: for a loop that refreshed once. */
  peek(name: string): TrackedTable | undefined {
    return this.byName.get(name);
  }

  getById(id: number): TrackedTable | undefined {
    this.refresh();
    return this.byId.get(id);
  }

  list(): TrackedTable[] {
    this.refresh();
    return [...this.byName.values()];
  }
}
