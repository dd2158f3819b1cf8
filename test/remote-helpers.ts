/**
 * Helpers for the remote push tests: a source replica with a workload of
 * inserts, updates and deletes, and row dumps of the source and of each kind
 * of target in one comparable form (each value tagged with its storage class).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import Database from "better-sqlite3";
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { Replica } from "../src/index.js";
import { encodeValue } from "../src/remote/values.js";
import { fromWire as fromWireValue, type SqlValue } from "../src/replica/values.js";
import { serviceReachable } from "./helpers.js";

export const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

export const SCHEMA = `
  CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, data BLOB);
  CREATE TABLE tags (item INTEGER NOT NULL, tag TEXT NOT NULL, note TEXT, PRIMARY KEY (item, tag));
`;

/** [table, key columns, every column] in a fixed order for dumps. */
export const TABLES = [
  { name: "items", key: ["id"], columns: ["id", "name", "qty", "price", "data"] },
  { name: "tags", key: ["item", "tag"], columns: ["item", "tag", "note"] },
] as const;

export function sourceReplica(dir: string): Replica {
  const r = Replica.open(join(dir, "source.db"));
  r.store.db.exec(SCHEMA);
  r.track("items");
  r.track("tags");
  return r;
}

export type Op =
  | {
      kind: "put";
      id: number;
      name: string | null;
      qty: bigint | null;
      price: number | null;
      data: Uint8Array | null;
    }
  | { kind: "set"; id: number; name: string | null }
  | { kind: "del"; id: number }
  | { kind: "tag"; item: number; tag: string; note: string | null }
  | { kind: "untag"; item: number; tag: string };

const id = fc.integer({ min: 1, max: 25 });
const tag = fc.constantFrom("a", "b", "it's", "ü", "NULL", '{x,"y"}', "back\\slash");
// Quarter steps print the same in every SQLite version, so dumps compare across libSQL and D1 too.
const price = fc.option(fc.integer({ min: -4000, max: 4000 }).map((n) => n / 4));
const text = fc.option(fc.string({ maxLength: 8 }).map((s) => s.replaceAll("\u0000", "")));

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("put" as const),
    id,
    name: text,
    qty: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
    price,
    data: fc.option(fc.uint8Array({ maxLength: 6 })),
  }),
  fc.record({ kind: fc.constant("set" as const), id, name: text }),
  fc.record({ kind: fc.constant("del" as const), id }),
  fc.record({ kind: fc.constant("tag" as const), item: id, tag, note: text }),
  fc.record({ kind: fc.constant("untag" as const), item: id, tag }),
);

/** Workloads: rounds of operations, a push after each round. */
export const workloadArb = fc.array(fc.array(opArb, { maxLength: 25 }), { minLength: 1, maxLength: 4 });

export function runOps(db: Database.Database, ops: Op[]): void {
  const st = {
    put: db.prepare(
      `INSERT INTO items (id, name, qty, price, data) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty, price = excluded.price, data = excluded.data`,
    ),
    set: db.prepare("UPDATE items SET name = ? WHERE id = ?"),
    del: db.prepare("DELETE FROM items WHERE id = ?"),
    tag: db.prepare("INSERT INTO tags VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET note = excluded.note"),
    untag: db.prepare("DELETE FROM tags WHERE item = ? AND tag = ?"),
  };
  db.transaction(() => {
    for (const o of ops) {
      if (o.kind === "put") st.put.run(o.id, o.name, o.qty, o.price, o.data);
      else if (o.kind === "set") st.set.run(o.name, o.id);
      else if (o.kind === "del") st.del.run(o.id);
      else if (o.kind === "tag") st.tag.run(o.item, o.tag, o.note);
      else st.untag.run(o.item, o.tag);
    }
  })();
}

export type Dump = Record<string, string[]>;

function line(values: SqlValue[]): string {
  return JSON.stringify(values.map(encodeValue));
}

function finish(rows: Record<string, string[]>): Dump {
  for (const k of Object.keys(rows)) rows[k]!.sort();
  return rows;
}

