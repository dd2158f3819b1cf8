/**
 * BullMQ 6.7.0 on Redis: jobs added with `removeOnComplete` (otherwise every
 * completed job stays in Redis), bulk adds through `addBulk`, a Worker with the
 * given concurrency. All keys live under a dedicated prefix, deleted before the
 * run (leftovers of an interrupted run) and after it.
 */
import { connect } from "node:net";
import { type BenchConfig, loadPeer, noop, type Payload, Skip, type System } from "../common.js";

const PREFIX = "tidewire-bench";
const QUEUE = "noop";
const JOB_OPTS = { removeOnComplete: true };

interface RedisOptions {
  host: string;
  port: number;
  password?: string;
  db?: number;
  maxRetriesPerRequest: null;
}

interface Redis {
  on(event: "error", fn: (err: Error) => void): void;
  connect(): Promise<void>;
  ping(): Promise<string>;
  scan(
    cursor: string,
    match: "MATCH",
    pattern: string,
    count: "COUNT",
    n: number,
  ): Promise<[string, string[]]>;
  unlink(...keys: string[]): Promise<number>;
  quit(): Promise<unknown>;
  disconnect(): void;
}

interface IORedisModule {
  default: new (
    options: RedisOptions & { lazyConnect: boolean; connectTimeout: number; retryStrategy: () => null },
  ) => Redis;
}

interface BullQueue {
  add(name: string, data: Payload, opts: typeof JOB_OPTS): Promise<unknown>;
  addBulk(jobs: Array<{ name: string; data: Payload; opts: typeof JOB_OPTS }>): Promise<unknown>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  obliterate(opts: { force: boolean }): Promise<void>;
  close(): Promise<void>;
}

interface BullWorker {
  on(event: "completed", fn: () => void): void;
  on(event: "failed", fn: (job: unknown, err: Error) => void): void;
  on(event: "error", fn: (err: Error) => void): void;
  run(): Promise<void>;
  close(): Promise<void>;
}

interface BullMQModule {
  Queue: new (name: string, opts: { connection: RedisOptions; prefix: string }) => BullQueue;
  Worker: new (
    name: string,
    processor: (job: { data: Payload }) => Promise<void>,
    opts: { connection: RedisOptions; prefix: string; concurrency: number; autorun: boolean },
  ) => BullWorker;
}

/** Opens and closes a TCP connection, so an unreachable server is reported with the socket's own error. */
function reachable(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: 2000 });
    socket.once("connect", () => {
      socket.end();
      resolve();
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(new Error("connection timed out after 2 s"));
    });
    socket.once("error", reject);
  });
}

function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== undefined ? { db } : {}),
    maxRetriesPerRequest: null,
  };
}

export function bullmq(config: BenchConfig): System {
  const connection = redisOptions(config.redisUrl);
  let mq: BullMQModule;
  let admin: Redis | undefined;
  let queue: BullQueue | undefined;

  /** Deletes every key under this benchmark's prefix. */
  const dropKeys = async () => {
    if (!admin) return;
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `${PREFIX}:*`, "COUNT", 1000);
      if (keys.length > 0) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== "0");
  };

  return {
    async open() {
      const { default: IORedis } = await loadPeer<IORedisModule>("ioredis");
      mq = await loadPeer<BullMQModule>("bullmq");
      const probe = new IORedis({
        ...connection,
        lazyConnect: true,
        connectTimeout: 2000,
        retryStrategy: () => null,
      });
      try {
        await reachable(connection.host, connection.port);
        await probe.connect();
        await probe.ping();
      } catch (err) {
        probe.disconnect();
        throw new Skip(`Redis unreachable at ${config.redisUrl}: ${(err as Error).message}`);
      }
      admin = probe;
      await dropKeys();
      queue = new mq.Queue(QUEUE, { connection, prefix: PREFIX });
    },
    async reset() {
      await queue?.obliterate({ force: true });
      await dropKeys();
    },
    add(payload: Payload) {
      return queue!.add("noop", payload, JOB_OPTS);
    },
    addBulk(payloads: Payload[]) {
      return queue!.addBulk(payloads.map((data) => ({ name: "noop", data, opts: JOB_OPTS })));
    },
    async process(n: number) {
      const worker = new mq.Worker(QUEUE, (job) => noop(job.data), {
        connection,
        prefix: PREFIX,
        concurrency: config.concurrency,
        autorun: false,
      });
      let done = 0;
      // "completed" is emitted once the job has been moved to completed (here: removed) in Redis.
      const finished = new Promise<void>((resolve, reject) => {
        worker.on("completed", () => {
          if (++done >= n) resolve();
        });
        worker.on("failed", (_job, err) => reject(err));
        worker.on("error", (err) => reject(err));
        worker.run().catch(reject);
      });
      const stop = () => worker.close();
      try {
        await finished;
      } catch (err) {
        await stop();
        throw err;
      }
      return stop;
    },
    async remaining() {
      const c = await queue!.getJobCounts("waiting", "active", "delayed", "prioritized", "paused");
      return Object.values(c).reduce((a, b) => a + b, 0);
    },
    async close() {
      try {
        await queue?.obliterate({ force: true });
        await queue?.close();
        await dropKeys();
      } finally {
        await admin?.quit();
        admin = undefined;
      }
    },
  };
}
