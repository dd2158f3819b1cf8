/**
 * QueueAdmin: the operator's reads and writes over one queue's jobs in
 * tw_jobs: a filtered, paged search with its total, a pending job's new
 * priority or due time, a delete, and one action over every job a filter
 * matches. The Queue owns it, as it owns Leases.
 *
 * Contract: the search's `q` is matched with LIKE on the payload's JSON text
 * and the last error, its %, _ and \ escaped, as a bound parameter. A bulk
 * action runs in one IMMEDIATE transaction: it counts the filter's jobs
 * first and, when the caller said how many it saw (`expect`) and the count
 * moved, refuses with ERR_COUNT_CHANGED and changes nothing; otherwise it
 * applies the single-job action to each matching job, so a bulk retry
 * respects dedup keys exactly as a single retry does.
 */
import type Database from "better-sqlite3";
import { TidewireError } from "../errors.js";
import type { Store } from "../store.js";
import { type JobRow, toJob } from "./rows.js";
import type {
  BulkOptions,
  JobAction,
  JobFilter,
  JobPage,
  JobUpdate,
  SearchOptions,
  SortBy,
} from "./types.js";
import { likePattern, normalizeBulk, normalizeFilter, normalizeList, normalizeUpdate } from "./validate.js";

const ORDER_COLUMN: Record<SortBy, string> = { created: "id", priority: "priority", runAt: "run_at" };
const MATCH = `queue = @queue AND (@state IS NULL OR state = @state) AND (@type IS NULL OR type = @type)
  AND (@q IS NULL OR payload LIKE @q ESCAPE '\\' OR last_error LIKE @q ESCAPE '\\')`;

/** The bulk action's refusal when the matching jobs changed since the caller counted them. */
export class CountChangedError extends TidewireError {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(
      `${actual} jobs match the filter now, not the ${expected} expected; nothing changed, count again`,
      "ERR_COUNT_CHANGED",
    );
    this.name = "CountChangedError";
  }
}

type Params = { queue: string; state: string | null; type: string | null; q: string | null };

export class QueueAdmin {
  private readonly searchSql = new Map<string, Database.Statement>();
  private readonly sql;

  constructor(
    private readonly store: Store,
    private readonly queue: string,
    /** Applies one action to one job inside the caller's transaction; true if it changed the job. */
    private readonly applyOne: (action: JobAction, id: number, priority: number | null) => boolean,
  ) {
    const db = store.db;
    this.sql = {
      count: db.prepare<Params>(`SELECT count(*) FROM tw_jobs WHERE ${MATCH}`).pluck(),
      ids: db.prepare<Params>(`SELECT id FROM tw_jobs WHERE ${MATCH} ORDER BY id`).pluck(),
      update: db.prepare<{ id: number; queue: string; priority: number | null; runAt: number | null }>(
        `UPDATE tw_jobs SET priority = coalesce(@priority, priority), run_at = coalesce(@runAt, run_at)
          WHERE id = @id AND queue = @queue AND state = 'pending'`,
      ),
      promote: db.prepare<{ id: number; queue: string; now: number }>(
        `UPDATE tw_jobs SET run_at = @now WHERE id = @id AND queue = @queue AND state = 'pending' AND run_at > @now`,
      ),
      remove: db.prepare<[number, string]>(
        `DELETE FROM tw_jobs WHERE id = ? AND queue = ? AND state <> 'running'`,
      ),
    };
  }

  search(options: SearchOptions | undefined): JobPage {
    const o = normalizeList(options);
    const params = this.params(options);
    const variant = `${o.sortBy}:${o.order}`;
    let stmt = this.searchSql.get(variant);
    if (!stmt) {
      // Six fixed variants, each prepared once; ORDER BY cannot be a parameter.
      const col = ORDER_COLUMN[o.sortBy];
      const dir = o.order === "desc" ? "DESC" : "ASC";
      stmt = this.store.db.prepare(
        `SELECT * FROM tw_jobs WHERE ${MATCH} ORDER BY ${col} ${dir}, id ${dir} LIMIT @limit OFFSET @offset`,
      );
      this.searchSql.set(variant, stmt);
    }
    // One read transaction, so the page and the total agree.
    return this.store.db.transaction(() => ({
      jobs: (stmt.all({ ...params, limit: o.limit, offset: o.offset }) as JobRow[]).map(toJob),
      total: this.sql.count.get(params) as number,
    }))();
  }

  count(filter?: JobFilter): number {
    return this.sql.count.get(this.params(filter)) as number;
  }

  /** Inside a write transaction: a pending job's priority and/or run_at. */
  updateRow(id: number, patch: JobUpdate): boolean {
    const { priority, runAt } = normalizeUpdate(patch);
    return this.sql.update.run({ id, queue: this.queue, priority, runAt }).changes > 0;
  }

  /** Inside a write transaction: a delayed pending job becomes due at `now`. */
  promoteRow(id: number, now: number): boolean {
    return this.sql.promote.run({ id, queue: this.queue, now }).changes > 0;
  }

  /** Inside a write transaction: deletes a job that is not running (a worker holds that one). */
  removeRow(id: number): boolean {
    return this.sql.remove.run(id, this.queue).changes > 0;
  }

  bulk(action: JobAction, filter: JobFilter | undefined, options?: BulkOptions): number {
    const params = this.params(filter);
    const o = normalizeBulk(action, options);
    return this.store.write(() => {
      const ids = this.sql.ids.all(params) as number[];
      if (o.expect !== null && ids.length !== o.expect) throw new CountChangedError(o.expect, ids.length);
      let changed = 0;
      for (const id of ids) if (this.applyOne(o.action, id, o.priority)) changed++;
      return changed;
    }, "queue.admin");
  }

  private params(filter: JobFilter | undefined): Params {
    const f = normalizeFilter(filter);
    return { queue: this.queue, state: f.state, type: f.type, q: likePattern(f.q) };
  }
}

/** The queues that hold any job, by name: what an operator may browse (none in a file without a queue). */
export function queueNames(store: Store): string[] {
  if (!store.hasTable("tw_jobs")) return [];
  return store.db.prepare("SELECT DISTINCT queue FROM tw_jobs ORDER BY queue").pluck().all() as string[];
}
