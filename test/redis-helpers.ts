/** Helpers for tests that need Redis: whether it answers, on the tests' own logical database. */
import { Redis } from "ioredis";
import { serviceReachable } from "./helpers.js";

const BASE = (process.env.REDIS_URL ?? "redis://127.0.0.1:6379").replace(/\/\d*$/, "");
/** Database 7: test/mesh.redis.test.ts FLUSHDBs it, so nothing else may live there. */
export const REDIS_URL = `${BASE}/7`;
/** Database 6: for tests in other files, which run beside that one and must not lose their keys to its FLUSHDB. */
export const REDIS_UNFLUSHED_URL = `${BASE}/6`;

/** Whether Redis answers; under CI=true an unreachable server is a failure, not a skip. */
export function redisReachable(): Promise<boolean> {
  return serviceReachable("Redis", REDIS_URL, async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => {});
    try {
      await r.connect();
      await r.ping();
    } finally {
      r.disconnect();
    }
  });
}