/** Any better-sqlite3 handle: the source, or a sqlite: target. */
export function dumpSqlite(db: Database.Database): Dump {
  const out: Dump = {};
  for (const t of TABLES) {
    const rows = db
      .prepare(`SELECT ${t.columns.map((c) => `"${c}"`).join(", ")} FROM "${t.name}"`)
      .raw(true)
      .safeIntegers(true)
      .all() as SqlValue[][];
    out[t.name] = rows.map(line);
  }
  return finish(out);
}

export function dumpSqliteFile(path: string): Dump {
  const db = new Database(path, { readonly: true });
  try {
    return dumpSqlite(db);
  } finally {
    db.close();
  }
}

export async function dumpLibsql(url: string): Promise<Dump> {
  const c = createClient({ url, intMode: "bigint" });
  try {
    const out: Dump = {};
    for (const t of TABLES) {
      const rs = await c.execute(`SELECT ${t.columns.map((x) => `"${x}"`).join(", ")} FROM "${t.name}"`);
      out[t.name] = rs.rows.map((r) =>
        line(
          t.columns.map((_, i) => {
            const v = r[i];
            return v instanceof ArrayBuffer ? Buffer.from(v) : (v as SqlValue);
          }),
        ),
      );
    }
    return finish(out);
  } finally {
    c.close();
  }
}

/** PostgreSQL values back in SQLite's classes: bigint as INTEGER, double as REAL, bytea as BLOB. */
export async function dumpPostgres(client: pg.Client, schema: string): Promise<Dump> {
  const out: Dump = {};
  for (const t of TABLES) {
    const rs = await client.query({
      text: `SELECT ${t.columns.map((x) => `"${x}"`).join(", ")} FROM "${schema}"."${t.name}"`,
      rowMode: "array",
    });
    const types = rs.fields.map((f) => f.dataTypeID);
    out[t.name] = (rs.rows as unknown[][]).map((r) =>
      line(
        r.map((v, i) => {
          if (v === null) return null;
          if (types[i] === 20) return BigInt(v as string);
          if (types[i] === 701) return Number(v);
          return v as SqlValue;
        }),
      ),
    );
  }
  return finish(out);
}

/** The same dump as `dumpSqlite` computes, from rows printed by SQL in both places (for D1, whose JSON loses classes). */
export const QUOTED = TABLES.map(
  (t) =>
    `SELECT '${t.name}' AS t, json_array(${t.columns.map((c) => `typeof("${c}"), quote("${c}")`).join(", ")}) AS r FROM "${t.name}"`,
).join(" UNION ALL ");

export function quotedDump(rows: Array<{ t: string; r: string }>): Dump {
  const out: Dump = Object.fromEntries(TABLES.map((t) => [t.name, [] as string[]]));
  for (const row of rows) out[row.t]!.push(row.r);
  return finish(out);
}

export function dumpQuotedSqlite(db: Database.Database): Dump {
  return quotedDump(db.prepare(QUOTED).all() as Array<{ t: string; r: string }>);
}

/** A wrangler project with one local D1 database, DB. */
export function wranglerProject(dir: string): string {
  const config = join(dir, "wrangler.toml");
  writeFileSync(
    config,
    `name = "tidewire-test"\ncompatibility_date = "2024-01-01"\n\n[[d1_databases]]\nbinding = "DB"\ndatabase_name = "DB"\ndatabase_id = "00000000-0000-0000-0000-000000000000"\n`,
  );
  return config;
}

export function wranglerQuery(config: string, sql: string): unknown[] {
  const out = execFileSync(
    "npx",
    ["wrangler", "d1", "execute", "DB", "--local", "--config", config, "--command", sql, "--json"],
    { encoding: "utf8", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
  return (JSON.parse(out) as Array<{ results: unknown[] }>)[0]!.results;
}

/** Whether PostgreSQL answers; under CI=true an unreachable server is a failure, not a skip. */
export function postgresReachable(): Promise<boolean> {
  return serviceReachable("PostgreSQL", DATABASE_URL, async () => {
    const c = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3000 });
    await c.connect();
    await c.end();
  });
}

