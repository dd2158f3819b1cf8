/**
 * Tidewire's core entry point (`tidewire`): the store, the job queue and its
 * worker, the outbox, the replica and its cursors, the errors. Everything here
 * is public API.
 *
 * Contract: importing it loads no backend package (pg, @libsql/client,
 * ioredis, ws) nor the HTTP server; test/entry-load.test.ts proves it. The
 * rest of the library is behind subpaths, each its area's index.ts:
 * `tidewire/sync` (SyncManager, transports, peers), `tidewire/hub`,
 * `tidewire/mesh`, `tidewire/remote`, `tidewire/pins`, `tidewire/daemon`.
 */
export {
  type Cursor,
  type CursorKey,
  CursorStore,
  type CursorStoreOptions,
  type Direction,
} from "./cursor-store.js";
export {
  HubError,
  InvalidArgumentError,
  MissingDependencyError,
  StoreError,
  TidewireError,
} from "./errors.js";
export { registry as metricsRegistry } from "./metrics.js";
export { SCHEMA_VERSION } from "./migrations.js";
export { outboxCounts } from "./outbox/counts.js";
export * from "./outbox/outbox.js";
export { DuplicateMessageError } from "./outbox/spool.js";
export { IllegalTransitionError } from "./outbox/states.js";
export * from "./outbox/types.js";
export { CountChangedError } from "./queue/admin.js";
export { MemoryQueue } from "./queue/memory-queue.js";
export { Queue, type QueueOptions } from "./queue/queue.js";
export { Scheduler } from "./queue/scheduler.js";
export * from "./queue/types.js";
export {
  type Handler,
  type HandlerContext,
  type Handlers,
  JobTimeoutError,
  type StopOptions,
  UnrecoverableError,
  Worker,
  type WorkerOptions,
} from "./queue/worker.js";
export {
  type ApplyOptions,
  type ApplyResult,
  type Authorizer,
  ClockDriftError,
  InvalidChangeError,
} from "./replica/apply.js";
export type { Change, ChangeSet } from "./replica/change.js";
export type { ClockResetOptions, ClockResetResult } from "./replica/clock-reset.js";
export type { CaptureStatus } from "./replica/evolve.js";
export { formatHlc, parseHlc } from "./replica/hlc.js";
export type { ChangesSinceOptions, LogStats } from "./replica/log.js";
export { CaptureBrokenError, Replica, type ReplicaOptions, type ReplicaStats } from "./replica/replica.js";
export { NotTrackableError } from "./replica/schema.js";
export type { TrackedTableInfo, TrackOptions } from "./replica/track.js";
export type { SqlValue, WireValue } from "./replica/values.js";
export {
  type AutoVacuumMode,
  convertToIncremental,
  type ReclaimOptions,
  type ReclaimResult,
  reclaimFreePages,
  type StorageStats,
  storageStats,
} from "./storage.js";
export { openStore, Store, type StoreOptions } from "./store.js";
export { disableTracing, enableTracing, tracingEnabled } from "./trace.js";
