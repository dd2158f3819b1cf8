/**
 * What the history tests over HTTP and in the browser share: a tokens file
 * with an admin and a read-only token, and a daemon on loopback whose worker
 * runs `email` (succeeds) and `flaky` (fails for good) jobs, with table
 * `items` declared in bucket "default" so a client can push it.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, type DaemonOptions, startDaemon } from "../src/daemon/daemon.js";
import { createLogger } from "../src/log.js";
import { UnrecoverableError } from "../src/queue/worker.js";
import { waitFor } from "./helpers.js";

export const HISTORY_ADMIN = "history-admin-token-01";
/** Any valid token may read the history, as it may read /v1/jobs: this one reads bucket "a" only. */
export const HISTORY_READER = "history-reader-token-2";

export function writeHistoryTokens(dir: string): string {
  const file = join(dir, "tokens.json");
  writeFileSync(
    file,
    JSON.stringify({
      tokens: [
        { token: HISTORY_ADMIN, buckets: "*", access: "admin", name: "admin" },
        { token: HISTORY_READER, buckets: ["a"], access: "read", name: "reader" },
      ],
    }),
    { mode: 0o600 },
  );
  return file;
}

/** The caller stops it (and may stop it twice: `stop` is idempotent). */
export function startHistoryDaemon(
  dbPath: string,
  tokensFile: string,
  more: DaemonOptions = {},
): Promise<Daemon> {
  return startDaemon({
    dbPath,
    host: "127.0.0.1",
    port: 0,
    logger: createLogger({ level: "silent" }),
    rateLimitPerSecond: 0,
    tokensFile,
    tables: { items: "default" },
    handlers: {
      email: async () => {},
      flaky: () => {
        throw new UnrecoverableError("the mail server said no");
      },
    },
    ...more,
  });
}

/** Adds `emails` email jobs and `flaky` flaky ones (one attempt each) and waits until the daemon ran them all. */
export async function runJobs(d: Daemon, emails: number, flaky: number): Promise<void> {
  for (let i = 0; i < emails; i++) d.queue.add("email", { to: `u${i}@example.com` });
  for (let i = 0; i < flaky; i++) d.queue.add("flaky", {}, { maxAttempts: 1 });
  await waitFor(
    () =>
      d.queue.count({ type: "email", state: "completed" }) === emails &&
      d.queue.count({ type: "flaky", state: "failed" }) === flaky,
    "the daemon's worker to run the jobs",
    { timeoutMs: 20_000, intervalMs: 20 },
  );
}
