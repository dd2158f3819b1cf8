/**
 * The console tests' hub: a daemon on a loopback port over a given file,
 * silent and without a rate limit, with a tokens file (helpers.tokensFile),
 * stopped by the test file's cleanup. Kept apart from helpers.ts, which every
 * test imports, so only these load the daemon.
 */
import { type Daemon, startDaemon } from "../src/daemon/daemon.js";
import { createLogger } from "../src/log.js";

export async function consoleDaemon(
  dbPath: string,
  tokens: string,
  cleanup: Array<() => unknown>,
): Promise<Daemon> {
  const d = await startDaemon({
    dbPath,
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ level: "silent" }),
    rateLimitPerSecond: 0,
    tokensFile: tokens,
  });
  cleanup.push(() => d.stop());
  return d;
}
