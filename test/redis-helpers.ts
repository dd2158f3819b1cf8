/** Helpers for tests that need Redis: whether it answers, and a client on the tests' own logical database. */
import { Redis } from "ioredis";

/** Database 7: tests FLUSHDB it, so nothing else may live there. */
export const REDIS_URL = `${(process.env.REDIS_URL ?? "redis://127.0.0.1:6379").replace(/\/\d*$/, "")}/7`;

/** Whether Redis answers; under CI=true an unreachable server is a failure, not a skip. */
export async function redisReachable(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on("error", () => {});
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch (err) {
    if (process.env.CI === "true")
      throw new Error(`Redis at ${REDIS_URL} is unreachable under CI: ${(err as Error).message}`);
    console.warn(`SKIPPED: Redis tests, no server at ${REDIS_URL} (${(err as Error).message})`);
    return false;
  } finally {
    r.disconnect();
  }
}
