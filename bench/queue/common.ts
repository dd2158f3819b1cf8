/**
 * What every system under test implements, and the helpers they share.
 *
 * A system is measured in three phases on the same N jobs and payloads:
 * `add` one job at a time (each awaited before the next), `addBulk` in chunks
 * of `chunk`, then `process`: start workers with the given concurrency on the
 * N bulk-added jobs and resolve once the last completion is durable.
 */

export interface Payload {
  i: number;
}

export interface BenchConfig {
  n: number;
  concurrency: number;
  /** Jobs per bulk call. */
  chunk: number;
  /** A folder of this run's own for SQLite files; the parent deletes it. */
  tmpDir: string;
  redisUrl: string;
  postgresUrl: string;
  /** A built checkout of Tidewire (its dist/) for the paired system tidewire-base (--base). */
  base?: string;
}

export interface System {
  /** Connects and prepares an empty queue; throws `Skip` when the service cannot be reached. */
  open(): Promise<void>;
  /** Back to an empty queue, outside any timing. */
  reset(): Promise<void>;
  /** Enqueues one job; returns a promise only when the system is asynchronous. */
  add(payload: Payload): Promise<unknown> | unknown;
  addBulk(payloads: Payload[]): Promise<unknown> | unknown;
  /**
   * Starts workers on the `n` queued jobs with a no-op handler and resolves,
   * with a function that stops them, once all n are durably completed.
   */
  process(n: number): Promise<Stop>;
  /** Jobs not yet completed, as the store sees them (checked after `process`, untimed). */
  remaining(): Promise<number> | number;
  /** Removes everything this system created (files, keys, schemas) and disconnects. */
  close(): Promise<void>;
}

export type Stop = () => Promise<void>;

export type SystemFactory = (config: BenchConfig) => System;

/** The service a system needs is not there: reported as skipped, not as a failure. */
export class Skip extends Error {
  override name = "Skip";
}

/** The handler every system runs: does nothing, asynchronously. */
export const noop = async (_payload?: unknown): Promise<void> => {};

/**
 * Loads a peer from bench/node_modules. The specifier is a variable on purpose:
 * peers are the benchmark's dependencies only, so the root type-check must not
 * need them installed; each system declares the few members it uses.
 */
export async function loadPeer<T>(name: string): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (err) {
    throw new Skip(
      `${name} cannot be loaded (run \`npm --prefix bench install\`): ${(err as Error).message}`,
    );
  }
}

/** Resolves when `done()` holds, checking every `everyMs`; rejects after `timeoutMs`. */
export async function waitUntil(
  done: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 300_000,
  everyMs = 2,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A counter that resolves `reached` once `add` has been called for `target`
 * jobs; used by systems whose completion events fire after the durable write.
 */
export function countTo(
  target: number,
  timeoutMs = 300_000,
): { add(k?: number): void; reached: Promise<void> } {
  let count = 0;
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const reached = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const timer = setTimeout(
    () => reject(new Error(`timed out after ${timeoutMs} ms with ${count} of ${target} jobs processed`)),
    timeoutMs,
  );
  timer.unref();
  return {
    add(k = 1) {
      count += k;
      if (count >= target) {
        clearTimeout(timer);
        resolve();
      }
    },
    reached,
  };
}

/** Runs `fn` on every item with at most `concurrency` calls in flight. */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < items.length; i += concurrency) {
    await Promise.all(items.slice(i, i + concurrency).map(fn));
  }
}

/** A logger that drops everything (peers default to logging each job on the console). */
export const silentLogger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};
