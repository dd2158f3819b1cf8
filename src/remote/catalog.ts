/**
 * Catalog: what a whole copy takes from the local database besides the
 * tracked tables — the indexes of the pushed tables, the views, and the
 * tables nobody tracks (for --all-tables).
 *
 * Contract: reads `sqlite_schema` and the table/index pragmas only, never
 * changes anything. Tidewire's own tables (tw_*), SQLite's (sqlite_*), the
 * targets' history table, virtual tables and their shadow tables are never
 * listed: a virtual table's module may not exist on the target, and its
 * shadow tables are its storage, not user data (the user is told).
 */
import type Database from "better-sqlite3";
import type { IndexSpec, ViewSpec } from "./copy-job.js";
import type { TableSchema } from "./payload.js";
import { affinityOf, HISTORY_TABLE } from "./sql.js";

const INTERNAL = /^(tw_|sqlite_|_tidewire_)/i;

export class Catalog {
  private readonly tableList: Database.Statement;
  private readonly tableInfo: Database.Statement;
  private readonly indexList: Database.Statement;
  private readonly indexInfo: Database.Statement;
  private readonly indexSql: Database.Statement;
  private readonly viewList: Database.Statement;

  constructor(db: Database.Database) {
    this.tableList = db.prepare(
      "SELECT name, type FROM pragma_table_list WHERE schema = 'main' ORDER BY name",
    );
    this.tableInfo = db.prepare("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid");
    this.indexList = db.prepare(
      'SELECT name, "unique" AS uniq, origin, partial FROM pragma_index_list(?) ORDER BY name',
    );
    this.indexInfo = db.prepare(
      "SELECT cid, name, desc, coll FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno",
    );
    this.indexSql = db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?").pluck();
    this.viewList = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'view' ORDER BY name");
  }

  /** User tables not in `known`, with their declared primary key (empty for a rowid table without one). */
  untracked(known: Set<string>, warn: (m: string) => void): TableSchema[] {
    const out: TableSchema[] = [];
    for (const t of this.tableList.all() as Array<{ name: string; type: string }>) {
      if (known.has(t.name) || INTERNAL.test(t.name) || t.name === HISTORY_TABLE) continue;
      if (t.type === "virtual")
        warn(`virtual table ${t.name} is not copied: its module may not exist on the target`);
      if (t.type !== "table") continue;
      out.push(this.schema(t.name));
    }
    return out;
  }

  schema(table: string): TableSchema {
    const cols = this.tableInfo.all(table) as Array<{ name: string; type: string; pk: number }>;
    return {
      name: table,
      key: cols
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => c.name),
      columns: cols.map((c) => ({ name: c.name, ...affinityOf(c.type), declared: c.type })),
    };
  }

  /** The table's indexes other than its primary key's, UNIQUE constraints' included. */
  indexes(table: string): IndexSpec[] {
    const list = this.indexList.all(table) as Array<{
      name: string;
      uniq: number;
      origin: string;
      partial: number;
    }>;
    return list
      .filter((ix) => ix.origin !== "pk")
      .map((ix) => {
        const parts = this.indexInfo.all(ix.name) as Array<{
          cid: number;
          name: string | null;
          desc: number;
          coll: string;
        }>;
        const plain = parts.every((p) => p.cid >= 0 && p.name !== null);
        const columns = plain
          ? parts.map((p) => ({ name: p.name!, desc: p.desc === 1, collate: p.coll }))
          : null;
        const automatic = ix.origin === "u";
        return {
          // An automatic index's name (sqlite_autoindex_…) is reserved: it gets one of its own.
          name: automatic ? `${table}_${(columns ?? []).map((c) => c.name).join("_")}_key` : ix.name,
          table,
          unique: ix.uniq === 1,
          columns,
          partial: ix.partial === 1,
          sql: automatic ? null : ((this.indexSql.get(ix.name) as string | null) ?? null),
        };
      });
  }

  views(): ViewSpec[] {
    return (this.viewList.all() as Array<{ name: string; sql: string }>).filter(
      (v) => !INTERNAL.test(v.name),
    );
  }
}
