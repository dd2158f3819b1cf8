/**
 * TypePlan: the column types a full push to PostgreSQL creates, chosen from
 * the declared types, the `--pg-type` overrides and the data itself.
 *
 * Contract: per column, an override is taken as given, and a value it cannot
 * hold refuses the push (DATA_REFUSED, saying which value). Otherwise the
 * column gets the first of its candidate types (postgres-types.ts) that holds
 * every value the column has now, and each column that did not get its
 * declared type's mapping is reported as a Fallback with the value that
 * decided it: never a silent change. A value no type holds (text holding
 * U+0000) refuses the push. A key column only gets a type whose equality
 * is the SQLite values' own (KEY_SAFE): as a timestamp, '12:00' and
 * '12:00:00' would be one key and one row would overwrite the other. Scans the table once; a second time only when a
 * column's first candidate failed.
 */
import { InvalidArgumentError } from "../../errors.js";
import { type SqlValue, typeName } from "../../replica/values.js";
import type { TableSchema } from "../payload.js";
import { DATA_REFUSED, RemoteError } from "../target.js";
import { describeValue } from "../values.js";
import {
  candidateTypes,
  MISFIT,
  type PgKind,
  type PgType,
  parseOverride,
  pgTypeName,
  toPgValue,
} from "./postgres-types.js";

/** Types in which two values are equal only when the SQLite values they came from are (json has no equality at all). */
const KEY_SAFE = new Set<PgKind>([
  "smallint",
  "integer",
  "bigint",
  "double precision",
  "boolean",
  "date",
  "text",
  "varchar",
  "bytea",
  "any",
]);
const KEY_FALLBACK: PgType[] = [{ kind: "text" }, { kind: "bigint" }, { kind: "any" }];

/** Overrides by `overrideKey(table, column)`. */
export type PgOverrides = ReadonlyMap<string, PgType>;

export interface Fallback {
  table: string;
  column: string;
  /** The declared SQLite type. */
  declared: string;
  /** The type its declaration maps to. */
  mapped: string;
  /** The type the column was created with. */
  type: string;
  /** The first value the mapped type could not hold. */
  value: string;
}

export function overrideKey(table: string, column: string): string {
  return JSON.stringify([table, column]);
}

/** `{ "table.column": "TYPE" }` checked against the grammar; an InvalidArgumentError otherwise. */
export function parseOverrides(spec: unknown): Map<string, PgType> {
  const out = new Map<string, PgType>();
  if (spec === undefined) return out;
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    throw new InvalidArgumentError("pgTypes", 'must be an object like { "table.column": "TYPE" }');
  }
  for (const [k, v] of Object.entries(spec)) {
    if (typeof v !== "string")
      throw new InvalidArgumentError("pgTypes", `${JSON.stringify(k)} needs a type name`);
    try {
      const o = parseOverride(`${k}=${v}`);
      out.set(overrideKey(o.table, o.column), o.type);
    } catch (err) {
      throw new InvalidArgumentError("pg-type", (err as Error).message);
    }
  }
  return out;
}

/** The overrides in a canonical text, for the push's shape (a changed override means a new full push). */
export function overridesText(o: PgOverrides): string {
  return JSON.stringify([...o].map(([k, t]) => [k, pgTypeName(t)]).sort());
}

/** Refuses overrides that name no pushed column: a typo must not be ignored. */
export function checkOverrides(o: PgOverrides, tables: TableSchema[]): void {
  const known = new Set(tables.flatMap((t) => t.columns.map((c) => overrideKey(t.name, c.name))));
  for (const k of o.keys()) {
    if (!known.has(k)) {
      const [table, column] = JSON.parse(k) as [string, string];
      throw new InvalidArgumentError("pg-type", `${table}.${column} is not a column of a pushed table`);
    }
  }
}

