/**
 * The daemon's remote work: one `RemoteSync` job per registered remote target
 * (src/remote/registry.ts), on the daemon's own queue "remote", enqueued by
 * the periodic fan-out `tidewire.syncRemotes`.
 *
 * Contract: every `remoteScanMs` the fan-out reads the registry, so targets
 * added or removed (by `tidewire remote add|remove` in another process) are
 * picked up without a restart, and enqueues one RemoteSync per target that is
 * not paused, due `intervalMs` after its last attempt, under a dedup key per
 * target (at most one pending or running each). A job runs one cycle of the
 * target's direction with a RemoteSync opened for it and closed after it
 * (no connection outlives a cycle), and records the outcome in the registry,
 * the metrics (labelled by backend and target id, registered targets only)
 * and the log. A failure throws, so the queue retries it with
 * `remoteBackoff`; one that the same cycle would meet again (no table
 * matches the filter, an option the target refuses) fails the job at once,
 * and the next period tries afresh. A job whose target was removed, replaced
 * or paused since it was queued does nothing. On stop, a cycle in flight
 * finishes (the worker waits); killed instead, its payloads stay spooled and
 * the next cycle sends them first (remote-sync.ts), and its job comes back
 * when its lease expires.
 */
import { InvalidArgumentError } from "../errors.js";
import type { Logger } from "../log.js";
import {
  remoteTargetCycles,
  remoteTargetLastSuccess,
  remoteTargetPending,
  remoteTargetRows,
} from "../metrics.js";
import { validateBackoff } from "../queue/backoff.js";
import { Queue } from "../queue/queue.js";
import { Scheduler } from "../queue/scheduler.js";
import type { BackoffOptions, Job } from "../queue/types.js";
import { type Handlers, UnrecoverableError, Worker } from "../queue/worker.js";
import { checkRemoteId, type Remote, Remotes } from "../remote/registry.js";
import { type PushResult, RemoteSync } from "../remote/remote-sync.js";
import { describeError, RemoteError } from "../remote/target.js";
import type { Replica } from "../replica/replica.js";
import type { Store } from "../store.js";
import { checkInteger } from "../validate.js";
import { checkPayload } from "./sync-jobs.js";

export const REMOTE_QUEUE = "remote";
export const REMOTE_SYNC = "RemoteSync";
/** The periodic job (name and type alike) that fans out into RemoteSync jobs. */
export const SYNC_REMOTES = "tidewire.syncRemotes";
/**
 * The remote queue's own cleanup (the daemon's tidewire.cleanup sees only the
 * default queue): a scan every few seconds leaves a completed job each time,
 * worth keeping a day; failed and cancelled jobs are kept the queue's 7 days.
 */
export const CLEANUP_REMOTES = "tidewire.cleanupRemotes";
const CLEANUP_EVERY_MS = 3_600_000;
const KEEP_COMPLETED_MS = 86_400_000;
export const remoteKey = (id: string) => `${REMOTE_SYNC}:${id}`;
/** The fan-out goes before the cycles it enqueues: it only writes a few rows. */
const PRIORITY = { fanOut: 30, sync: 10 } as const;
/**
 * Short, so a job a killed daemon held comes back soon after a restart; the
 * worker renews it every third of this while the cycle runs.
 */
const LEASE_MS = 10_000;

export interface RemoteJobOptions {
  /** How often the registry is read for due and new targets, ms (default 5 000). */
  remoteScanMs?: number;
  /** RemoteSync jobs run at once (default 2). */
  remoteConcurrency?: number;
  /** Retry delays of a failed RemoteSync (default 1 s doubling up to 5 min, ±20%). */
  remoteBackoff?: BackoffOptions;
  /** Attempts of a RemoteSync job before it fails for good (default 8); the next period enqueues another. */
  remoteMaxAttempts?: number;
}

interface Resolved {
  remoteScanMs: number;
  remoteConcurrency: number;
  remoteBackoff: BackoffOptions;
  remoteMaxAttempts: number;
}

