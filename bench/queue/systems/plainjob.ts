/**
 * plainjob 0.0.14 on better-sqlite3 (the repository root's copy: plainjob only
 * receives a connection and imports no driver itself). It sets WAL and
 * synchronous NORMAL on the file itself. A plainjob worker runs one job at a
 * time, so concurrency C means C workers in the process; each claims one job
 * per IMMEDIATE transaction and marks it done with one autocommit UPDATE.
 * Logging is off (it logs each job at debug level on the console by default).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { type BenchConfig, loadPeer, noop, type Payload, type System, silentLogger } from "../common.js";
import { removeSqlite } from "./tidewire.js";

interface PlainQueue {
  add(type: string, data: unknown): { id: number };
  addMany(type: string, data: unknown[]): { ids: number[] };
  countJobs(opts?: { type?: string; status?: number }): number;
  close(): void;
}

interface PlainWorker {
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface PlainjobModule {
  better(db: Database.Database): unknown;
  defineQueue(opts: { connection: unknown; logger: typeof silentLogger }): PlainQueue;
  defineWorker(
    type: string,
    processor: (job: { data: string }) => Promise<void>,
    opts: {
      queue: PlainQueue;
      logger: typeof silentLogger;
      onCompleted: () => void;
      onFailed: (job: unknown, error: string) => void;
    },
  ): PlainWorker;
  JobStatus: { Pending: number; Processing: number };
}

export function plainjob(config: BenchConfig): System {
  let pj: PlainjobModule;
  let queue: PlainQueue | undefined;
  let path = "";
  let generation = 0;

  const openFresh = () => {
    queue?.close();
    if (path) removeSqlite(path);
    path = join(config.tmpDir, `plainjob-${generation++}.db`);
    queue = pj.defineQueue({ connection: pj.better(new Database(path)), logger: silentLogger });
  };

  return {
    async open() {
      pj = await loadPeer<PlainjobModule>("plainjob");
      openFresh();
    },
    async reset() {
      openFresh();
    },
    add(payload: Payload) {
      return queue!.add("noop", payload);
    },
    addBulk(payloads: Payload[]) {
      return queue!.addMany("noop", payloads);
    },
    async process(n: number) {
      const q = queue!;
      let done = 0;
      const workers: PlainWorker[] = [];
      // onCompleted is called right after the job's autocommit UPDATE to done.
      const finished = new Promise<void>((resolve, reject) => {
        for (let i = 0; i < config.concurrency; i++) {
          const worker = pj.defineWorker("noop", (job) => noop(JSON.parse(job.data)), {
            queue: q,
            logger: silentLogger,
            onCompleted: () => {
              if (++done >= n) resolve();
            },
            onFailed: (_job, error) => reject(new Error(error)),
          });
          workers.push(worker);
          worker.start().catch(reject);
        }
      });
      const stop = async () => {
        await Promise.all(workers.map((w) => w.stop()));
        // A loop may still be in its last turn after stop() resolves; let it finish before the file closes.
        await new Promise((r) => setTimeout(r, 20));
      };
      try {
        await finished;
      } catch (err) {
        await stop();
        throw err;
      }
      return stop;
    },
    remaining() {
      const q = queue!;
      return (
        q.countJobs({ type: "noop", status: pj.JobStatus.Pending }) +
        q.countJobs({ type: "noop", status: pj.JobStatus.Processing })
      );
    },
    async close() {
      queue?.close();
      queue = undefined;
      if (path) removeSqlite(path);
    },
  };
}
