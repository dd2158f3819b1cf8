/**
 * Payload: one unit of work for a remote target — the tables it touches,
 * its mutations (upserts of whole rows, deletes by key) and, for the first
 * payload of a full push, the tables to drop and create.
 *
 * Contract: `sync_key` is the sha256 of a canonical form of the mutations:
 * each mutation is one line of tagged values with its columns named, the
 * lines are sorted, so the key does not depend on statement order or on the
 * SQL any dialect renders. The canonical form also holds the payload's
 * scope — the source node and log range it covers, or the full push and
 * chunk it belongs to — because the same mutations can rightly be needed
 * twice (x=1, then x=2, then x=1 again) and must not be mistaken for a
 * replay. `name` is a ULID, so history rows sort by time. A payload
 * serialises to JSON exactly (storage classes kept) for the outbox.
 */
import { createHash } from "node:crypto";
import { ulid } from "ulid";
import type { SqlValue } from "../replica/values.js";
import { decodeValue, type Encoded, encodeValue } from "./values.js";

export type Affinity = "INTEGER" | "REAL" | "TEXT" | "BLOB" | "NUMERIC";

export interface ColumnSchema {
  name: string;
  affinity: Affinity;
  /** True when the column has no declared type at all (SQLite's BLOB affinity, "any"). */
  untyped: boolean;
  /** The declared type as SQLite reports it: read to choose a target type, never copied into SQL. */
  declared?: string;
  /** The table checks the column with json_valid() (Django's JSONField is "text" with that CHECK). */
  json?: boolean;
  /** In a full push's reset: the PostgreSQL type chosen from the data (targets/postgres-types.ts grammar). */
  pg?: string;
}

export interface TableSchema {
  name: string;
  /** Key columns, in key order. */
  key: string[];
  /** Every column, key columns included, in table order. */
  columns: ColumnSchema[];
}

export type Mutation =
  | { op: "upsert"; table: string /** In the table schema's column order. */; row: SqlValue[] }
  | { op: "delete"; table: string /** In key order. */; key: SqlValue[] };

export type SyncMode = "full" | "incremental";

export interface Payload {
  name: string;
  key: string;
  mode: SyncMode;
  scope: string;
  /** Drop and create these tables before the mutations (a full push's first payload). */
  reset: TableSchema[];
  tables: TableSchema[];
  mutations: Mutation[];
  /** The source cursor the target has acknowledged once this payload is applied; null mid full push. */
  cursor: string | null;
  /**
   * A full push's decision (full-push.ts): no rows; `reset` names the tables
   * whose rows are read from the local file when it is sent.
   */
  copy?: boolean;
}

export function makePayload(p: Omit<Payload, "name" | "key">): Payload {
  return { ...p, name: ulid(), key: syncKey(p) };
}

export function syncKey(p: Pick<Payload, "mode" | "scope" | "reset" | "tables" | "mutations">): string {
  const byName = new Map(p.tables.map((t) => [t.name, t]));
  const lines = p.mutations.map((m) => {
    const t = byName.get(m.table);
    if (!t) throw new Error(`payload mutates table ${JSON.stringify(m.table)} without its schema`);
    if (m.op === "delete") {
      return JSON.stringify([m.table, "delete", t.key.map((k, i) => [k, encodeValue(m.key[i] ?? null)])]);
    }
    const cols = t.columns
      .map((c, i) => [c.name, encodeValue(m.row[i] ?? null)] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return JSON.stringify([m.table, "upsert", cols]);
  });
  lines.sort();
  const head = JSON.stringify([p.mode, p.scope, p.reset.map(canonicalSchema).sort()]);
  const hash = createHash("sha256").update(head);
  for (const l of lines) hash.update("\n").update(l);
  return hash.digest("hex");
}

function canonicalSchema(t: TableSchema): string {
  return JSON.stringify([
    t.name,
    t.key,
    t.columns.map((c) => [c.name, c.affinity, c.untyped, c.declared ?? null, c.json ?? false, c.pg ?? null]),
  ]);
}

interface Serialized {
  /** 2 for a copy decision: a reader of version 1 must not take it for an empty reset and drop the tables. */
  v: 1 | 2;
  name: string;
  key: string;
  mode: SyncMode;
  scope: string;
  reset: TableSchema[];
  tables: TableSchema[];
  mutations: Array<["u" | "d", string, Encoded[]]>;
  cursor: string | null;
}

export function serializePayload(p: Payload): string {
  const doc: Serialized = {
    v: p.copy ? 2 : 1,
    name: p.name,
    key: p.key,
    mode: p.mode,
    scope: p.scope,
    reset: p.reset,
    tables: p.tables,
    mutations: p.mutations.map((m) =>
      m.op === "upsert" ? ["u", m.table, m.row.map(encodeValue)] : ["d", m.table, m.key.map(encodeValue)],
    ),
    cursor: p.cursor,
  };
  return JSON.stringify(doc);
}

export function parsePayload(text: string): Payload {
  const doc = JSON.parse(text) as Serialized;
  if (doc?.v !== 1 && doc?.v !== 2) throw new Error("not a remote payload (version 1 or 2)");
  return {
    ...(doc.v === 2 ? { copy: true } : {}),
    name: doc.name,
    key: doc.key,
    mode: doc.mode,
    scope: doc.scope,
    reset: doc.reset,
    tables: doc.tables,
    mutations: doc.mutations.map(([op, table, values]) =>
      op === "u"
        ? { op: "upsert", table, row: values.map(decodeValue) }
        : { op: "delete", table, key: values.map(decodeValue) },
    ),
    cursor: doc.cursor,
  };
}
