/**
 * ForeignKeys: the foreign keys the schema declares, both ways — the keys a
 * table holds (`of`) and the keys that point at it (`referencing`) — read
 * from SQLite's catalogue and reloaded when the schema version moves.
 *
 * Contract: each key names the child and parent tables, the child's columns
 * and the parent's (the parent's primary key when the clause names none),
 * whether those are the parent's whole primary key in key order (`toKey`,
 * which lets the applier find the parent row in its batch and in the log),
 * and the declared ON DELETE action. `parentExists` and `children` read the
 * tables as they stand; names are quoted, values bound.
 */
import type Database from "better-sqlite3";
import { quoteIdent, schemaVersion } from "./schema.js";
import type { SqlValue } from "./values.js";

export type DeleteAction = "CASCADE" | "SET NULL" | "SET DEFAULT" | "RESTRICT" | "NO ACTION";

export interface ForeignKey {
  child: string;
  /** The child's columns, in the clause's order. */
  from: string[];
  parent: string;
  /** The parent's columns, matching `from` one to one. */
  to: string[];
  /** `to` is the parent's primary key, in key order. */
  toKey: boolean;
  onDelete: DeleteAction;
  /** Every `from` column may hold NULL (and none is part of the child's key). */
  nullable: boolean;
}

interface FkRow {
  id: number;
  seq: number;
  table: string;
  from: string;
  to: string | null;
  on_delete: string;
}

export class ForeignKeys {
  private version = -1;
  private readonly byChild = new Map<string, ForeignKey[]>();
  private readonly byParent = new Map<string, ForeignKey[]>();
  private readonly statements = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  /** The keys `table` holds. */
  of(table: string): ForeignKey[] {
    this.refresh();
    return this.byChild.get(table) ?? [];
  }

  /** The keys that point at `table`. */
  referencing(table: string): ForeignKey[] {
    this.refresh();
    return this.byParent.get(table) ?? [];
  }

  /** Whether the parent table has a row whose `fk.to` columns hold `values`. */
  parentExists(fk: ForeignKey, values: SqlValue[]): boolean {
    const where = fk.to.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
    return (
      this.statement(`SELECT 1 FROM ${quoteIdent(fk.parent)} WHERE ${where} LIMIT 1`).get(...values) !==
      undefined
    );
  }

  /** The child rows whose `fk.from` columns hold `values`: each row's `columns` values, in order. */
  children(fk: ForeignKey, values: SqlValue[], columns: string[]): SqlValue[][] {
    const where = fk.from.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
    const list = columns.length ? columns.map(quoteIdent).join(", ") : "1";
    return this.statement(`SELECT ${list} FROM ${quoteIdent(fk.child)} WHERE ${where}`)
      .raw(true)
      .safeIntegers(true)
      .all(...values) as SqlValue[][];
  }

  private statement(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private refresh(): void {
    const v = schemaVersion(this.db);
    if (v === this.version) return;
    this.byChild.clear();
    this.byParent.clear();
    this.statements.clear();
    const tables = this.db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%REFERENCES%'")
      .pluck()
      .all() as string[];
    const keyOf = new Map<string, string[]>();
    const parentKey = (table: string): string[] => {
      let key = keyOf.get(table);
      if (!key) {
        const cols = this.db
          .prepare("SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk")
          .all(table) as Array<{ name: string }>;
        key = cols.map((c) => c.name);
        keyOf.set(table, key);
      }
      return key;
    };
    for (const child of tables) {
      const nullableCols = new Set(
        this.db
          .prepare('SELECT name FROM pragma_table_info(?) WHERE "notnull" = 0 AND pk = 0')
          .pluck()
          .all(child) as string[],
      );
      const rows = this.db
        .prepare("SELECT * FROM pragma_foreign_key_list(?) ORDER BY id, seq")
        .all(child) as FkRow[];
      const byId = new Map<number, FkRow[]>();
      for (const r of rows) {
        const list = byId.get(r.id);
        if (list) list.push(r);
        else byId.set(r.id, [r]);
      }
      for (const parts of byId.values()) {
        const first = parts[0] as FkRow;
        const key = parentKey(first.table);
        const to = parts.map((p, i) => p.to ?? key[i] ?? "");
        const fk: ForeignKey = {
          child,
          from: parts.map((p) => p.from),
          parent: first.table,
          to,
          toKey: to.length === key.length && to.every((c, i) => c === key[i]),
          onDelete: normalizeAction(first.on_delete),
          nullable: parts.every((p) => nullableCols.has(p.from)),
        };
        push(this.byChild, child, fk);
        push(this.byParent, fk.parent, fk);
      }
    }
    this.version = v;
  }
}

function push(map: Map<string, ForeignKey[]>, name: string, fk: ForeignKey): void {
  const list = map.get(name);
  if (list) list.push(fk);
  else map.set(name, [fk]);
}

function normalizeAction(action: string): DeleteAction {
  const a = action.toUpperCase();
  return a === "CASCADE" || a === "SET NULL" || a === "SET DEFAULT" || a === "RESTRICT" ? a : "NO ACTION";
}
