/** Helpers for tests that need Redis: whether it answers, on the tests' own logical database. */
import { Redis } from "ioredis";
import { serviceReachable } from "./helpers.js";

/** Database 7: tests FLUSHDB it, so nothing else may live there. */
export const REDIS_URL = `${(process.env.REDIS_URL ?? "redis://127.0.0.1:6379").replace(/\/\d*$/, "")}/7`;

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
