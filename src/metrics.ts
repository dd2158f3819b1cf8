/**
 * Metrics: one prom-client registry for everything tidewire measures in this
 * process. It is separate from prom-client's global registry so an application
 * that embeds tidewire keeps control of its own; `tidewire serve` exposes it on
 * GET /metrics. Counters live here, not beside their callers, so the names and
 * labels are reviewed in one place: every label takes its values from a set
 * bounded by the code or the operator's configuration, never from a client.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();

/**
 * Every place that retries a call which met SQLITE_BUSY/SQLITE_LOCKED names
 * itself with one of these: a fixed set, so the label cannot grow. "write"
 * is a `Store.write` nobody labelled (an application's own, say).
 */
export const BUSY_OPERATIONS = [
  "write",
  "open",
  "checkpoint",
  "cursor.flush",
  "cursor.delete",
  "queue.add",
  "queue.claim",
  "queue.settle",
  "queue.lease",
  "queue.admin",
  "queue.schedule",
  "replica.track",
  "replica.apply",
  "replica.ingest",
  "replica.schema",
  "replica.clock",
  "replica.conflict",
  "outbox",
  "peers",
  "remotes",
  "pins",
  "mesh.read",
  "hub.handshake",
  "hub.pull",
  "hub.push",
  "hub.refusal",
  "hub.watch",
  "daemon.worker",
  "daemon.scheduler",
] as const;

export type BusyOperation = (typeof BUSY_OPERATIONS)[number];

export const sqliteBusyRetries = new Counter({
  name: "tidewire_sqlite_busy_retries_total",
  help: "SQLITE_BUSY or SQLITE_LOCKED errors that escaped the busy timeout and were retried, by operation",
  labelNames: ["operation"] as const,
  registers: [registry],
});

export const cursorFlushes = new Counter({
  name: "tidewire_cursor_flushes_total",
  help: "CursorStore flushes that had dirty cursors to write, whatever their result",
  registers: [registry],
});

export const cursorRowsFlushed = new Counter({
  name: "tidewire_cursor_rows_flushed_total",
  help: "Cursors CursorStore flushes wrote to tw_cursors",
  registers: [registry],
});

export const cursorFlushErrors = new Counter({
  name: "tidewire_cursor_flush_errors_total",
  help: "CursorStore flushes that failed (their cursors stay dirty and are flushed later)",
  registers: [registry],
});

export const jobsAdded = new Counter({
  name: "tidewire_jobs_added_total",
  help: "Jobs added by this process, by type",
  labelNames: ["type"] as const,
  registers: [registry],
});

export const jobsCompleted = new Counter({
  name: "tidewire_jobs_completed_total",
  help: "Jobs completed by this process's workers, by type",
  labelNames: ["type"] as const,
  registers: [registry],
});

export const jobsFailed = new Counter({
  name: "tidewire_jobs_failed_total",
  help: "Job attempts that failed in this process's workers, by type (retried or final)",
  labelNames: ["type"] as const,
  registers: [registry],
});

export const jobDuration = new Histogram({
  name: "tidewire_job_duration_seconds",
  help: "Handler run time of a job attempt, by type",
  labelNames: ["type"] as const,
  buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
  registers: [registry],
});

/** Set on scrape by whoever owns a queue (see `watchQueueDepth`). */
export const queueDepth = new Gauge({
  name: "tidewire_queue_depth",
  help: "Jobs in the queue by state",
  labelNames: ["queue", "state"] as const,
  registers: [registry],
});

let defaultsCollected = false;
/** Process metrics (CPU, memory, event loop lag); only the daemon wants them. */
export function collectProcessMetrics(): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: registry, prefix: "tidewire_" });
}

export const syncCycles = new Counter({
  name: "tidewire_sync_cycles_total",
  help: "Sync cycles run by this process's SyncManagers, by peer, bucket set and result (ok or error)",
  labelNames: ["peer", "bucket", "result"] as const,
  registers: [registry],
});

export const syncChanges = new Counter({
  name: "tidewire_sync_changes_total",
  help: "Changes a SyncManager pushed to or pulled from a peer, by peer, bucket set and direction",
  labelNames: ["peer", "bucket", "direction"] as const,
  registers: [registry],
});

export const syncCycleDuration = new Histogram({
  name: "tidewire_sync_cycle_duration_seconds",
  help: "Duration of sync cycles (handshake, push, pull), by peer",
  labelNames: ["peer"] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
  registers: [registry],
});

export const syncLastSuccess = new Gauge({
  name: "tidewire_sync_last_success_timestamp_seconds",
  help: "Unix time of the last sync cycle that succeeded, by peer",
  labelNames: ["peer"] as const,
  registers: [registry],
});

/**
 * By direction only: a client names its node id and, on a relay, its buckets
 * and tables, so a label taken from them would grow /metrics (and memory)
 * with every id a client makes up. Per-client counts are in GET /v1/status.
 */
export const hubChanges = new Counter({
  name: "tidewire_hub_changes_total",
  help: "Changes the hub received by push or served by pull, by direction (per client: GET /v1/status)",
  labelNames: ["direction"] as const,
  registers: [registry],
});

export const remoteSyncTotal = new Counter({
  name: "tidewire_remote_sync_total",
  help: "Remote push cycles, by target backend and outcome (success or failure)",
  labelNames: ["backend", "status"] as const,
  registers: [registry],
});

