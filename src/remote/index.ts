/** The remote push's public surface, re-exported by the package entry point. */
export type { CopyJob, IndexSpec, RunSql, SwapHook, ViewSpec } from "./copy-job.js";
export type { ColumnSchema, Mutation, Payload, SyncMode, TableSchema } from "./payload.js";
export {
  type Direction,
  type Remote,
  type RemoteInput,
  type RemoteStatus,
  Remotes,
} from "./registry.js";
export { type PushProgress, type PushResult, RemoteSync, type RemoteSyncOptions } from "./remote-sync.js";
export { HISTORY_TABLE } from "./sql.js";
export {
  type ApplyOutcome,
  type Backend,
  openTarget,
  RemoteError,
  type RemoteTarget,
  type TargetOptions,
} from "./target.js";
export { sqlLiteral } from "./values.js";