export interface RemoteSyncPayload {
  remote: string;
  /** The target (URL without secrets) when queued: a job for a target since replaced under the same id does nothing. */
  target: string;
}

/** Checks the options (all before anything is written) and fills in the defaults. */
export function remoteJobOptions(o: RemoteJobOptions = {}): Resolved {
  validateBackoff("remoteBackoff", o.remoteBackoff);
  return {
    remoteScanMs: checkInteger("remoteScanMs", o.remoteScanMs ?? 5_000, 1),
    remoteConcurrency: checkInteger("remoteConcurrency", o.remoteConcurrency ?? 2, 1),
    remoteBackoff: { baseMs: 1000, maxMs: 300_000, ...o.remoteBackoff },
    remoteMaxAttempts: checkInteger("remoteMaxAttempts", o.remoteMaxAttempts ?? 8, 1),
  };
}

export interface RemoteJobs {
  readonly queue: Queue;
  readonly worker: Worker;
  readonly scheduler: Scheduler;
  start(): void;
  /** Stops firing the fan-out, then waits for the cycles in flight. */
  stop(): Promise<void>;
}

export interface RemoteJobContext {
  store: Store;
  replica: Replica;
  logger: Logger;
  options: Resolved;
}

/** The remote queue with its worker and scheduler, the fan-out registered; nothing runs before `start`. */
export function remoteJobs(ctx: RemoteJobContext): RemoteJobs {
  const queue = new Queue(ctx.store, REMOTE_QUEUE);
  queue.every(SYNC_REMOTES, ctx.options.remoteScanMs, SYNC_REMOTES, {}, { priority: PRIORITY.fanOut });
  queue.every(CLEANUP_REMOTES, CLEANUP_EVERY_MS, CLEANUP_REMOTES);
  const worker = new Worker(queue, remoteJobHandlers(ctx, queue), {
    concurrency: ctx.options.remoteConcurrency,
    leaseMs: LEASE_MS,
    handledTypesOnly: true,
  });
  const scheduler = new Scheduler(queue);
  return {
    queue,
    worker,
    scheduler,
    start() {
      worker.start();
      scheduler.start();
    },
    async stop() {
      scheduler.stop();
      await worker.stop();
    },
  };
}

export function remoteJobHandlers(ctx: RemoteJobContext, queue: Queue): Handlers {
  const remotes = new Remotes(ctx.store);
  const { options, logger } = ctx;
  // Which targets the metrics carry labels for, and the log has announced: those registered at the last scan.
  let known = new Map<string, Remote>();
  return {
    [SYNC_REMOTES]: () => {
      const list = remotes.list();
      const now = Date.now();
      const seen = new Map(list.map((r) => [r.id, r]));
      for (const [id, r] of known) {
        if (seen.get(id)?.target === r.target) continue;
        dropLabels(r);
        logger.info({ remote: id, target: r.target }, `remote target ${id} removed`);
      }
      for (const r of list) {
        if (known.get(r.id)?.target !== r.target)
          logger.info(
            { remote: r.id, target: r.target, direction: r.direction, intervalMs: r.intervalMs },
            `remote target ${r.id} (${r.target}) registered`,
          );
      }
      known = seen;
      for (const s of remotes.status())
        remoteTargetPending.set({ backend: s.backend, target: s.id }, s.pending);
      queue.addMany(
        list
          .filter((r) => !r.paused)
          .map((r) => ({
            type: REMOTE_SYNC,
            payload: { remote: r.id, target: r.target } satisfies RemoteSyncPayload,
            options: {
              priority: PRIORITY.sync,
              key: remoteKey(r.id),
              runAt: Math.max(now, (r.lastAttemptAt ?? 0) + r.intervalMs),
              maxAttempts: options.remoteMaxAttempts,
              backoff: options.remoteBackoff,
            },
          })),
      );
    },
    [REMOTE_SYNC]: (job: Job<RemoteSyncPayload>) => remoteSync(ctx, remotes, job),
    [CLEANUP_REMOTES]: () => {
      const removed =
        queue.cleanup({ olderThanMs: KEEP_COMPLETED_MS, states: ["completed"] }) + queue.cleanup();
      logger.debug({ removed, queue: REMOTE_QUEUE }, `cleanup removed ${removed} finished remote jobs`);
    },
  };
}