/** A column on the PostgreSQL side: its type as format_type() prints it, "any" for tidewire's any columns. */
export async function pgColumnTypes(
  client: pg.Client,
  schema: string,
  table: string,
): Promise<Record<string, string>> {
  const rs = await client.query<{ name: string; type: string; note: string | null }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, col_description(a.attrelid, a.attnum) AS note
     FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [`"${schema}"."${table}"`],
  );
  return Object.fromEntries(
    rs.rows.map((r) => [r.name, r.note?.startsWith("tidewire:any") && r.type === "jsonb" ? "any" : r.type]),
  );
}

/**
 * Every row of a table on both sides, value by value: PostgreSQL's text
 * output of each column and the SQLite value, each brought to one form by
 * what the PostgreSQL type implies and nothing more (a date's output form, a
 * boolean for 0/1, a decimal's trailing zeros, a uuid's dashes, an instant's
 * zone). `any` columns are decoded from the wire form and compared with their
 * storage class. Returns the two sides, for `expect(a).toEqual(b)`.
 */
export async function pgAndSqlite(
  client: pg.Client,
  schema: string,
  db: Database.Database,
  table: string,
  key: string,
): Promise<{ pg: string[][]; sqlite: string[][] }> {
  const types = await pgColumnTypes(client, schema, table);
  const cols = Object.keys(types);
  const q = (c: string) => `"${c.replaceAll('"', '""')}"`;
  const pgRows = await client.query({
    // Ordered by the table's column, not the text output column of the same name.
    text: `SELECT ${cols.map((c) => `t.${q(c)}::text`).join(", ")} FROM "${schema}".${q(table)} t ORDER BY t.${q(key)}`,
    rowMode: "array",
  });
  const src = db
    .prepare(`SELECT ${cols.map(q).join(", ")} FROM ${q(table)} ORDER BY ${q(key)}`)
    .raw(true)
    .safeIntegers(true)
    .all() as SqlValue[][];
  // Sorted by their compared form: a key of any type orders differently on the two sides.
  const sorted = (rows: string[][]) =>
    rows
      .map((r) => [JSON.stringify(r), r] as const)
      .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
      .map((x) => x[1]);
  return {
    pg: sorted(
      (pgRows.rows as Array<Array<string | null>>).map((r) => r.map((v, i) => pgForm(v, types[cols[i]!]!))),
    ),
    sqlite: sorted(src.map((r) => r.map((v, i) => sqliteForm(v, types[cols[i]!]!)))),
  };
}

/** A PostgreSQL value's text output in the form `sqliteForm` gives the SQLite value it came from. */
export function pgForm(v: string | null, type: string): string {
  if (v === null) return "null";
  if (type === "any") return line([fromWireValue(JSON.parse(v))]);
  if (type === "boolean") return v === "true" ? "1" : "0";
  if (type === "bytea") return v.slice(2);
  if (type.startsWith("numeric")) return decimal(v);
  if (type === "double precision") return String(Number(v));
  if (type.startsWith("timestamp")) return instant(v);
  if (type.startsWith("time")) return clock(v);
  if (type === "uuid") return v.replaceAll("-", "");
  if (type === "jsonb") return sortedJson(JSON.parse(v));
  return v;
}

export function sqliteForm(v: SqlValue, type: string): string {
  if (v === null) return "null";
  if (type === "any") return line([v]);
  if (type === "bytea") return Buffer.from(v as Uint8Array).toString("hex");
  if (type.startsWith("numeric")) return decimal(String(v));
  if (type === "double precision") return String(Number(v));
  if (type.startsWith("timestamp")) return instant(String(v));
  if (type.startsWith("time")) return clock(String(v));
  if (type === "uuid") return String(v).replaceAll("-", "").toLowerCase();
  if (type === "jsonb") return sortedJson(JSON.parse(String(v)));
  return String(v);
}

