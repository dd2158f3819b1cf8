/**
 * SchemaWatch: notices when the app's migrations touched a tracked table and
 * brings its capture back, so capture never stops unnoticed.
 *
 * Contract: `check()` runs before every ingest (so before every read of the
 * log, every apply and every sync cycle) and costs one `PRAGMA
 * schema_version` while the schema stays put. When it moved, every tracked
 * table is inspected (`inspectCapture`: the table, its capture triggers, its
 * key and columns against `tw_tracked`) in one write transaction, and:
 *
 * - events staged before the change are logged first, where the table still
 *   has the columns capture knew;
 * - a table whose triggers are gone or stale (a rebuild: CREATE new__t, copy,
 *   DROP t, RENAME new__t TO t), or whose columns changed (ADD, RENAME, DROP
 *   COLUMN), or that was renamed (the triggers followed it), is restored by
 *   `Tracker.restore`: triggers reinstalled, columns matched, and the table
 *   reconciled with its log (reconcile.ts), so every write made while capture
 *   was missing is captured, with a fresh HLC, before anything is applied;
 * - a table that is gone (a rebuild caught half-way by a migration tool that
 *   runs its steps outside one transaction, or a real DROP) or can no longer
 *   be tracked gets a `Catalog.problem` naming what to run; its staged events
 *   are dropped (the reconciliation once it is back finds what they did) and
 *   the applier holds changes for it.
 *
 * A replica that only reads (`tidewire status`) calls `inspectCapture` and
 * reports; it repairs nothing.
 */
import type { Store } from "../store.js";
import type { Catalog, TrackedTable } from "./catalog.js";
import { NotTrackableError, readTable, schemaVersion } from "./schema.js";
import type { Tracker } from "./track.js";
import { installedTriggers, triggersCurrent } from "./triggers.js";

export interface CaptureStatus {
  table: string;
  bucket: string;
  /** ok; reconcile: capture is behind a schema change, restored at the next ingest or sync; missing: the table is gone; untrackable. */
  state: "ok" | "reconcile" | "missing" | "untrackable";
  /** The capture triggers are in place and current. */
  installed: boolean;
  /** Columns capture records (besides the key). */
  tracked: string[];
  /** Columns the table has now (besides the key); null when it is gone. */
  present: string[] | null;
  /** The table was renamed to this (its triggers followed it). */
  renamedTo?: string;
  /** What is wrong and what to run, when capture cannot restore itself. */
  problem: string | null;
}

/** How capture of one tracked table stands against its schema now. */
export function inspectCapture(store: Store, t: TrackedTable, path = "<db>"): CaptureStatus {
  const db = store.db;
  const base = { table: t.name, bucket: t.bucket, tracked: [...t.columns] };
  const triggers = installedTriggers(db, t.id);
  let info: ReturnType<typeof readTable>;
  try {
    info = readTable(db, t.name);
  } catch (err) {
    if (!(err instanceof NotTrackableError)) throw err;
    const moved = triggers.find((x) => x.table !== t.name)?.table;
    if (moved !== undefined) {
      let present: string[] | null = null;
      try {
        present = readTable(db, moved).columns;
      } catch {}
      return { ...base, state: "reconcile", installed: false, present, renamedTo: moved, problem: null };
    }
    const gone = /no such table/.test(err.message);
    const untrack = `tidewire untrack ${path} --table ${t.name}`;
    return {
      ...base,
      state: gone ? "missing" : "untrackable",
      installed: triggers.length > 0,
      present: null,
      problem: gone
        ? `tracked table "${t.name}" is missing: if a migration is rebuilding it, capture resumes by itself once it is back; if it was dropped for good, run \`${untrack}\``
        : `${err.message}; fix the table, or run \`${untrack}\` to stop syncing it`,
    };
  }
  const installed = triggersCurrent(triggers, t.id, info);
  const same =
    installed &&
    info.pk.join("\u0000") === t.pk.join("\u0000") &&
    info.columns.join("\u0000") === t.columns.join("\u0000");
  return { ...base, state: same ? "ok" : "reconcile", installed, present: info.columns, problem: null };
}

export class SchemaWatch {
  private seen = -1;

  constructor(
    private readonly store: Store,
    private readonly catalog: Catalog,
    private readonly tracker: Tracker,
    private readonly ingest: () => number,
  ) {}

  /** One pragma while the schema stays put; otherwise inspects and restores (see the contract). */
  check(): void {
    if (schemaVersion(this.store.db) === this.seen) return;
    this.store.write(() => {
      this.catalog.refresh(true);
      const todo: Array<[TrackedTable, CaptureStatus]> = [];
      for (const t of this.catalog.list()) {
        const s = inspectCapture(this.store, t);
        this.catalog.setProblem(t.name, s.problem);
        if (s.state === "reconcile") todo.push([t, s]);
      }
      if (todo.length > 0) {
        // Events staged before the change are logged with their own clocks while
        // the columns they touched are still there (in a savepoint: when they are
        // not, nothing is kept, and reconciliation finds what the events did).
        try {
          this.ingest();
        } catch {}
      }
      for (const [t, s] of todo) {
        try {
          this.tracker.restore(t, s.renamedTo);
        } catch (err) {
          if (!(err instanceof NotTrackableError)) throw err;
          this.catalog.setProblem(
            t.name,
            `${err.message}; fix the table, or run \`tidewire untrack <db> --table ${t.name}\` to stop syncing it`,
          );
        }
      }
      this.seen = schemaVersion(this.store.db);
    }, "replica.schema");
  }
}
