/**
 * graphile-worker 0.17.3 on Postgres (0.18 needs Node >= 22.18).
 *
 * Two settings: its defaults, and "batched" (a local queue of 500 jobs and
 * completions written in batches, `completeJobBatchDelay: 0`), which changes
 * its figure by about 11x. In both the pool holds `concurrency` connections,
 * as graphile-worker itself advises (it warns when the pool is smaller), and
 * logging is off (a silent logger and NO_LOG_SUCCESS) since it otherwise
 * prints a line per job. Its schema is dedicated to this benchmark and dropped
 * before each run and after it. `job:success` fires before the completion is
 * written, so processing ends when the jobs table is empty (completing a job
 * deletes it).
 */
import { EventEmitter } from "node:events";
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

const SCHEMA = "tw_bench_graphile_worker";

interface WorkerUtils {
  addJob(identifier: string, payload: Payload): Promise<unknown>;
  addJobs(specs: Array<{ identifier: string; payload: Payload }>): Promise<unknown>;
  release(): Promise<void>;
}

interface Runner {
  stop(): Promise<void>;
  promise: Promise<void>;
}

interface LoggerInstance {
  readonly __brand?: "Logger";
}

interface GraphileModule {
  Logger: new (factory: () => () => void) => LoggerInstance;
  makeWorkerUtils(options: {
    connectionString: string;
    schema: string;
    logger: LoggerInstance;
  }): Promise<WorkerUtils>;
  run(options: {
    connectionString: string;
    schema: string;
    concurrency: number;
    maxPoolSize: number;
    noHandleSignals: boolean;
    logger: LoggerInstance;
    events: EventEmitter;
    taskList: Record<string, (payload: unknown) => Promise<void>>;
    preset?: { worker: { localQueue: { size: number }; completeJobBatchDelay: number } };
  }): Promise<Runner>;
}

export function graphileWorker(config: BenchConfig, batched: boolean): System {
  let gw: GraphileModule;
  let pg: PgClient | undefined;
  let utils: WorkerUtils | undefined;
  let logger: LoggerInstance;

  const remaining = () => count(pg!, `SELECT count(*) AS n FROM ${SCHEMA}._private_jobs`);

  /** Drops the schema and lets graphile-worker migrate a fresh one. */
  const fresh = async () => {
    await utils?.release();
    utils = undefined;
    await dropSchema(pg!, SCHEMA);
    utils = await gw.makeWorkerUtils({ connectionString: config.postgresUrl, schema: SCHEMA, logger });
  };

  return {
    async open() {
      pg = await connectPostgres(config.postgresUrl);
      // Read when the module loads: skip formatting a log line per completed job.
      process.env.NO_LOG_SUCCESS = "1";
      gw = await loadPeer<GraphileModule>("graphile-worker");
      logger = new gw.Logger(() => () => {});
      await fresh();
    },
    reset: fresh,
    add(payload: Payload) {
      return utils!.addJob("noop", payload);
    },
    addBulk(payloads: Payload[]) {
      return utils!.addJobs(payloads.map((payload) => ({ identifier: "noop", payload })));
    },
    async process(n: number) {
      const counter = countTo(n);
      const events = new EventEmitter();
      const failed = new Promise<never>((_, reject) => {
        events.on("job:success", () => counter.add());
        events.on("job:error", (e: { error: unknown }) => reject(e.error));
      });
      const runner = await gw.run({
        connectionString: config.postgresUrl,
        schema: SCHEMA,
        concurrency: config.concurrency,
        maxPoolSize: config.concurrency,
        noHandleSignals: true,
        logger,
        events,
        taskList: { noop },
        ...(batched ? { preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0 } } } : {}),
      });
      const stop = () => runner.stop();
      try {
        await Promise.race([counter.reached, failed, runner.promise]);
        await waitUntil(async () => (await remaining()) === 0, "graphile-worker to write completions");
      } catch (err) {
        await stop();
        throw err;
      }
      return stop;
    },
    remaining,
    async close() {
      try {
        await utils?.release();
        utils = undefined;
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