export function planPgTypes(
  tables: TableSchema[],
  rows: (t: TableSchema) => Iterable<SqlValue[]>,
  overrides: PgOverrides,
): { tables: TableSchema[]; fallbacks: Fallback[] } {
  const fallbacks: Fallback[] = [];
  const planned = tables.map((t) => {
    const fixed = t.columns.map((c) => overrides.get(overrideKey(t.name, c.name)));
    const keys = new Set(t.key);
    const candidates = t.columns.map((c, i) => {
      if (fixed[i]) return [fixed[i]];
      const all = candidateTypes(c);
      return keys.has(c.name) && !KEY_SAFE.has(all[0]!.kind) ? KEY_FALLBACK : all;
    });
    const chosen = choose(t, rows, candidates);
    return {
      ...t,
      columns: t.columns.map((c, i) => {
        const pick = chosen[i]!;
        if (pick.type === null) throw noType(t, c.name, candidates[i]!, fixed[i] !== undefined, pick.misfit);
        if (pick.type !== candidates[i]![0]) {
          fallbacks.push({
            table: t.name,
            column: c.name,
            declared: c.declared ?? "",
            mapped: pgTypeName(candidates[i]![0]!),
            type: pgTypeName(pick.type),
            value: `${typeName(pick.misfit).toUpperCase()} ${describeValue(pick.misfit)}`,
          });
        }
        return { ...c, pg: pgTypeName(pick.type) };
      }),
    };
  });
  return { tables: planned, fallbacks };
}

interface Pick {
  type: PgType | null;
  /** The first value the first candidate refused. */
  misfit: SqlValue;
}

function choose(
  t: TableSchema,
  rows: (t: TableSchema) => Iterable<SqlValue[]>,
  candidates: PgType[][],
): Pick[] {
  const picks: Pick[] = candidates.map((c) => ({ type: c[0]!, misfit: null }));
  const failed = new Set<number>();
  for (const row of rows(t)) {
    for (let i = 0; i < row.length; i++) {
      if (failed.has(i) || row[i] === null) continue;
      if (!fits(row[i]!, candidates[i]![0]!)) {
        failed.add(i);
        picks[i]!.misfit = row[i]!;
      }
    }
  }
  if (failed.size === 0) return picks;
  // Second pass, only for the columns whose first candidate failed: the first that holds every value.
  const alive = new Map([...failed].map((i) => [i, candidates[i]!.map((_, j) => j > 0)]));
  for (const row of rows(t)) {
    for (const [i, ok] of alive) {
      const v = row[i]!;
      if (v === null) continue;
      for (let j = 1; j < ok.length; j++) {
        if (!ok[j] || fits(v, candidates[i]![j]!)) continue;
        ok[j] = false;
        // When nothing holds the column, the message shows the value the last candidate refused.
        if (j === ok.length - 1) picks[i]!.misfit = v;
      }
    }
  }
  for (const [i, ok] of alive) {
    const j = ok.indexOf(true);
    picks[i]!.type = j < 0 ? null : candidates[i]![j]!;
  }
  return picks;
}

/** `any` holds all but text with U+0000: checked without building its JSON. */
function fits(v: SqlValue, t: PgType): boolean {
  if (t.kind === "any") return !(typeof v === "string" && v.includes("\u0000"));
  return toPgValue(v, t) !== MISFIT;
}

function noType(
  t: TableSchema,
  column: string,
  types: PgType[],
  override: boolean,
  v: SqlValue,
): RemoteError {
  const where = `column ${JSON.stringify(column)} of table ${JSON.stringify(t.name)}`;
  const value = `the ${typeName(v).toUpperCase()} value ${describeValue(v)}`;
  const name = pgTypeName(types[0]!);
  return new RemoteError(
    override
      ? `${where} has ${value}, which ${name} (chosen with --pg-type ${t.name}.${column}=${name}) cannot hold; fix the value or choose another type`
      : `${where} has ${value}, which no PostgreSQL type holds (PostgreSQL cannot store U+0000 in text); fix the value`,
    DATA_REFUSED,
  );
}