export const remoteSyncDuration = new Histogram({
  name: "tidewire_remote_sync_duration_seconds",
  help: "Duration of a remote push cycle, by target backend and outcome",
  labelNames: ["backend", "status"] as const,
  buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
  registers: [registry],
});

export const remoteSyncLastSuccess = new Gauge({
  name: "tidewire_remote_sync_last_success_timestamp_seconds",
  help: "When a remote push cycle last succeeded, by target backend (Unix time)",
  labelNames: ["backend"] as const,
  registers: [registry],
});

/** Per registered remote target (tw_remotes): its id is a label only while it is registered. */
export const remoteTargetCycles = new Counter({
  name: "tidewire_remote_target_cycles_total",
  help: "RemoteSync jobs' cycles, by target backend, registered target id and result (ok or error)",
  labelNames: ["backend", "target", "result"] as const,
  registers: [registry],
});

export const remoteTargetRows = new Counter({
  name: "tidewire_remote_target_rows_total",
  help: "Row upserts and deletes RemoteSync jobs sent to (push) or took from (pull) a registered target",
  labelNames: ["backend", "target", "direction"] as const,
  registers: [registry],
});

export const remoteTargetLastSuccess = new Gauge({
  name: "tidewire_remote_target_last_success_timestamp_seconds",
  help: "When a RemoteSync job's cycle last succeeded, by target backend and registered target id (Unix time)",
  labelNames: ["backend", "target"] as const,
  registers: [registry],
});

export const remoteTargetPending = new Gauge({
  name: "tidewire_remote_target_pending_payloads",
  help: "Payloads spooled for a registered target and not yet accepted by it",
  labelNames: ["backend", "target"] as const,
  registers: [registry],
});

export const remotePullTotal = new Counter({
  name: "tidewire_remote_pull_total",
  help: "Pulls of the edits made on remote targets, by target backend and outcome (success or failure)",
  labelNames: ["backend", "status"] as const,
  registers: [registry],
});

export const remotePullChanges = new Counter({
  name: "tidewire_remote_pull_changes_total",
  help: "Changes pulled from remote targets that changed something locally, by target backend",
  labelNames: ["backend"] as const,
  registers: [registry],
});

export const peerUp = new Gauge({
  name: "tidewire_peer_up",
  help: "Whether a peer answered its last ping (1) or not (0), by peer id",
  labelNames: ["peer"] as const,
  registers: [registry],
});

export const peerRtt = new Gauge({
  name: "tidewire_peer_rtt_seconds",
  help: "Round-trip time of the last ping a peer answered (GET /healthz), by peer id",
  labelNames: ["peer"] as const,
  registers: [registry],
});

export const pinsDownloaded = new Counter({
  name: "tidewire_pins_downloaded_total",
  help: "Pins a DownloadPins job fetched from a peer and stored, verified",
  registers: [registry],
});

export const pinMismatches = new Counter({
  name: "tidewire_pin_mismatches_total",
  help: "Pin downloads and uploads refused because the bytes did not hash to the pin's hash",
  labelNames: ["direction"] as const,
  registers: [registry],
});

export const pinBytesDownloaded = new Counter({
  name: "tidewire_pin_download_bytes_total",
  help: "Bytes of the pins DownloadPins jobs stored",
  registers: [registry],
});

export const meshPublished = new Counter({
  name: "tidewire_mesh_changes_published_total",
  help: "Changes this process's mesh members appended to their Redis streams, by bucket",
  labelNames: ["bucket"] as const,
  registers: [registry],
});

export const meshApplied = new Counter({
  name: "tidewire_mesh_changes_applied_total",
  help: "Changes read from peers' Redis streams that won at least one entry here, by bucket",
  labelNames: ["bucket"] as const,
  registers: [registry],
});

export const meshGaps = new Counter({
  name: "tidewire_mesh_gaps_total",
  help: "Gaps found in peers' Redis streams (trimmed, lost or refused entries) or in one's own (stream lost), by bucket",
  labelNames: ["bucket"] as const,
  registers: [registry],
});

export const meshRefused = new Counter({
  name: "tidewire_mesh_entries_refused_total",
  help: "Stream entries refused as malformed or by the replica, nothing of them applied, by bucket",
  labelNames: ["bucket"] as const,
  registers: [registry],
});

export const conflictsRecorded = new Counter({
  name: "tidewire_conflicts_total",
  help: "Writes a resolution rule removed or overrode (unique, insert, orphan), recorded in tw_conflicts, by kind",
  labelNames: ["kind"] as const,
  registers: [registry],
});

export const changesQuarantined = new Counter({
  name: "tidewire_changes_quarantined_total",
  help: "Changes kept aside because they could not be applied here (held: waiting for a parent row; failed: refused by the schema), by kind",
  labelNames: ["kind"] as const,
  registers: [registry],
});

export const consoleActions = new Counter({
  name: "tidewire_console_actions_total",
  help: "Actions asked of the hub's console API, by action (jobs: retry, cancel, run, priority, delete; schedules: pause, resume; conflicts: restore, retry), target (one, bulk; schedule; conflict, quarantined, all) and result (changed, unchanged, refused)",
  labelNames: ["action", "target", "result"] as const,
  registers: [registry],
});

export const pagesReclaimed = new Counter({
  name: "tidewire_vacuum_pages_reclaimed_total",
  help: "Free database pages returned to the file system by incremental vacuum (src/storage.ts)",
  registers: [registry],
});
