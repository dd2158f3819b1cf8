/**
 * PostgresCapture: capture on a PostgreSQL target, by one PL/pgSQL trigger
 * function in the target's schema and one row trigger per table.
 *
 * Contract: the function appends to `<schema>._tidewire_changes` (a
 * generated sequence, the table, the key as text[] in key order, the op,
 * the changed columns of an update, the ms of clock_timestamp()) unless the
 * writing transaction set `tidewire.applying` LOCAL, which Tidewire's own
 * apply does (targets/postgres.ts): its writes are never recorded. It names
 * its change table through TG_TABLE_SCHEMA, so its text holds no schema
 * name. `install` is one catalog read when everything is in place, else one
 * transaction creating what is missing. Values come back as PostgreSQL's
 * text output and are read by the target column's type (`fromPgText`), the
 * inverse of targets/postgres-types.ts's `toPgValue` where that conversion is exact.
 * Names reach SQL only through `quoteIdent`, types only through
 * `renderPgType`, values only as parameters.
 */
import { InvalidArgumentError } from "../../errors.js";
import { quoteIdent } from "../../replica/schema.js";
import { fromWire, type SqlValue } from "../../replica/values.js";
import type { Capture, CapturedChange } from "../capture.js";
import { CHANGES_TABLE, keyText } from "../capture.js";
import type { TableSchema } from "../payload.js";
import { sqlLiteral } from "../values.js";
import { ANY_COMMENT, type PgType, parsePgType, renderPgType } from "./postgres-types.js";

export interface PgRunner {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[][] }>;
  /** Statements in one transaction. */
  batch(statements: string[]): Promise<void>;
}

const FUNCTION = "_tidewire_capture";
const TRIGGER = "_tidewire_capture";
const KEYS_PER_READ = 500;

const FUNCTION_BODY = `
DECLARE
  n jsonb; o jsonb; k text; nk text[] := '{}'; ok text[] := '{}'; changed text[]; ms bigint;
  ins text := format('INSERT INTO %I.%I (tbl, pk, op, cols, at) VALUES ($1, $2, $3, $4, $5)', TG_TABLE_SCHEMA, '${CHANGES_TABLE}');
BEGIN
  IF current_setting('tidewire.applying', true) = 'on' THEN RETURN NULL; END IF;
  ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
  IF TG_OP <> 'DELETE' THEN n := to_jsonb(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;
  FOREACH k IN ARRAY TG_ARGV LOOP
    nk := nk || (n ->> k);
    ok := ok || (o ->> k);
  END LOOP;
  IF TG_OP = 'INSERT' THEN
    EXECUTE ins USING TG_TABLE_NAME, nk, 'insert', NULL::text[], ms;
  ELSIF TG_OP = 'DELETE' THEN
    EXECUTE ins USING TG_TABLE_NAME, ok, 'delete', NULL::text[], ms;
  ELSIF nk IS DISTINCT FROM ok THEN
    EXECUTE ins USING TG_TABLE_NAME, ok, 'delete', NULL::text[], ms;
    EXECUTE ins USING TG_TABLE_NAME, nk, 'insert', NULL::text[], ms;
  ELSE
    SELECT array_agg(e.key) INTO changed FROM jsonb_each(n) e WHERE e.value IS DISTINCT FROM (o -> e.key);
    IF changed IS NOT NULL THEN EXECUTE ins USING TG_TABLE_NAME, nk, 'update', changed, ms; END IF;
  END IF;
  RETURN NULL;
END`;

/** Every table of the schema, its columns and types, and whether capture is on it. */
const CATALOG = `SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
  col_description(a.attrelid, a.attnum),
  EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = '${TRIGGER}'),
  to_regprocedure(quote_ident($1) || '.${FUNCTION}()') IS NOT NULL
  FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE ns.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum`;

export class PostgresCapture implements Capture {
  /** Per table, its columns' types on the target, as the last install read them. */
  private readonly types = new Map<string, Map<string, PgType>>();
  /** Per table, its key columns, as the last install was given them. */
  private readonly keys = new Map<string, string[]>();
  private readonly changes: string;

  constructor(
    private readonly run: PgRunner,
    private readonly schema: string,
  ) {
    this.changes = `${quoteIdent(schema)}.${quoteIdent(CHANGES_TABLE)}`;
  }

  async install(tables: TableSchema[]): Promise<Map<string, string[]>> {
    const rows = (await this.run.query(CATALOG, [this.schema])).rows as [
      string,
      string,
      string,
      string | null,
      boolean,
      boolean,
    ][];
    this.types.clear();
    const captured = new Set<string>();
    let hasFunction = false;
    for (const [table, column, type, note, trigger, fn] of rows) {
      const m = this.types.get(table) ?? new Map<string, PgType>();
      this.types.set(table, m);
      const t = type === "jsonb" && note === ANY_COMMENT ? ({ kind: "any" } as const) : parsePgType(type);
      if (t) m.set(column, t);
      if (trigger) captured.add(table);
      hasFunction = fn;
    }
    const ddl: string[] = [];
    const fn = `${quoteIdent(this.schema)}.${quoteIdent(FUNCTION)}`;
    if (!this.types.has(CHANGES_TABLE)) {
      ddl.push(
        `CREATE TABLE IF NOT EXISTS ${this.changes} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tbl text NOT NULL, pk text[] NOT NULL, op text NOT NULL, cols text[], at bigint NOT NULL)`,
      );
    }
    if (!hasFunction) {
      ddl.push(
        `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $tidewire$${FUNCTION_BODY}$tidewire$`,
      );
    }
    const out = new Map<string, string[]>();
    for (const t of tables) {
      const have = this.types.get(t.name);
      if (!have || !t.key.every((k) => have.has(k))) continue;
      this.keys.set(t.name, t.key);
      out.set(
        t.name,
        t.columns.map((c) => c.name).filter((c) => have.has(c)),
      );
      if (captured.has(t.name)) continue;
      const table = `${quoteIdent(this.schema)}.${quoteIdent(t.name)}`;
      ddl.push(
        `CREATE TRIGGER ${quoteIdent(TRIGGER)} AFTER INSERT OR UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${fn}(${t.key.map(sqlLiteral).join(", ")})`,
      );
    }
    if (ddl.length) await this.run.batch(ddl);
    return out;
  }

