/**
 * PostgresTarget: `postgres://user:password@host:port/db[?schema=NAME]`.
 *
 * Contract: tables live in `schema` (default public, created when missing).
 * A payload is one transaction: claim the sync key in the history table
 * (nothing back: already applied, roll back, "duplicate"), the statements,
 * the pruning, COMMIT. SQLite values are converted by the column's mapped
 * type (docs/architecture.md, "Remote push"); a value that does not fit —
 * TEXT in a bigint column, U+0000 in text, which PostgreSQL cannot store —
 * fails the payload with an error naming table and column, and nothing of it
 * is applied. A connection that fails is dropped and made again next time.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { InvalidArgumentError } from "../errors.js";
import type { ColumnSchema, Payload, TableSchema } from "./payload.js";
import {
  columnType,
  historySql,
  type Renderer,
  renderPayload,
  type Statement,
  unnestUpsertSql,
} from "./sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "./target.js";
import { quoteIdent, storageClass, type Value } from "./values.js";

type PgParam = string | number | Buffer | null;

export class PostgresTarget implements RemoteTarget {
  readonly backend = "postgres";
  readonly id: string;
  private readonly connectionString: string;
  private readonly schema: string;
  private client: pg.Client | null = null;
  private readonly renderer: Renderer;

  constructor(url: string) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new InvalidArgumentError("target", "is not a valid postgres:// URL");
    }
    this.schema = u.searchParams.get("schema") ?? "public";
    if (this.schema === "") throw new InvalidArgumentError("target", "?schema= needs a name");
    u.searchParams.delete("schema");
    this.connectionString = u.toString();
    const shown = new URL(url);
    shown.password = "";
    this.id = shown.toString();
    const schema = this.schema;
    this.renderer = {
      dialect: "postgres",
      table: (name) => `${quoteIdent(schema)}.${quoteIdent(name)}`,
      binder() {
        const params: Value[] = [];
        return {
          params,
          bind: (v) => {
            params.push(v);
            return `$${params.length}`;
          },
        };
      },
    };
  }

  async apply(payload: Payload, keepHistory: number): Promise<ApplyOutcome> {
    const client = await this.connect();
    const h = historySql(this.renderer);
    const statements = renderPayload(payload, this.renderer);
    const types = typesOf(payload.tables);
    const keys = new Map(payload.tables.map((t) => [t.name, t.key]));
    try {
      await client.query("BEGIN");
      const claimed = await client.query(h.claim, [payload.key, payload.name, new Date(), payload.mode]);
      if (claimed.rowCount === 0) {
        await client.query("ROLLBACK");
        return "duplicate";
      }
      const schemas = new Map(payload.tables.map((t) => [t.name, t]));
      for (const s of statements) {
        const t = s.table === undefined ? undefined : schemas.get(s.table);
        if (s.kind === "upsert" && t) {
          // Rows go as one array per column (see unnestUpsertSql).
          const text = unnestUpsertSql(t, this.renderer);
          await client.query({
            name: statementName(text),
            text,
            values: columnArrays(s, types.get(t.name) ?? []),
          });
          continue;
        }
        const values = convertParams(s, types, keys);
        await client.query(
          values.length ? { name: statementName(s.sql), text: s.sql, values } : { text: s.sql },
        );
      }
      if (keepHistory > 0) await client.query(h.prune, [keepHistory]);
      await client.query("COMMIT");
      return "applied";
    } catch (err) {
      await client.query("ROLLBACK").catch(() => this.drop());
      if (err instanceof RemoteError) throw err;
      throw new RemoteError(`${this.id} refused payload ${payload.name}: ${describeError(err)}`);
    }
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({
      connectionString: this.connectionString,
      connectionTimeoutMillis: 10_000,
    });
    // An idle connection that dies must not crash the process; the next apply reconnects.
    client.on("error", () => this.drop());
    try {
      await client.connect();
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
      await client.query(historySql(this.renderer).create);
    } catch (err) {
      await client.end().catch(() => {});
      throw new RemoteError(`cannot reach ${this.id}: ${describeError(err)}`);
    }
    this.client = client;
    return client;
  }

  private drop(): void {
    const c = this.client;
    this.client = null;
    c?.end().catch(() => {});
  }
}

/** Named statements are parsed once per connection; the bulk inserts of a full push repeat one text. */
function statementName(sql: string): string {
  return `tw_${createHash("sha1").update(sql).digest("hex").slice(0, 20)}`;
}

interface Typed {
  table: string;
  column: ColumnSchema;
  type: string;
}

function typesOf(tables: TableSchema[]): Map<string, Typed[]> {
  const m = new Map<string, Typed[]>();
  for (const t of tables) {
    m.set(
      t.name,
      t.columns.map((c) => ({ table: t.name, column: c, type: columnType(c, "postgres") })),
    );
  }
  return m;
}

/** Parameters come in the order the renderer bound them: whole rows for an upsert, keys for a delete. */
function convertParams(s: Statement, types: Map<string, Typed[]>, keys: Map<string, string[]>): PgParam[] {
  if (s.params.length === 0 || s.table === undefined) return [];
  const cols = types.get(s.table) ?? [];
  const key = keys.get(s.table) ?? [];
  const order = s.kind === "delete" ? key.map((k) => cols.find((c) => c.column.name === k)!) : cols;
  return s.params.map((v, i) => toPg(v, order[i % order.length]!));
}

/** An upsert's row-major parameters as one converted array per column. */
function columnArrays(s: Statement, cols: Typed[]): PgParam[][] {
  const arrays: PgParam[][] = cols.map(() => []);
  s.params.forEach((v, i) => {
    const c = i % cols.length;
    arrays[c]!.push(toPg(v, cols[c]!));
  });
  return arrays;
}

export function toPg(v: Value, c: Typed): PgParam {
  if (v === null) return null;
  const refuse = (): never => {
    throw new RemoteError(
      `column ${JSON.stringify(c.column.name)} of table ${JSON.stringify(c.table)} is ${c.type} on PostgreSQL and cannot hold the ${storageClass(v).toUpperCase()} value ${describe(v)}`,
    );
  };
  switch (c.type) {
    case "bigint":
      if (typeof v === "bigint") return v.toString();
      if (typeof v === "number" && Number.isInteger(v)) return String(v);
      return refuse();
    case "double precision":
    case "numeric":
      if (typeof v === "bigint") return v.toString();
      if (typeof v === "number") return Number.isFinite(v) ? v : v > 0 ? "Infinity" : "-Infinity";
      return refuse();
    case "text":
      if (typeof v === "string") return v.includes("\u0000") ? refuse() : v;
      if (typeof v === "bigint" || typeof v === "number") return String(v);
      return refuse();
    default:
      if (typeof v === "string") return Buffer.from(v, "utf8");
      if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      return refuse();
  }
}

function describe(v: Value): string {
  const s =
    v instanceof Uint8Array ? `x'${Buffer.from(v).toString("hex").slice(0, 16)}'` : JSON.stringify(String(v));
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
