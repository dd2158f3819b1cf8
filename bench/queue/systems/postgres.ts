/** A small Postgres helper for the Postgres peers: reachability, schema drops, counts. */
import { loadPeer, Skip } from "../common.js";

export interface PgClient {
  connect(): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}

interface PgModule {
  default: { Client: new (opts: { connectionString: string; connectionTimeoutMillis: number }) => PgClient };
}

/** Connects to `url`, or throws Skip saying why Postgres cannot be used. */
export async function connectPostgres(url: string): Promise<PgClient> {
  const { default: pg } = await loadPeer<PgModule>("pg");
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
  } catch (err) {
    await client.end().catch(() => {});
    throw new Skip(`Postgres unreachable at ${url}: ${(err as Error).message}`);
  }
  return client;
}

/** Schema names are fixed identifiers of this benchmark, never user input. */
export async function dropSchema(client: PgClient, schema: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`bad schema name ${schema}`);
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}

/**
 * Flushes Postgres's dirty buffers now, untimed, so the next system measured
 * does not pay for this one's writes when the checkpointer would have run.
 */
export async function checkpoint(client: PgClient): Promise<void> {
  await client.query("CHECKPOINT").catch(() => {
    /* needs superuser or pg_checkpoint; without it the next system may simply share the I/O */
  });
}

export async function count(client: PgClient, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await client.query(sql, params);
  return Number(rows[0]?.n ?? 0);
}
