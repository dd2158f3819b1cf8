/**
 * PgType: the column types a push to PostgreSQL creates — which one a
 * column's declared SQLite type maps to, the fallbacks tried when its data
 * does not fit, the `--pg-type` grammar, and each SQLite value's exact
 * conversion to each type.
 *
 * Contract: a type is only ever one of the kinds below; it reaches SQL only
 * through `renderPgType`, never as text a user or a schema gave, so a type
 * name cannot carry SQL. `toPgValue` converts a value only when the type
 * holds it without changing it (beyond what the type itself implies: a
 * date's output form, a boolean for 0/1, a uuid's dashes); anything else is
 * MISFIT, never a rounded, truncated or reinterpreted value. `any` is jsonb
 * holding the replica protocol's wire form of the value, so every storage
 * class comes back as it was (docs/architecture.md, "Remote push").
 */
import { type SqlValue, toWire } from "../../replica/values.js";
import type { ColumnSchema } from "../payload.js";

export type PgKind =
  | "smallint"
  | "integer"
  | "bigint"
  | "double precision"
  | "numeric"
  | "text"
  | "varchar"
  | "boolean"
  | "date"
  | "time"
  | "timestamp"
  | "timestamptz"
  | "json"
  | "jsonb"
  | "uuid"
  | "bytea"
  | "any";

export interface PgType {
  kind: PgKind;
  /** numeric(p,s) */
  precision?: number;
  scale?: number;
  /** varchar(n) */
  length?: number;
}

export type PgParam = string | number | Buffer | null;

/** What `toPgValue` returns for a value the type cannot hold exactly. */
export const MISFIT: unique symbol = Symbol("misfit");

/** The marker kept as the comment of an `any` column: the catalog tells jsonb-as-any from jsonb. */
export const ANY_COMMENT = "tidewire:any (jsonb of the SQLite value's wire form)";

const NAMES: Record<string, PgKind> = {
  smallint: "smallint",
  int2: "smallint",
  integer: "integer",
  int: "integer",
  int4: "integer",
  bigint: "bigint",
  int8: "bigint",
  "double precision": "double precision",
  float8: "double precision",
  numeric: "numeric",
  decimal: "numeric",
  text: "text",
  varchar: "varchar",
  "character varying": "varchar",
  boolean: "boolean",
  bool: "boolean",
  date: "date",
  time: "time",
  "time without time zone": "time",
  timestamp: "timestamp",
  "timestamp without time zone": "timestamp",
  timestamptz: "timestamptz",
  "timestamp with time zone": "timestamptz",
  json: "json",
  jsonb: "jsonb",
  uuid: "uuid",
  bytea: "bytea",
  any: "any",
};

export const PG_TYPE_NAMES = Object.keys(NAMES);

/**
 * A type from the grammar: one of PG_TYPE_NAMES, with `(p)` or `(p,s)` for
 * numeric/decimal and `(n)` for varchar. Also reads format_type()'s output
 * for the catalog. Returns null for anything else.
 */
export function parsePgType(text: string): PgType | null {
  const s = text
    .trim()
    .toLowerCase()
    .replace(/\s+/g, " ")
    .replace(/\s*([(),])\s*/g, "$1");
  const m = /^([a-z][a-z0-9 ]*?)(?:\((\d{1,8})(?:,(\d{1,8}))?\))?$/.exec(s);
  if (!m) return null;
  const kind = NAMES[m[1]!];
  if (!kind) return null;
  const a = m[2] === undefined ? undefined : Number(m[2]);
  const b = m[3] === undefined ? undefined : Number(m[3]);
  if (kind === "numeric") {
    if (a === undefined) return { kind };
    const scale = b ?? 0;
    if (a < 1 || a > 1000 || scale > a) return null;
    return { kind, precision: a, scale };
  }
  if (kind === "varchar") {
    if (b !== undefined) return null;
    if (a === undefined) return { kind: "text" };
    return a >= 1 && a <= 10_485_760 ? { kind, length: a } : null;
  }
  return a === undefined ? { kind } : null;
}

/** The type as SQL (for CREATE TABLE and casts); `any` is jsonb. */
export function renderPgType(t: PgType): string {
  if (t.kind === "numeric" && t.precision !== undefined) return `numeric(${t.precision},${t.scale ?? 0})`;
  if (t.kind === "varchar") return `varchar(${t.length})`;
  if (t.kind === "any") return "jsonb";
  return t.kind;
}

/** The type as the grammar names it (`any` stays `any`): kept in payloads and shown in messages. */
export function pgTypeName(t: PgType): string {
  return t.kind === "any" ? "any" : renderPgType(t);
}