async function remoteSync(ctx: RemoteJobContext, remotes: Remotes, job: Job<RemoteSyncPayload>) {
  const id = checkPayload(() => checkRemoteId(job.payload?.remote));
  const remote = remotes.get(id);
  if (!remote || remote.paused || remote.target !== job.payload.target) return;
  const labels = { backend: remote.backend, target: remote.id };
  remotes.noteAttempt(id);
  let sync: RemoteSync | undefined;
  try {
    sync = new RemoteSync(ctx.replica, {
      target: remote.url,
      d1: remote.d1 ?? undefined,
      buckets: remote.buckets ?? undefined,
      tables: remote.tables ?? undefined,
      direction: remote.direction,
    });
    const done = await runCycle(sync);
    remotes.noteSuccess(id, { push: done.push !== null, pull: done.pulled !== null });
    remoteTargetCycles.inc({ ...labels, result: "ok" });
    remoteTargetLastSuccess.set(labels, Date.now() / 1000);
    if (done.pulled) {
      remoteTargetRows.inc({ ...labels, direction: "pull" }, done.pulled);
      ctx.logger.info(
        { remote: id, target: remote.target, pulled: done.pulled },
        `pulled ${done.pulled} rows from remote ${id}`,
      );
    }
    if (done.push) {
      remoteTargetRows.inc({ ...labels, direction: "push" }, done.push.mutations);
      const { mode, mutations, payloads, retried, durationMs } = done.push;
      const level = mutations > 0 || mode === "full" || retried > 0 ? "info" : "debug";
      ctx.logger[level](
        { remote: id, target: remote.target, mode, mutations, payloads, retried, durationMs },
        `pushed ${mutations} rows to remote ${id} (${mode})`,
      );
    }
  } catch (err) {
    const message = describeError(err);
    if (remotes.get(id)) remotes.noteError(id, message);
    remoteTargetCycles.inc({ ...labels, result: "error" });
    if (cannotSucceed(err)) throw new UnrecoverableError(`remote ${id}: ${message}`);
    throw err;
  } finally {
    await sync?.close();
    // Removed while the cycle ran, which wrote the cursor `remove` had deleted: forget it again.
    if (remotes.get(id)?.target !== remote.target) remotes.forget(remote.target);
  }
}

/** What one cycle did: the push's result, and the rows a pull applied (null: that side did not run). */
interface CycleDone {
  push: PushResult | null;
  pulled: number | null;
}

/**
 * One cycle in the target's direction (RemoteSync.sync: a pull before the
 * push, so a full push never overwrites edits on the target not yet pulled).
 */
async function runCycle(sync: RemoteSync): Promise<CycleDone> {
  const r = await sync.sync();
  return { push: r.push, pulled: r.pull === null ? null : r.pull.applied };
}

/** What the same cycle would meet again: retrying in seconds cannot help. */
function cannotSucceed(err: unknown): boolean {
  return (
    err instanceof UnrecoverableError ||
    err instanceof InvalidArgumentError ||
    (err instanceof RemoteError && err.code === "ERR_NOTHING_TRACKED")
  );
}

function dropLabels(r: Remote): void {
  const labels = { backend: r.backend, target: r.id };
  for (const result of ["ok", "error"]) remoteTargetCycles.remove({ ...labels, result });
  for (const direction of ["push", "pull"]) remoteTargetRows.remove({ ...labels, direction });
  remoteTargetLastSuccess.remove(labels);
  remoteTargetPending.remove(labels);
}
