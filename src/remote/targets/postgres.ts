/**
 * PostgresTarget: `postgres://user:password@host:port/db[?schema=NAME]`.
 *
 * Contract: tables live in `schema` (default public, created when missing).
 * A payload is one transaction: claim the sync key in the history table
 * (nothing back: already applied, roll back, "duplicate"), the statements,
 * the pruning, COMMIT. Each value is converted by its column's type as the
 * target's catalog has it (postgres-types.ts), so an incremental payload needs no
 * knowledge of the types a full push chose. A value the type cannot hold
 * exactly, a table or column missing on the target, or a data error from
 * PostgreSQL itself (SQLSTATE class 22, a NULL key) fails the payload with a
 * DATA_REFUSED error naming table, column and value, and nothing of it is
 * applied. A full push goes by COPY into a shadow schema, swapped in one
 * transaction (postgres-copy.ts). A connection that fails is dropped and made again next time.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { InvalidArgumentError } from "../../errors.js";
import { loadOptional } from "../../optional-deps.js";
import { quoteIdent } from "../../replica/schema.js";
import type { SqlValue } from "../../replica/values.js";
import type { Capture } from "../capture.js";
import type { CopyJob } from "../copy-job.js";
import type { Payload, TableSchema } from "../payload.js";
import { historySql, type Renderer, renderPayload, type Statement, unnestUpsertSql } from "../sql.js";
import { type ApplyOutcome, DATA_REFUSED, describeError, RemoteError, type RemoteTarget } from "../target.js";
import { PostgresCapture } from "./postgres-capture.js";
import { convert, pgCopy } from "./postgres-copy.js";
import { ANY_COMMENT, type PgParam, type PgType, parsePgType } from "./postgres-types.js";

/** A table's columns and their types on the target, as its catalog says. */
const CATALOG = `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
  col_description(a.attrelid, a.attnum) AS note
  FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`;

export class PostgresTarget implements RemoteTarget {
  readonly backend = "postgres";
  readonly id: string;
  private readonly connectionString: string;
  private readonly schema: string;
  private client: pg.Client | null = null;
  private readonly renderer: Renderer;
  /** Per table, its columns' types on the target; read once per connection, forgotten on reset or failure. */
  private readonly catalog = new Map<string, Map<string, PgType>>();

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
        const params: SqlValue[] = [];
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
    try {
      await client.query("BEGIN");
      // Keeps these writes out of the target's capture (../targets/postgres-capture.ts); gone at COMMIT.
      await client.query("SET LOCAL tidewire.applying = 'on'");
      const claimed = await client.query(h.claim, [payload.key, payload.name, new Date(), payload.mode]);
      if (claimed.rowCount === 0) {
        await client.query("ROLLBACK");
        return "duplicate";
      }
      for (const t of payload.reset) this.catalog.delete(t.name);
      const schemas = new Map(payload.tables.map((t) => [t.name, t]));
      for (const s of statements) {
        const t = s.table === undefined ? undefined : schemas.get(s.table);
        if (!t) {
          await client.query(s.sql);
          continue;
        }
        const types = await this.columnTypes(client, t);
        if (s.kind === "upsert") {
          // Rows go as one array per column (see unnestUpsertSql).
          const text = unnestUpsertSql(t, this.renderer, types);
          await client.query({ name: statementName(text), text, values: columnArrays(t, s, types) });
        } else {
          const keyTypes = t.key.map((k) => types[t.columns.findIndex((c) => c.name === k)]!);
          const values = s.params.map((v, i) =>
            convert(t, t.key[i % t.key.length]!, keyTypes[i % t.key.length]!, v),
          );
          await client.query({ name: statementName(s.sql), text: s.sql, values });
        }
      }
      if (keepHistory > 0) await client.query(h.prune, [keepHistory]);
      await client.query("COMMIT");
      return "applied";
    } catch (err) {
      this.catalog.clear();
      await client.query("ROLLBACK").catch(() => this.drop());
      throw this.refusal(`payload ${payload.name}`, err);
    }
  }

  /** A full push by COPY into a shadow schema, swapped in one transaction (postgres-copy.ts). */
  async copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome> {
    const client = await this.connect();
    this.catalog.clear();
    try {
      return await pgCopy(client, { schema: this.schema, renderer: this.renderer }, job, keepHistory);
    } catch (err) {
      await client.query("ROLLBACK").catch(() => this.drop());
      throw this.refusal(`full push ${job.name}`, err);
    }
  }

  /** A failure as a RemoteError; a data error from PostgreSQL itself is DATA_REFUSED. */
  private refusal(what: string, err: unknown): RemoteError {
    if (err instanceof RemoteError) return err;
    const code = (err as { code?: unknown }).code;
    const data = typeof code === "string" && (code.startsWith("22") || code === "23502");
    return new RemoteError(
      `${this.id} refused ${what}: ${describeError(err)}`,
      data ? DATA_REFUSED : undefined,
    );
  }

  /** The target's type of each of the table's columns, in the schema's order. */
  private async columnTypes(client: pg.Client, t: TableSchema): Promise<PgType[]> {
    let types = this.catalog.get(t.name);
    if (!types) {
      const rs = await client.query<{ name: string; type: string; note: string | null }>(CATALOG, [
        this.renderer.table(t.name),
      ]);
      if (rs.rows.length === 0) {
        throw new RemoteError(`table ${JSON.stringify(t.name)} is missing on ${this.id}`, DATA_REFUSED);
      }
      types = new Map();
      for (const r of rs.rows) {
        const type =
          r.type === "jsonb" && r.note === ANY_COMMENT ? ({ kind: "any" } as const) : parsePgType(r.type);
        if (!type) {
          throw new RemoteError(
            `column ${JSON.stringify(r.name)} of table ${JSON.stringify(t.name)} is ${r.type} on ${this.id}, a type tidewire does not write`,
            DATA_REFUSED,
          );
        }
        types.set(r.name, type);
      }
      this.catalog.set(t.name, types);
    }
    const known = types;
    return t.columns.map((c) => {
      const type = known.get(c.name);
      if (!type) {
        throw new RemoteError(
          `table ${JSON.stringify(t.name)} on ${this.id} has no column ${JSON.stringify(c.name)}`,
          DATA_REFUSED,
        );
      }
      return type;
    });
  }

  capture(): Capture {
    return new PostgresCapture(
      {
        query: async (text, values) => {
          const client = await this.connect();
          try {
            return await client.query({ text, values, rowMode: "array" });
          } catch (err) {
            throw new RemoteError(`${this.id}: ${describeError(err)}`);
          }
        },
        batch: async (statements) => {
          const client = await this.connect();
          try {
            await client.query("BEGIN");
            for (const s of statements) await client.query(s);
            await client.query("COMMIT");
          } catch (err) {
            await client.query("ROLLBACK").catch(() => this.drop());
            throw new RemoteError(`cannot install capture on ${this.id}: ${describeError(err)}`);
          }
        },
      },
      this.schema,
    );
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const { default: driver } = await loadOptional("pg", "A PostgreSQL remote target", () => import("pg"));
    const client = new driver.Client({
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

/** An upsert's row-major parameters as one converted array per column. */
function columnArrays(t: TableSchema, s: Statement, types: PgType[]): PgParam[][] {
  const n = types.length;
  const arrays: PgParam[][] = types.map(() => []);
  s.params.forEach((v, i) => {
    const c = i % n;
    arrays[c]!.push(convert(t, t.columns[c]!.name, types[c]!, v));
  });
  return arrays;
}