const ANY: PgType = { kind: "any" };
const BIGINT: PgType = { kind: "bigint" };
const TEXT: PgType = { kind: "text" };
/** Tried after a column's own candidates, in this order, when its data does not fit them. */
const TAIL: PgType[] = [BIGINT, TEXT, ANY];

/**
 * The types a column may get, best first: its declared type's mapping (and
 * that type's own fallbacks), then bigint, text, any. The push takes the
 * first that holds every value the column has.
 */
export function candidateTypes(c: ColumnSchema): PgType[] {
  const all = [...declaredTypes(c), ...TAIL];
  return all.filter((t, i) => all.findIndex((u) => pgTypeName(u) === pgTypeName(t)) === i);
}

/** The mapping of a declared SQLite type, as the ORMs write them (docs/architecture.md, "Remote push"). */
export function declaredTypes(c: ColumnSchema): PgType[] {
  if (c.untyped) return [ANY];
  const d = (c.declared ?? "").trim().toUpperCase().replace(/\s+/g, " ");
  if (d === "" || d === "ANY") return [ANY];
  if (c.json && c.affinity === "TEXT") return [{ kind: "json" }];
  const m = /^([A-Z][A-Z0-9_ ]*?)\s*(?:\(\s*(\d{1,8})\s*(?:,\s*(\d{1,8})\s*)?\))?(?: (?:UN)?SIGNED)?$/.exec(
    d,
  );
  const base = (m?.[1] ?? "").replace(/ (?:UN)?SIGNED$/, "");
  const a = m?.[2] === undefined ? undefined : Number(m[2]);
  const b = m?.[3] === undefined ? undefined : Number(m[3]);
  switch (base) {
    case "BOOLEAN":
    case "BOOL":
      return [{ kind: "boolean" }];
    case "DATE":
      return [{ kind: "date" }];
    case "DATETIME":
    case "TIMESTAMP":
    case "TIMESTAMP WITHOUT TIME ZONE":
      return [{ kind: "timestamp" }, { kind: "timestamptz" }];
    case "TIMESTAMPTZ":
    case "TIMESTAMP WITH TIME ZONE":
      return [{ kind: "timestamptz" }];
    case "TIME":
    case "TIME WITHOUT TIME ZONE":
      return [{ kind: "time" }];
    case "DECIMAL":
    case "NUMERIC": {
      const fixed = a === undefined ? null : parsePgType(`numeric(${a},${b ?? 0})`);
      return fixed ? [fixed, { kind: "numeric" }] : [{ kind: "numeric" }];
    }
    case "JSON":
    case "JSONB":
      return [{ kind: "json" }];
    case "UUID":
      return [{ kind: "uuid" }];
    case "SMALLINT":
    case "INT2":
    case "TINYINT":
      return [{ kind: "smallint" }];
    case "REAL":
    case "DOUBLE":
    case "DOUBLE PRECISION":
    case "FLOAT":
    case "FLOAT8":
      return [{ kind: "double precision" }];
    case "BLOB":
      return [{ kind: "bytea" }];
  }
  // Character types with a length: CHAR(n) too, as varchar(n) — character(n) would pad with blanks.
  if (c.affinity === "TEXT" && a !== undefined && b === undefined && /CHAR/.test(base)) {
    const t = parsePgType(`varchar(${a})`);
    if (t) return [t];
  }
  switch (c.affinity) {
    case "INTEGER":
      return [BIGINT];
    case "TEXT":
      return [TEXT];
    case "REAL":
      return [{ kind: "double precision" }];
    case "NUMERIC":
      return [{ kind: "numeric" }];
    case "BLOB":
      return [{ kind: "bytea" }];
  }
}