/** JSON with object keys sorted: jsonb keeps keys in its own order. */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${sortedJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** A decimal as sign, significant digits and exponent: 12.50, 1.25e1 and 12.5 are one form. */
function decimal(s: string): string {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m) return s;
  let digits = `${m[2]}${m[3] ?? ""}`;
  let point = m[2]!.length + Number(m[4] ?? 0);
  while (digits.startsWith("0")) {
    digits = digits.slice(1);
    point--;
  }
  digits = digits.replace(/0+$/, "");
  return digits === "" ? "0" : `${m[1] === "-" ? "-" : ""}0.${digits}e${point}`;
}

/** HH:MM:SS with the fraction's trailing zeros dropped, as PostgreSQL prints a time. */
function clock(s: string): string {
  const [hm, frac] = s.split(".");
  const full = hm!.length === 5 ? `${hm}:00` : hm!;
  const f = (frac ?? "").replace(/0+$/, "");
  return f ? `${full}.${f}` : full;
}

/** A timestamp as "date time[.fraction]" plus, when it has a zone, the instant in UTC seconds. */
function instant(s: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})[T ]([\d:]+)(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)?$/.exec(s);
  if (!m) return `unparsed ${s}`;
  const frac = (m[3] ?? "").replace(/0+$/, "");
  const time = clock(m[2]!);
  if (m[4] === undefined) return `${m[1]} ${time}${frac ? `.${frac}` : ""}`;
  const zone =
    m[4] === "Z"
      ? "+00:00"
      : m[4].length === 3
        ? `${m[4]}:00`
        : m[4].replace(/^([+-]\d{2})(\d{2})$/, "$1:$2");
  return `${Date.parse(`${m[1]}T${time}${zone}`) / 1000}${frac ? `.${frac}` : ""}Z`;
}

/**
 * A PostgreSQL connection for one test file and the schemas its tests make,
 * dropped after the file. `reachable()` is false when there is no server
 * (under CI=true that check fails instead of skipping).
 */
export function usePostgres(prefix: string): {
  reachable: () => boolean;
  admin: () => pg.Client;
  newSchema: () => string;
} {
  let up = false;
  let client: pg.Client | null = null;
  const made: string[] = [];
  beforeAll(async () => {
    up = await postgresReachable();
    if (up) {
      client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
    }
  });
  afterAll(async () => {
    for (const s of made) await client?.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await client?.end();
  });
  return {
    reachable: () => up,
    admin: () => {
      if (!client) throw new Error("PostgreSQL is not connected");
      return client;
    },
    newSchema: () => {
      const s = `${prefix}${randomBytes(6).toString("hex")}`;
      made.push(s);
      return s;
    },
  };
}

/** A SQLite target's sync history, oldest first. */
export function historyRows(path: string): Array<{ sync_key: string; sync_mode: string }> {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare("SELECT sync_key, sync_mode FROM _tidewire_sync_history ORDER BY sync_name")
      .all() as Array<{
      sync_key: string;
      sync_mode: string;
    }>;
  } finally {
    db.close();
  }
}

/** A replica in `dir` with `ddl` run, every table it made tracked, then `fill` run. */
export function trackedReplica(dir: string, ddl: string, fill: string): Replica {
  const r = Replica.open(join(dir, "source.db"));
  r.store.db.exec(ddl);
  const tables = r.store.db
    .prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'tw\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite_%'",
    )
    .pluck()
    .all() as string[];
  for (const t of tables) r.track(t);
  r.store.db.exec(fill);
  return r;
}

/** Items from..to, and a tag on every other one, as one transaction each. */
export function addRows(db: Database.Database, from: number, to: number): void {
  const n = "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)";
  db.prepare(
    `${n} INSERT INTO items (id, name, qty, price, data) SELECT i, 'item ' || i, i % 100, i / 4.0, NULL FROM n`,
  ).run(from, to);
  db.prepare(
    `${n} INSERT INTO tags (item, tag, note) SELECT i, 't' || (i % 3), NULL FROM n WHERE i % 2 = 0`,
  ).run(from, to);
}
