/**
 * Versioned schema migrations, recorded in `PRAGMA user_version`.
 *
 * Append only: a released migration is never edited, a change is a new entry.
 * All tidewire tables are prefixed `tw_` so they never collide with the
 * application's. Migrations run in one IMMEDIATE transaction that re-reads the
 * version, so processes opening the same new file at once apply each step once.
 */
import type Database from "better-sqlite3";

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "queue",
    sql: `
      -- AUTOINCREMENT: an id is never handed out twice, even after cleanup deleted the newest
      -- jobs, so a job id named in a log or a CLI command always means the same job.
      CREATE TABLE tw_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        -- One of pending, running, completed, failed, cancelled. Not a CHECK: only the queue's
        -- own statements write it, always as literals, and the CHECK cost ~20% of bulk insert.
        state TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        run_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        backoff TEXT,
        key TEXT,
        lease_owner TEXT,
        lease_expires_at INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER
      );
      -- The claim walks this index in order and stops after LIMIT rows: no sort.
      CREATE INDEX tw_jobs_claim ON tw_jobs(queue, priority DESC, run_at, id) WHERE state = 'pending';
      CREATE UNIQUE INDEX tw_jobs_key ON tw_jobs(queue, key)
        WHERE key IS NOT NULL AND state IN ('pending', 'running');
      CREATE INDEX tw_jobs_lease ON tw_jobs(lease_expires_at) WHERE state = 'running';
      -- Only finished rows: inserts and claims never touch it; cleanup walks it by age.
      CREATE INDEX tw_jobs_finished ON tw_jobs(queue, finished_at)
        WHERE state IN ('completed', 'failed', 'cancelled');

      CREATE TABLE tw_periodic (
        queue TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        every_ms INTEGER,
        cron TEXT,
        timezone TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER,
        next_run_at INTEGER NOT NULL,
        last_run_at INTEGER,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (queue, name),
        CHECK ((every_ms IS NULL) <> (cron IS NULL))
      );
    `,
  },
  {
    version: 2,
    name: "outbox",
    sql: `
      CREATE TABLE tw_outbox (
        id INTEGER PRIMARY KEY,
        spool TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('incoming','active','delivered','deferred','bounced')),
        headers TEXT NOT NULL,
        -- Whether the body was given as a string, so it comes back as one.
        body_kind TEXT NOT NULL CHECK (body_kind IN ('text','binary')),
        size INTEGER NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        next_attempt_at INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        -- Last: reading a column stored after a large blob walks its overflow pages.
        body BLOB NOT NULL,
        CHECK (attempts <= max_attempts),
        CHECK (state <> 'deferred' OR next_attempt_at IS NOT NULL)
      );
      CREATE INDEX tw_outbox_state ON tw_outbox(spool, state, priority DESC, id);
      -- The claim walks this index in order and stops after LIMIT rows: no sort.
      CREATE INDEX tw_outbox_due ON tw_outbox(spool, priority DESC, id) WHERE state IN ('incoming', 'deferred');
    `,
  },
  {
    version: 3,
    name: "replica",
    sql: `
      -- One row: the node id, the hybrid logical clock, the local sequence
      -- counter, and the flag that turns capture off inside the applier's own
      -- transaction (triggers cannot read TEMP objects, so it lives here).
      CREATE TABLE tw_clock (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        node TEXT NOT NULL,
        hlc INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL DEFAULT 0,
        suppress INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE tw_tracked (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        bucket TEXT NOT NULL,
        -- JSON arrays of column names: the key in key order, then the other captured columns.
        -- A relayed table (relayed = 1) is one a relay keeps the log of without having it:
        -- its pk holds one "" per key part and cols is [].
        pk TEXT NOT NULL,
        cols TEXT NOT NULL,
        tracked_at INTEGER NOT NULL,
        relayed INTEGER NOT NULL DEFAULT 0
      );
      -- The compacted change log: the latest clock per (table, key, column); column ''
      -- is the row entry (val 1: inserted, 0: tombstone). A live row entry also stands
      -- for every column without an entry of its own (an insert writes them all at
      -- once). val is NULL where the value lives in the table (a tracked column of an
      -- existing row); otherwise it holds the value. pk and val have no type, so every
      -- value keeps its storage class.
      CREATE TABLE tw_log (
        tbl INTEGER NOT NULL,
        pk NOT NULL,
        col TEXT NOT NULL,
        val,
        hlc INTEGER NOT NULL,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (tbl, pk, col)
      ) WITHOUT ROWID;
      CREATE INDEX tw_log_seq ON tw_log(seq);
      CREATE TABLE tw_cursors (
        peer TEXT NOT NULL,
        bucket TEXT NOT NULL,
        direction TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (peer, bucket, direction)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    name: "peers",
    sql: `
      -- The replicas this one syncs with (src/peers/peers.ts). id is the peer's node id when
      -- known, else one derived from its address; node_id is the id its hub answered a
      -- handshake with, so removing a peer finds the cursors SyncManager keyed by it.
      -- token is kept in clear: whoever can read this file can call that peer's hub.
      CREATE TABLE tw_peers (
        id TEXT PRIMARY KEY,
        address TEXT UNIQUE,
        node_id TEXT,
        buckets TEXT NOT NULL DEFAULT '[]',
        token TEXT,
        state TEXT NOT NULL DEFAULT 'unknown' CHECK (state IN ('up', 'down', 'unknown')),
        -- Since when the peer is in its state (the time of the ping that put it there).
        state_changed_at INTEGER,
        last_seen_at INTEGER,
        rtt_ms REAL,
        last_error TEXT,
        added_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: "pins",
    sql: `
      -- The columns whose cells may name a pin (src/pins/references.ts): a cell that holds
      -- 64 lowercase hex digits references the pin of that sha256.
      CREATE TABLE tw_pin_columns (
        tbl TEXT NOT NULL,
        col TEXT NOT NULL,
        declared_at INTEGER NOT NULL,
        PRIMARY KEY (tbl, col)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 6,
    name: "replica-source",
    sql: `
      -- The peer an applied log entry was received from (NULL: a local write), so
      -- changesSince can leave out what that peer sent: a client does not push
      -- back what it pulled from the hub. Capture triggers do not write it; an
      -- entry whose origin is this node is local whatever src says.
      ALTER TABLE tw_log ADD COLUMN src TEXT;
    `,
  },
  {
    version: 7,
    name: "relay-row-values",
    sql: `
      -- A relay has no table to hold a relayed insert's values, so its row entry
      -- keeps them: a JSON object of column -> wire value, one log row per insert
      -- instead of one per column. A column entry of its own, newer, wins over
      -- the value here (as a table's column entry wins over the row's value).
      -- NULL for every table the replica tracks.
      ALTER TABLE tw_log ADD COLUMN vals TEXT;
    `,
  },
  {
    version: 8,
    name: "replica-staged-capture",
    sql: `
      -- Staged capture (src/replica/ingest.ts): a capture trigger only appends here,
      -- and ingest moves the rows into tw_log, one row per event, the rowid giving
      -- capture order. kind: 0 tombstone, 1 insert, 2 update, whose mask says which
      -- of the table's captured columns changed (bit i: column i; a table with more
      -- than 63 has a text of 19 digits per 63 columns, see triggers.ts). pk is the key as
      -- tw_log stores it, jd julianday('now') at the write: the event's HLC is taken
      -- from it at ingest, so it says when the write happened.
      -- No index, no types, no constraints: each would be paid by every write.
      CREATE TABLE tw_pending (id INTEGER PRIMARY KEY, tbl, pk, kind, mask, jd);
    `,
  },
  {
    version: 9,
    name: "replica-conflicts",
    sql: `
      -- What a resolution rule overrode, and changes that could not be applied
      -- here (yet): src/replica/conflicts.ts. kind: unique, insert, orphan (a
      -- write a rule removed or overrode; lost and kept hold both versions as
      -- JSON), held (waits for a parent row), failed (refused by the schema).
      -- A quarantined change (held, failed) keeps its wire form in change and
      -- the peer it came from in src; it is retried, and deleted once applied.
      -- One record per lost write: the same lost write resolved again (a batch
      -- delivered twice) is not recorded twice.
      CREATE TABLE tw_conflicts (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        tbl TEXT NOT NULL,
        pk TEXT NOT NULL,
        hlc TEXT NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT NOT NULL,
        lost TEXT,
        kept TEXT,
        change TEXT,
        src TEXT,
        waits TEXT,
        schema_version INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        restored_at INTEGER,
        UNIQUE (kind, tbl, pk, hlc, origin)
      );
      CREATE INDEX tw_conflicts_quarantine ON tw_conflicts (kind) WHERE kind IN ('held', 'failed');
    `,
  },
  {
    version: 10,
    name: "replica-fingerprints",
    sql: `
      -- Capture triggers name only the key (so the app's ALTER TABLE … DROP COLUMN and
      -- table rebuilds work); ingest finds which columns an update changed by comparing
      -- the row with its fingerprint: on a live row entry (col ''), 8 bytes of hash per
      -- captured column, in tw_tracked.cols order (src/replica/fingerprint.ts). NULL
      -- elsewhere, and on rows logged before this migration until their table is
      -- re-tracked (which a replica does on open).
      ALTER TABLE tw_log ADD COLUMN fp BLOB;
    `,
  },
  {
    version: 11,
    name: "job-timeout",
    sql: `
      -- A job's own time limit per attempt (AddOptions.timeoutMs); NULL: the worker's
      -- limit for its type, if any. Old rows keep NULL, which is what they meant.
      ALTER TABLE tw_jobs ADD COLUMN timeout_ms INTEGER;
    `,
  },
  {
    version: 12,
    name: "replica-table-renames",
    sql: `
      -- A tracked table renamed here (ALTER TABLE … RENAME TO, Django's RenameModel):
      -- its old name, so changes peers still send under it (they have not migrated
      -- yet, or sent them before) apply to the table under its new name.
      CREATE TABLE IF NOT EXISTS tw_renames (old TEXT PRIMARY KEY, new TEXT NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;
    `,
  },
  {
    version: 13,
    name: "remote-targets",
    sql: `
      -- Remote targets the daemon keeps in sync (src/remote/registry.ts). url holds any
      -- secret (a PostgreSQL password, a libSQL authToken) and is never shown; target is
      -- the same URL without them, the name every output uses and the key of the target's
      -- cursors and spooled payloads, so one store is registered once. tables, buckets and
      -- d1 are JSON (NULL: no filter, not D1). The last_* fields are the outcome of the
      -- daemon's RemoteSync jobs; last_error is kept after a success (compare the times).
      CREATE TABLE tw_remotes (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        target TEXT NOT NULL UNIQUE,
        backend TEXT NOT NULL,
        direction TEXT NOT NULL DEFAULT 'both' CHECK (direction IN ('push', 'pull', 'both')),
        interval_ms INTEGER NOT NULL DEFAULT 60000 CHECK (interval_ms > 0),
        tables TEXT,
        buckets TEXT,
        d1 TEXT,
        paused INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        last_attempt_at INTEGER,
        last_push_at INTEGER,
        last_pull_at INTEGER,
        last_success_at INTEGER,
        last_error TEXT,
        last_error_at INTEGER
      );
    `,
  },
  {
    version: 14,
    name: "history",
    sql: `
      -- Rollups of what the daemon measured (src/history/rollups.ts), per minute (step
      -- 60000, kept a day) and per hour (step 3600000, kept 30 days): per series
      -- (jobs.completed, jobs.run, changes.pushed …) and label (a job type, a peer, hub or
      -- sync), the period's count; for a latency series also the sum, extremes and a
      -- log-bucket histogram of its durations (src/history/histogram.ts: JSON pairs of
      -- bucket, count), which merge across periods. at is the epoch ms the period starts.
      -- Written once a minute in one transaction, never per job.
      CREATE TABLE tw_rollups (
        series TEXT NOT NULL,
        step INTEGER NOT NULL,
        at INTEGER NOT NULL,
        label TEXT NOT NULL,
        count INTEGER NOT NULL,
        sum REAL NOT NULL DEFAULT 0,
        min REAL,
        max REAL,
        hist TEXT,
        PRIMARY KEY (series, step, at, label)
      ) WITHOUT ROWID;
      -- The prune deletes by step and age alone.
      CREATE INDEX tw_rollups_age ON tw_rollups(step, at);
    `,
  },
  {
    version: 15,
    name: "otel",
    sql: `
      -- The W3C traceparent of the span active at add() (src/trace.ts), so the run's span is
      -- its child even in another process or after a restart. NULL when tracing was off or
      -- no span was active, which is every row written before this migration.
      ALTER TABLE tw_jobs ADD COLUMN trace TEXT;
    `,
  },
  {
    version: 16,
    name: "knobs",
    sql: `
      -- When an operator paused the schedule; NULL: it fires. A paused schedule keeps its
      -- row (and its grid), so resuming needs nothing but this column cleared.
      ALTER TABLE tw_periodic ADD COLUMN paused_at INTEGER;
      -- The outbox as a drop-in spool: the caller's own id for a message (RetrySpool's
      -- string ids), unique within a spool; NULL for messages stored without one.
      ALTER TABLE tw_outbox ADD COLUMN message_id TEXT;
      CREATE UNIQUE INDEX tw_outbox_message_id ON tw_outbox(spool, message_id) WHERE message_id IS NOT NULL;
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Whether the file was ever given tidewire's schema (migration 1's table is
 * there): a command checks this first, read-only, so a mistyped path to
 * another application's SQLite file is never migrated or switched to WAL.
 */
export function hasTidewireSchema(db: Database.Database): boolean {
  return (
    db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tw_jobs'").get() !== undefined
  );
}

export function migrate(db: Database.Database): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current >= SCHEMA_VERSION) return;
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    for (const m of MIGRATIONS) {
      if (m.version <= version) continue;
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }
  }).immediate();
}
