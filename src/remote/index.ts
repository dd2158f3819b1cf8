/** `tidewire/remote`: pushing a replica to, and pulling from, a remote database (SQLite, libSQL, PostgreSQL, D1); its backend packages load on first use. */
export type { Capture, CapturedChange } from "./capture.js";
export { CHANGES_TABLE, remoteOrigin } from "./capture.js";
export type { CopyJob, IndexSpec, RunSql, SwapHook, ViewSpec } from "./copy-job.js";
export { openTarget, type TargetOptions } from "./open-target.js";
export type { ColumnSchema, Mutation, Payload, SyncMode, TableSchema } from "./payload.js";
export {
  type Direction,
  type Remote,
  type RemoteInput,
  type RemoteStatus,
  Remotes,
} from "./registry.js";
export {
  type PullResult,
  type PushProgress,
  type PushResult,
  RemoteSync,
  type RemoteSyncOptions,
  type SyncDirection,
  type SyncResult,
} from "./remote-sync.js";
export { HISTORY_TABLE } from "./sql.js";
export { type ApplyOutcome, type Backend, RemoteError, type RemoteTarget } from "./target.js";
export { sqlLiteral } from "./values.js";
