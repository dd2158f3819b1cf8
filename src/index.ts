/** Tidewire's library entry point: everything here is public API. */
export { type Daemon, type DaemonOptions, startDaemon, stopOnSignals } from "./daemon/daemon.js";
export { InvalidArgumentError, StoreError, TidewireError } from "./errors.js";
export { registry as metricsRegistry } from "./metrics.js";
export { SCHEMA_VERSION } from "./migrations.js";
export * from "./outbox.js";
export { MemoryQueue } from "./queue/memory-queue.js";
export { Queue, type QueueOptions } from "./queue/queue.js";
export { Scheduler } from "./queue/scheduler.js";
export * from "./queue/types.js";
export {
  type Handler,
  type Handlers,
  UnrecoverableError,
  Worker,
  type WorkerOptions,
} from "./queue/worker.js";
export { openStore, Store, type StoreOptions } from "./store.js";