const LIMITS: Partial<Record<PgKind, bigint>> = {
  smallint: 2n ** 15n,
  integer: 2n ** 31n,
  bigint: 2n ** 63n,
};
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME = /^(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?$/;
const STAMP =
  /^(\d{4})-(\d{2})-(\d{2})[T ]((?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?)(Z|[+-](?:0\d|1[0-5])(?::?[0-5]\d)?)?$/;
const DECIMAL_TEXT = /^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?$/;
/** What numeric's input takes: digits before or after the point, an optional exponent. */
const DECIMAL_INPUT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?$/;
const UUID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/i;

/** The value as `t` takes it (a pg parameter), or MISFIT. NULL fits every type. */
export function toPgValue(v: SqlValue, t: PgType): PgParam | typeof MISFIT {
  if (v === null) return null;
  switch (t.kind) {
    case "smallint":
    case "integer":
    case "bigint": {
      const limit = LIMITS[t.kind]!;
      return typeof v === "bigint" && v >= -limit && v < limit ? v.toString() : MISFIT;
    }
    case "double precision":
      if (typeof v === "number") return Number.isFinite(v) ? v : v > 0 ? "Infinity" : "-Infinity";
      if (typeof v === "bigint" && v >= -(2n ** 53n) && v <= 2n ** 53n) return Number(v);
      return MISFIT;
    case "numeric":
      return numeric(v, t);
    case "text":
      return typeof v === "string" && !v.includes("\u0000") ? v : MISFIT;
    case "varchar":
      return typeof v === "string" && !v.includes("\u0000") && codePoints(v, t.length!) ? v : MISFIT;
    case "boolean":
      return v === 0n ? "false" : v === 1n ? "true" : MISFIT;
    case "date": {
      const m = typeof v === "string" ? DATE.exec(v) : null;
      return m && validDate(m) ? (v as string) : MISFIT;
    }
    case "time":
      return typeof v === "string" && TIME.test(v) ? v : MISFIT;
    case "timestamp":
    case "timestamptz": {
      const m = typeof v === "string" ? STAMP.exec(v) : null;
      // A zone in a plain timestamp would be dropped silently, and a plain one read in the session's zone.
      return m && validDate(m) && (m[5] !== undefined) === (t.kind === "timestamptz")
        ? (v as string)
        : MISFIT;
    }
    case "json":
    case "jsonb":
      return json(v, t.kind === "jsonb");
    case "uuid":
      return typeof v === "string" && UUID.test(v) ? v : MISFIT;
    case "bytea":
      return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : MISFIT;
    case "any":
      return typeof v === "string" && v.includes("\u0000") ? MISFIT : JSON.stringify(toWire(v));
  }
}

function validDate(m: RegExpExecArray): boolean {
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]!;
  return d <= days;
}

function codePoints(s: string, max: number): boolean {
  if (s.length <= max) return true;
  let n = 0;
  for (const _ of s) if (++n > max) return false;
  return true;
}

function numeric(v: SqlValue, t: PgType): PgParam | typeof MISFIT {
  let text: string;
  if (typeof v === "bigint") text = v.toString();
  else if (typeof v === "number") {
    if (!Number.isFinite(v)) return t.precision === undefined ? (v > 0 ? "Infinity" : "-Infinity") : MISFIT;
    text = String(v);
    // Unconstrained numeric keeps the scale it is given: 1.0 stays 1.0.
    if (t.precision === undefined && /^-?\d+$/.test(text)) text = `${text}.0`;
  } else if (typeof v === "string" && DECIMAL_INPUT.test(v)) text = v;
  else return MISFIT;
  if (t.precision === undefined) return text;
  return fitsDigits(text, t.precision, t.scale ?? 0) ? text : MISFIT;
}

/** Whether a decimal's digits fit numeric(p,s) with no rounding: trailing fraction zeros do not count. */
function fitsDigits(text: string, p: number, s: number): boolean {
  const m = DECIMAL_TEXT.exec(text);
  if (!m) return false;
  let digits = `${m[1] ?? ""}${m[2] ?? ""}`;
  let point = (m[1] ?? "").length + Number(m[3] ?? 0);
  while (digits.startsWith("0")) {
    digits = digits.slice(1);
    point--;
  }
  digits = digits.replace(/0+$/, "");
  if (digits === "") return true;
  const intDigits = Math.max(0, point);
  const fracDigits = Math.max(0, digits.length - point);
  return intDigits <= p - s && fracDigits <= s;
}

function json(v: SqlValue, binary: boolean): PgParam | typeof MISFIT {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : MISFIT;
  if (typeof v !== "string" || v.includes("\u0000")) return MISFIT;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    return MISFIT;
  }
  // jsonb refuses \u0000 and lone surrogates, which JSON.stringify writes as escapes.
  if (binary && /\\u(?:0000|d[89a-f][0-9a-f]{2})/i.test(JSON.stringify(parsed))) return MISFIT;
  return v;
}

/** `table.column=TYPE` (the last dot before `=` splits table from column); throws an Error saying what is wrong. */
export function parseOverride(spec: string): { table: string; column: string; type: PgType } {
  const eq = spec.indexOf("=");
  const target = eq < 0 ? "" : spec.slice(0, eq);
  const dot = target.lastIndexOf(".");
  if (eq < 0 || dot <= 0 || dot === target.length - 1) {
    throw new Error(`${JSON.stringify(spec)} is not table.column=TYPE`);
  }
  const type = parsePgType(spec.slice(eq + 1));
  if (!type) {
    throw new Error(
      `${JSON.stringify(spec.slice(eq + 1))} is not a type tidewire writes; use one of ${PG_TYPE_NAMES.join(", ")} (numeric(p,s), varchar(n))`,
    );
  }
  return { table: target.slice(0, dot), column: target.slice(dot + 1), type };
}
