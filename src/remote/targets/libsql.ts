/**
 * LibsqlTarget: libSQL through @libsql/client — `libsql://…` (Turso, sqld;
 * `?authToken=` or LIBSQL_AUTH_TOKEN), `http(s)://…`, or `file:PATH`.
 *
 * Contract: a payload is one write transaction — claim the sync key in the
 * history table (nothing back: already applied, roll back), the statements
 * as one batch, the pruning, commit. The auth token never appears in `id`.
 */
import { resolve } from "node:path";
import type { Client, InValue } from "@libsql/client";
import { InvalidArgumentError } from "../../errors.js";
import { loadOptional } from "../../optional-deps.js";
import { quoteIdent } from "../../replica/schema.js";
import type { SqlValue } from "../../replica/values.js";
import type { Capture } from "../capture.js";
import { type CopyJob, insertSql, missingColumns, rowsPerInsert, sqliteIndexSql } from "../copy-job.js";
import type { Payload } from "../payload.js";
import {
  applyingSql,
  createTableSql,
  dropTableSql,
  historySql,
  renderPayload,
  sqliteRenderer,
} from "../sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "../target.js";
import { sqlLiteral } from "../values.js";
import { SqliteCapture } from "./sqlite-capture.js";

type Tx = Awaited<ReturnType<Client["transaction"]>>;

export class LibsqlTarget implements RemoteTarget {
  readonly backend = "libsql";
  readonly id: string;
  private readonly url: string;
  private readonly authToken: string | undefined;
  private client: Client | null = null;
  private readonly renderer = sqliteRenderer({ inlineInfinities: true });

  constructor(url: string) {
    if (url.startsWith("file:")) {
      const path = url.slice("file:".length).replace(/^\/\/(?=\/)/, "");
      if (path === "") throw new InvalidArgumentError("target", "file: needs a path, as file:PATH");
      this.url = `file:${resolve(path)}`;
      this.id = this.url;
      this.authToken = undefined;
      return;
    }
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new InvalidArgumentError("target", `is not a valid ${url.split(":")[0]}:// URL`);
    }
    this.authToken = u.searchParams.get("authToken") ?? process.env.LIBSQL_AUTH_TOKEN ?? undefined;
    u.searchParams.delete("authToken");
    u.password = "";
    this.url = u.toString();
    this.id = this.url;
  }

  async apply(payload: Payload, keepHistory: number): Promise<ApplyOutcome> {
    const client = await this.connect();
    const h = historySql(this.renderer);
    const statements = renderPayload(payload, this.renderer);
    let tx: Tx | null = null;
    try {
      tx = await client.transaction("write");
      const claimed = await tx.execute({
        sql: h.claim,
        args: [payload.key, payload.name, new Date().toISOString(), payload.mode],
      });
      if (claimed.rows.length === 0) {
        await tx.rollback();
        return "duplicate";
      }
      // The marker keeps these writes out of the target's capture; gone again at commit.
      const marker = applyingSql();
      await tx.batch([
        marker.set,
        ...statements.map((s) => ({ sql: s.sql, args: s.params.map(toArg) })),
        ...(keepHistory > 0 ? [{ sql: h.prune, args: [keepHistory] }] : []),
        marker.clear,
      ]);
      await tx.commit();
      return "applied";
    } catch (err) {
      await tx?.rollback().catch(() => {});
      throw new RemoteError(`${this.id} refused payload ${payload.name}: ${describeError(err)}`);
    } finally {
      tx?.close();
    }
  }

  async copy(job: CopyJob, keepHistory: number): Promise<ApplyOutcome> {
    const client = await this.connect();
    const r = this.renderer;
    const h = historySql(r);
    let tx: Tx | null = null;
    try {
      tx = await client.transaction("write");
      const claimed = await tx.execute({
        sql: h.claim,
        args: [job.key, job.name, new Date().toISOString(), "full"],
      });
      if (claimed.rows.length === 0) {
        await tx.rollback();
        return "duplicate";
      }
      for (const v of job.views) await tx.execute(`DROP VIEW IF EXISTS ${quoteIdent(v.name)}`);
      for (const t of job.tables) {
        await tx.batch([dropTableSql(t, r), createTableSql(t, r)]);
        await fill(tx, job, t);
      }
      const byName = new Map(job.tables.map((t) => [t.name, t]));
      for (const ix of job.indexes) {
        const missing = missingColumns(ix, byName.get(ix.table)!);
        if (missing.length > 0)
          job.warn(`index ${ix.name} is not created: ${ix.table}.${missing.join(", ")} is not pushed`);
        else
          await attempt(tx, sqliteIndexSql(ix), (why) => job.warn(`index ${ix.name} is not created: ${why}`));
      }
      for (const v of job.views)
        await attempt(tx, v.sql, (why) => job.warn(`view ${v.name} is not created: ${why}`));
      const open = tx;
      await job.afterSwap(async (sql) => void (await open.execute(sql)), job.tables, "sqlite");
      if (keepHistory > 0) await tx.execute({ sql: h.prune, args: [keepHistory] });
      await tx.commit();
      return "applied";
    } catch (err) {
      await tx?.rollback().catch(() => {});
      if (err instanceof RemoteError) throw err;
      throw new RemoteError(`${this.id} refused full push ${job.name}: ${describeError(err)}`);
    } finally {
      tx?.close();
    }
  }

  capture(): Capture {
    return new SqliteCapture({
      query: async (sql) => {
        const client = await this.connect();
        const out: unknown[][][] = [];
        for (const q of sql) out.push((await client.execute(q)).rows.map((r) => Array.from(r)));
        return out;
      },
      batch: async (sql) => {
        const client = await this.connect();
        await client.batch(sql, "write");
      },
    });
  }

  async close(): Promise<void> {
    this.client?.close();
    this.client = null;
  }

  private async connect(): Promise<Client> {
    if (this.client) return this.client;
    const { createClient } = await loadOptional(
      "@libsql/client",
      "A libSQL remote target",
      () => import("@libsql/client"),
    );
    try {
      const client = createClient({ url: this.url, authToken: this.authToken, intMode: "bigint" });
      await client.batch([historySql(this.renderer).create, applyingSql().create], "write");
      this.client = client;
      return client;
    } catch (err) {
      throw new RemoteError(`cannot reach ${this.id}: ${describeError(err)}`);
    }
  }
}

