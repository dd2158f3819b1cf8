/**
 * Contract: the one list of queue implementations every queue suite runs
 * over (the SQLite `Queue` on a temp file, the `MemoryQueue`). A new queue
 * backend is one more entry here. `useQueues()` registers the hooks that
 * close each test's store, so call it at the top of a test file.
 */
import { join } from "node:path";
import { afterEach } from "vitest";
import { type BackoffOptions, type JobQueue, MemoryQueue, Queue } from "../../src/index.js";
import { openStore, type Store } from "../../src/store.js";
import { useTempDirs } from "../helpers.js";

export interface MakeOptions {
  backoff?: BackoffOptions;
  clock?: () => number;
}

export interface QueueImpl {
  name: string;
  /** Runs of each per-queue property (a queue on a file is slower than one in memory). */
  propertyRuns: number;
  /** A new queue, with a name of its own in the test's backing store (closed after the test). */
  make(options?: MakeOptions): JobQueue;
  /** A queue alone in a backing store of its own, so its ids start at 1; `close` frees the store. */
  fresh(options?: MakeOptions): { queue: JobQueue; close(): void };
}

export function useQueues(): QueueImpl[] {
  const tempDir = useTempDirs();
  let store: Store | null = null;
  let queues = 0;
  afterEach(() => {
    store?.close();
    store = null;
  });
  return [
    {
      name: "Queue (SQLite file)",
      propertyRuns: 60,
      make(options) {
        store ??= openStore(join(tempDir(), "queue.db"));
        return new Queue(store, `q${++queues}`, options);
      },
      fresh(options) {
        // In memory: the differential property opens one per run, a hundred runs a test.
        const own = openStore(":memory:");
        return { queue: new Queue(own, "default", options), close: () => own.close() };
      },
    },
    {
      name: "MemoryQueue",
      propertyRuns: 150,
      make: (options) => new MemoryQueue(`m${++queues}`, options),
      fresh: (options) => ({ queue: new MemoryQueue("default", options), close: () => {} }),
    },
  ];
}
