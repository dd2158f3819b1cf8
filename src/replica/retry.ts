/**
 * Retrier: tries quarantined changes again, inside the apply that makes it
 * worth trying (see conflicts.ts `due`).
 *
 * Contract: `retry` releases the due changes and applies them again through
 * the applier's own path (`applyIn`, in the caller's transaction), grouped by
 * the peer they came from; a change that still cannot be applied is
 * quarantined again by that path, and one the checks now refuse (a schema that
 * moved under it, a clock) is kept as failed with that reason while the rest
 * go on. A held parent that applies lets its held children go in a later
 * pass of the same call, up to MAX_RETRY_PASSES. `running` is true meanwhile,
 * so the applier does not retry from inside a retry.
 */
import type Database from "better-sqlite3";
import { type Conflicts, rowKey } from "./conflicts.js";
import { InvalidChangeError } from "./incoming.js";
import type { RowState } from "./merge.js";
import { schemaVersion } from "./schema.js";
import { toWire } from "./values.js";

/** Passes of retries after one batch: a chain of held parents this deep is let go at once. */
const MAX_RETRY_PASSES = 16;

/** What the applier's path reports of a batch: what it quarantined, the tables that took rows, the rows it wrote. */
export interface Applied {
  quarantined: Set<string>;
  filled: Set<string>;
  written: RowState[];
}

export class Retrier {
  running = false;

  constructor(
    private readonly db: Database.Database,
    private readonly conflicts: Conflicts,
    private readonly applyIn: (changes: unknown[], from: string | null) => Applied,
  ) {}

  /** Applies the due quarantined changes again; returns how many applied. */
  retry(filled: Set<string>, touched: Set<string>, everything: boolean): number {
    this.running = true;
    let applied = 0;
    try {
      for (let pass = 0, wanted = filled, rows = touched; pass < MAX_RETRY_PASSES; pass++) {
        const due = this.conflicts.due(wanted, rows, schemaVersion(this.db), everything && pass === 0);
        if (due.length === 0) break;
        this.conflicts.release(due.map((q) => q.id));
        const bySource = new Map<string | null, unknown[]>();
        for (const q of due) {
          const list = bySource.get(q.from);
          if (list) list.push(q.change);
          else bySource.set(q.from, [q.change]);
        }
        wanted = new Set();
        rows = new Set();
        let still = 0;
        for (const [from, changes] of bySource) {
          const r = this.applyKept(changes, from);
          still += r.still;
          for (const t of r.filled) wanted.add(t);
          for (const k of touchedKeys(r.written)) rows.add(k);
        }
        applied += due.length - still;
        if (wanted.size === 0 && rows.size === 0) break;
      }
      return applied;
    } finally {
      this.running = false;
    }
  }

  /** Applies kept changes; returns how many are still quarantined, and what the rest did. */
  private applyKept(
    changes: unknown[],
    from: string | null,
  ): { still: number; filled: Set<string>; written: RowState[] } {
    let left = changes;
    let refused = 0;
    for (;;) {
      try {
        const r = this.db.transaction(() => this.applyIn(left, from))();
        return { still: refused + r.quarantined.size, filled: r.filled, written: r.written };
      } catch (err) {
        if (!(err instanceof InvalidChangeError) || left[err.index] === undefined) throw err;
        this.conflicts.quarantine({
          kind: "failed",
          change: left[err.index] as never,
          from,
          reason: err.reason,
          schemaVersion: schemaVersion(this.db),
        });
        refused++;
        left = left.filter((_, i) => i !== err.index);
      }
    }
  }
}

/** The rows' identities across the wire (`rowKey`), as the quarantine keeps them. */
export function touchedKeys(states: RowState[]): Set<string> {
  return new Set(states.map((s) => rowKey(s.t.name, JSON.stringify(s.parts.map(toWire)))));
}
