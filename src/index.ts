/** Tidewire's library entry point: everything here is public API. */
export {
  type Cursor,
  type CursorKey,
  CursorStore,
  type CursorStoreOptions,
  type Direction,
} from "./cursor-store.js";
export { type Daemon, type DaemonOptions, startDaemon, stopOnSignals } from "./daemon/daemon.js";
export { REMOTE_QUEUE, REMOTE_SYNC, type RemoteJobOptions } from "./daemon/remote-jobs.js";
export { type PeerJobOptions, PING_PEER, SYNC_BUCKET } from "./daemon/sync-jobs.js";
export {
  HubError,
  InvalidArgumentError,
  MissingDependencyError,
  StoreError,
  TidewireError,
} from "./errors.js";
export { type HistoryAnswer, historyOf, type Range as HistoryRange } from "./history/query.js";
export {
  type History,
  type HistoryOptions,
  SERIES,
  type SeriesName,
  startHistory,
} from "./history/recorder.js";
export { type Rollup, Rollups, type RollupsOptions } from "./history/rollups.js";
export { Auth, type AuthOptions, resolveAuth } from "./hub/auth.js";
export { Hub, type HubOptions } from "./hub/hub.js";
export {
  type MeshLogger,
  MeshMember,
  type MeshMemberOptions,
  type MeshState,
  type MeshStatus,
} from "./mesh/mesh-member.js";
export { registry as metricsRegistry } from "./metrics.js";
export { SCHEMA_VERSION } from "./migrations.js";
export { outboxCounts } from "./outbox/counts.js";
export * from "./outbox/outbox.js";
export { DuplicateMessageError } from "./outbox/spool.js";
export { IllegalTransitionError } from "./outbox/states.js";
export * from "./outbox/types.js";
export { idFromAddress, type Peer, type PeerInput, type PeerState, Peers } from "./peers/peers.js";
export {
  DOWNLOAD_PINS,
  type DownloadPinsPayload,
  type DownloadReport,
  downloadPins,
  downloadPinsHandler,
  type PinSource,
} from "./pins/download.js";
export { isPinHash, PinMismatchError, PinNotFoundError, PinTooLargeError } from "./pins/errors.js";
export { DEFAULT_MAX_PIN_BYTES, type PinInfo, PinStore, type PinStoreOptions } from "./pins/pin-store.js";
export { type CollectResult, DEFAULT_GRACE_MS, Pins } from "./pins/pins.js";
export type { PinColumn } from "./pins/references.js";
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
export * from "./remote/index.js";
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
export { FULL_SCOPE, requireAdmin, type Scope } from "./scope.js";
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
export {
  type BatchLimits,
  CAPABILITIES,
  DEFAULT_LIMITS,
  type HandshakeRequest,
  type HandshakeResponse,
  type LiveMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
} from "./sync/protocol.js";
export {
  type CycleResult,
  type InitialSyncOptions,
  type RetryOptions,
  type SyncDirection,
  type SyncLogger,
  SyncManager,
  type SyncManagerOptions,
  type SyncPosition,
  type SyncState,
  type SyncStatus,
} from "./sync/sync-manager.js";
export { HubAuthError, HubBucketError, HubRefusedError, type Transport } from "./sync/transport.js";
export { HttpTransport, type HttpTransportOptions, TransportError } from "./sync/transports/http.js";
export { type LocalHub, MemoryTransport, type Switchboard } from "./sync/transports/memory.js";
export { WebSocketTransport, type WebSocketTransportOptions } from "./sync/transports/websocket.js";
export { disableTracing, enableTracing, tracingEnabled } from "./trace.js";
