/**
 * LibsqlTarget: libSQL through @libsql/client — `libsql://…` (Turso, sqld;
 * `?authToken=` or LIBSQL_AUTH_TOKEN), `http(s)://…`, or `file:PATH`.
 *
 * Contract: a payload is one write transaction — claim the sync key in the
 * history table (nothing back: already applied, roll back), the statements
 * as one batch, the pruning, commit. The auth token never appears in `id`.
 */
import { resolve } from "node:path";
import { type Client, createClient, type InValue } from "@libsql/client";
import { InvalidArgumentError } from "../errors.js";
import type { Capture } from "./capture.js";
import { SqliteCapture } from "./capture-sqlite.js";
import type { Payload } from "./payload.js";
import { applyingSql, historySql, renderPayload, sqliteRenderer } from "./sql.js";
import { type ApplyOutcome, describeError, RemoteError, type RemoteTarget } from "./target.js";
import type { Value } from "./values.js";

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
    let tx: Awaited<ReturnType<Client["transaction"]>> | null = null;
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

function toArg(v: Value): InValue {
  return v;
}
