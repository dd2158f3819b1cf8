/**
 * `tidewire/daemon`: the process `tidewire serve` runs — startDaemon and
 * stopOnSignals, the names of the jobs it runs, and the history it records.
 *
 * Contract: importing it loads neither fastify nor a backend package;
 * startDaemon loads the HTTP server, and ioredis only with a `mesh` option.
 */
export { type HistoryAnswer, historyOf, type Range as HistoryRange } from "../history/query.js";
export {
  type History,
  type HistoryOptions,
  SERIES,
  type SeriesName,
  startHistory,
} from "../history/recorder.js";
export { type Rollup, Rollups, type RollupsOptions } from "../history/rollups.js";
export { type Daemon, type DaemonOptions, MAINTENANCE_JOBS, startDaemon, stopOnSignals } from "./daemon.js";
export { REMOTE_QUEUE, REMOTE_SYNC, type RemoteJobOptions } from "./remote-jobs.js";
export { type PeerJobOptions, PING_PEER, SYNC_BUCKET } from "./sync-jobs.js";
