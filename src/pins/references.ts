/**
 * PinReferences: which columns may name a pin, and which pins they name.
 *
 * Contract: `declare(table, column)` records, in `tw_pin_columns`, that the
 * column's cells may reference pins; the table and column must exist in this
 * database, and tidewire's own `tw_` tables are refused. A cell references a
 * pin when it holds TEXT of exactly 64 lowercase hex digits (the sha256 of
 * the pin); any other value (NULL, a number, other text) references nothing,
 * so a column can hold a pin or not row by row. `referenced()` reads every
 * declared column (identifiers quoted, each statement prepared once) and
 * throws, naming it, when a declared table or column is gone: a garbage
 * collector must never take "cannot read" for "references nothing".
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { quoteIdent } from "../replica/schema.js";
import type { Store } from "../store.js";
import { checkName } from "../validate.js";
import { isPinHash } from "./errors.js";

export interface PinColumn {
  table: string;
  column: string;
  /** Epoch ms it was declared. */
  declaredAt: number;
}

type Statement = Database.Statement;

export class PinReferences {
  private readonly insertSql: Statement;
  private readonly deleteSql: Statement;
  private readonly listSql: Statement;
  private readonly tableSql: Statement;
  private readonly columnSql: Statement;
  private readonly readers = new Map<string, Statement>();

  constructor(private readonly store: Store) {
    const db = store.db;
    this.insertSql = db.prepare(
      "INSERT INTO tw_pin_columns (tbl, col, declared_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    );
    this.deleteSql = db.prepare("DELETE FROM tw_pin_columns WHERE tbl = ? AND col = ?");
    this.listSql = db.prepare(
      'SELECT tbl AS "table", col AS "column", declared_at AS declaredAt FROM tw_pin_columns ORDER BY tbl, col',
    );
    this.tableSql = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?");
    this.columnSql = db.prepare("SELECT 1 FROM pragma_table_info(?) WHERE name = ?");
  }

  /** Declares that `table.column` may reference pins; false when it already was. */
  declare(table: string, column: string): boolean {
    checkName("table", table);
    checkName("column", column);
    if (table.toLowerCase().startsWith("tw_")) {
      throw new InvalidArgumentError("table", `${JSON.stringify(table)} is one of tidewire's own tables`);
    }
    if (!this.tableSql.get(table)) {
      throw new InvalidArgumentError("table", `no table ${JSON.stringify(table)} in ${this.store.path}`);
    }
    if (!this.columnSql.get(table, column)) {
      throw new InvalidArgumentError(
        "column",
        `table ${JSON.stringify(table)} has no column ${JSON.stringify(column)}`,
      );
    }
    return this.store.write(() => this.insertSql.run(table, column, Date.now()).changes > 0, "pins");
  }

  /** Forgets a declaration; false when there was none. */
  undeclare(table: string, column: string): boolean {
    checkName("table", table);
    checkName("column", column);
    return this.store.write(() => this.deleteSql.run(table, column).changes > 0, "pins");
  }

  columns(): PinColumn[] {
    return this.listSql.all() as PinColumn[];
  }

  /** Every pin hash some declared column references. */
  referenced(): Set<string> {
    const out = new Set<string>();
    for (const { table, column } of this.columns()) {
      let rows: Iterable<unknown>;
      try {
        rows = this.reader(table, column).pluck().iterate();
        for (const value of rows) if (isPinHash(value)) out.add(value);
      } catch (err) {
        throw new TidewireError(
          `cannot read pin references in ${table}.${column} (declared with pins.declare): ${(err as Error).message}`,
          "ERR_PIN_COLUMN",
        );
      }
    }
    return out;
  }

  private reader(table: string, column: string): Statement {
    const key = JSON.stringify([table, column]);
    let sql = this.readers.get(key);
    if (!sql) {
      const c = quoteIdent(column);
      // The length test lets SQLite skip most cells that cannot be a hash without handing them over.
      sql = this.store.db.prepare(
        `SELECT DISTINCT ${c} FROM ${quoteIdent(table)} WHERE typeof(${c}) = 'text' AND length(${c}) = 64`,
      );
      this.readers.set(key, sql);
    }
    return sql;
  }
}