  async read(after: bigint, limit: number): Promise<CapturedChange[]> {
    const rs = await this.run.query(
      // Ordered by the table's column: an output column named seq would be the text.
      `SELECT c.seq::text, c.tbl, c.pk, c.op, c.cols, c.at::text FROM ${this.changes} c WHERE c.seq > $1 ORDER BY c.seq LIMIT $2`,
      [after.toString(), limit],
    );
    return rs.rows.map(([seq, tbl, pk, op, cols, at]) => {
      const table = String(tbl);
      const types = this.types.get(table);
      const names = this.keys.get(table);
      return {
        seq: BigInt(seq as string),
        table,
        // A table installed since (or gone) is passed over by the puller, so its keys may stay text.
        key: (pk as Array<string | null>).map((v, i) => {
          const type = names && types?.get(names[i] ?? "");
          return type ? fromPgText(v, type) : v;
        }),
        op: op as CapturedChange["op"],
        columns: (cols as string[] | null) ?? null,
        at: Number(at),
      };
    });
  }

  async rows(t: TableSchema, columns: string[], keys: SqlValue[][]): Promise<Array<SqlValue[] | null>> {
    const types = this.types.get(t.name);
    if (!types) return keys.map(() => null);
    const type = (c: string) => {
      const x = types.get(c);
      if (!x) throw new InvalidArgumentError("table", `${t.name}.${c} is missing on the target`);
      return x;
    };
    const found = new Map<string, SqlValue[]>();
    const all = [...t.key, ...columns];
    const list = t.key.map((_, i) => `$${i + 1}::text[]`).join(", ");
    const on = t.key.map((k, i) => `t.${quoteIdent(k)} = k.k${i}::${castType(type(k))}`).join(" AND ");
    const text = `SELECT ${all.map((c) => `t.${quoteIdent(c)}::text`).join(", ")} FROM unnest(${list}) AS k(${t.key.map((_, i) => `k${i}`).join(", ")}) JOIN ${quoteIdent(this.schema)}.${quoteIdent(t.name)} t ON ${on}`;
    for (let i = 0; i < keys.length; i += KEYS_PER_READ) {
      const chunk = keys.slice(i, i + KEYS_PER_READ);
      const params = t.key.map((_, p) => chunk.map((k) => pgKeyText(k[p] ?? null)));
      const rs = await this.run.query(text, params);
      for (const r of rs.rows) {
        const values = (r as Array<string | null>).map((v, j) => fromPgText(v, type(all[j]!)));
        found.set(keyText(values.slice(0, t.key.length)), values.slice(t.key.length));
      }
    }
    return keys.map((k) => found.get(keyText(k)) ?? null);
  }

  async prune(upto: bigint): Promise<void> {
    await this.run.query(`DELETE FROM ${this.changes} WHERE seq <= $1`, [upto.toString()]);
  }
}

/** A cast for a key's text back to its column's type (an `any` key is its jsonb). */
function castType(t: PgType): string {
  return t.kind === "any" ? "jsonb" : renderPgType(t);
}

/** A key part as the text its column's type reads back (the inverse of `fromPgText`). */
function pgKeyText(v: SqlValue): string | null {
  if (v === null) return null;
  if (v instanceof Uint8Array) return `\\x${Buffer.from(v).toString("hex")}`;
  return String(v);
}

/**
 * A value from PostgreSQL's text output of a column of type `t`: integers
 * as INTEGER, double precision as REAL, a numeric with no fraction as
 * INTEGER (else REAL), boolean as 1/0, bytea as BLOB, `any` as the wire
 * value it holds, everything else as TEXT.
 */
export function fromPgText(text: string | null, t: PgType): SqlValue {
  if (text === null) return null;
  switch (t.kind) {
    case "smallint":
    case "integer":
    case "bigint":
      return BigInt(text);
    case "double precision":
      return text === "NaN" ? null : Number(text);
    case "numeric":
      return /^-?\d+$/.test(text) && BigInt(text) >= -(2n ** 63n) && BigInt(text) < 2n ** 63n
        ? BigInt(text)
        : Number(text);
    case "boolean":
      return text === "t" || text === "true" ? 1n : 0n;
    case "bytea":
      return Buffer.from(text.replace(/^\\x/, ""), "hex");
    case "any":
      return fromWire(JSON.parse(text));
    default:
      return text;
  }
}
