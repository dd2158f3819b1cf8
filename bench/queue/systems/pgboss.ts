/**
 * pg-boss 10.4.2 on Postgres (12.x needs Node >= 22.12). v10 needs a queue made
 * with `createQueue`; `insert` is its bulk add. A v10 worker is one polling
 * loop that fetches a batch and sleeps `pollingIntervalSeconds` (at least
 * 0.5 s, the value used here) after each fetch, so concurrency C means C
 * `work()` loops, each fetching batches of 100. Completions are sent without
 * waiting, so processing ends when no job of the queue is left unfinished in
 * its table. Its schema is dedicated to this benchmark and dropped before each
 * run and after it.
 */
import {
  type BenchConfig,
  countTo,
  loadPeer,
  noop,
  type Payload,
  type System,
  waitUntil,
} from "../common.js";
import { checkpoint, connectPostgres, count, dropSchema, type PgClient } from "./postgres.js";

const SCHEMA = "tw_bench_pgboss";
const QUEUE = "noop";
const BATCH_SIZE = 100;
const POLLING_INTERVAL_SECONDS = 0.5;

interface PgBoss {
  on(event: "error", fn: (err: Error) => void): void;
  start(): Promise<unknown>;
  stop(options: { graceful: boolean; wait: boolean; close?: boolean }): Promise<void>;
  createQueue(name: string): Promise<void>;
  send(name: string, data: Payload): Promise<string | null>;
  insert(jobs: Array<{ name: string; data: Payload }>): Promise<void>;
  work(
    name: string,
    options: { batchSize: number; pollingIntervalSeconds: number },
    handler: (jobs: Array<{ data: Payload }>) => Promise<void>,
  ): Promise<string>;
  offWork(name: string): Promise<void>;
}

interface PgBossModule {
  default: new (options: { connectionString: string; schema: string }) => PgBoss;
}

export function pgBoss(config: BenchConfig): System {
  let PgBossClass: PgBossModule["default"];
  let pg: PgClient | undefined;
  let boss: PgBoss | undefined;
  let bossError: Error | undefined;

  const remaining = () =>
    count(pg!, `SELECT count(*) AS n FROM ${SCHEMA}.job WHERE name = $1 AND state < 'completed'`, [QUEUE]);

  /** Drops the schema and lets pg-boss create a fresh one. */
  const fresh = async () => {
    await boss?.stop({ graceful: false, wait: true });
    boss = undefined;
    await dropSchema(pg!, SCHEMA);
    const b = new PgBossClass({ connectionString: config.postgresUrl, schema: SCHEMA });
    b.on("error", (err) => {
      bossError = err;
    });
    await b.start();
    await b.createQueue(QUEUE);
    boss = b;
  };

  return {
    async open() {
      pg = await connectPostgres(config.postgresUrl);
      PgBossClass = (await loadPeer<PgBossModule>("pg-boss")).default;
      await fresh();
    },
    reset: fresh,
    add(payload: Payload) {
      return boss!.send(QUEUE, payload);
    },
    addBulk(payloads: Payload[]) {
      return boss!.insert(payloads.map((data) => ({ name: QUEUE, data })));
    },
    async process(n: number) {
      const b = boss!;
      const counter = countTo(n);
      const handler = async (jobs: Array<{ data: Payload }>) => {
        await Promise.all(jobs.map((job) => noop(job.data)));
        counter.add(jobs.length);
      };
      const stop = () => b.offWork(QUEUE);
      try {
        for (let i = 0; i < config.concurrency; i++) {
          await b.work(
            QUEUE,
            { batchSize: BATCH_SIZE, pollingIntervalSeconds: POLLING_INTERVAL_SECONDS },
            handler,
          );
        }
        await counter.reached;
        await waitUntil(async () => {
          if (bossError) throw bossError;
          return (await remaining()) === 0;
        }, "pg-boss to write completions");
      } catch (err) {
        await stop();
        throw err;
      }
      return stop;
    },
    remaining,
    async close() {
      try {
        await boss?.stop({ graceful: false, wait: true });
        boss = undefined;
        if (pg) {
          await dropSchema(pg, SCHEMA);
          await checkpoint(pg);
        }
      } finally {
        await pg?.end();
        pg = undefined;
      }
    },
  };
}