function toArg(v: SqlValue): InValue {
  return v;
}

/** The table's rows as batches of multi-row INSERTs; a row holding an infinity goes alone, the infinity as a literal. */
async function fill(tx: Tx, job: CopyJob, t: CopyJob["tables"][number]): Promise<void> {
  const per = rowsPerInsert(t.columns.length);
  const table = quoteIdent(t.name);
  const sqlFor = new Map<number, string>();
  for (const batch of job.rows(t, per * 64)) {
    const plain = batch.filter((row) => !row.some(infinite));
    const statements: Array<{ sql: string; args: InValue[] }> = [];
    for (let i = 0; i < plain.length; i += per) {
      const rows = plain.slice(i, i + per);
      let sql = sqlFor.get(rows.length);
      if (sql === undefined) {
        sql = insertSql(table, t, rows.length);
        sqlFor.set(rows.length, sql);
      }
      statements.push({ sql, args: rows.flat() as InValue[] });
    }
    for (const row of batch) {
      if (!row.some(infinite)) continue;
      const values = row.map((v) => (infinite(v) ? sqlLiteral(v) : "?"));
      statements.push({
        sql: `INSERT INTO ${table} (${t.columns.map((c) => quoteIdent(c.name)).join(", ")}) VALUES (${values.join(", ")})`,
        args: row.filter((v) => !infinite(v)) as InValue[],
      });
    }
    await tx.batch(statements);
  }
}

function infinite(v: SqlValue): boolean {
  return typeof v === "number" && !Number.isFinite(v);
}

async function attempt(tx: Tx, sql: string, refused: (why: string) => void): Promise<void> {
  await tx.execute("SAVEPOINT tw_optional");
  try {
    await tx.execute(sql);
  } catch (err) {
    await tx.execute("ROLLBACK TO tw_optional");
    refused(describeError(err));
  }
  await tx.execute("RELEASE tw_optional");
}
