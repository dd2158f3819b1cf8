/**
 * Listing: an outbox's messages a page at a time, filtered by state and sorted
 * by created, priority, size or updated, either way (`Outbox.list`).
 *
 * Contract: ORDER BY cannot be a parameter, so there is one fixed statement per
 * filter, column and direction, prepared once: nothing the caller passes ever
 * reaches the SQL text. Ties go by id in the same order, except priority
 * desc, which is the claim order (ties oldest first) and asc its exact
 * reverse, so the state index serves both without a sort.
 */
import type Database from "better-sqlite3";
import { checkInteger, checkObject, checkOneOf } from "../validate.js";
import { META_COLUMNS, type MetaRow, toMeta } from "./rows.js";
import { checkState } from "./states.js";
import type { OutboxListOptions, OutboxSortBy, StoreMeta } from "./types.js";

const SORTS: readonly OutboxSortBy[] = ["created", "priority", "size", "updated"];
const ORDERS = ["asc", "desc"] as const;

export class Listing {
  private readonly sql = new Map<string, Database.Statement>();

  constructor(
    db: Database.Database,
    private readonly spool: string,
  ) {
    for (const filtered of [false, true]) {
      for (const sortBy of SORTS) {
        for (const order of ORDERS) {
          this.sql.set(
            key(filtered, sortBy, order),
            db.prepare(
              `SELECT ${META_COLUMNS} FROM tw_outbox
                WHERE spool = @spool${filtered ? " AND state = @state" : ""}
                ORDER BY ${orderBy(sortBy, order)} LIMIT @limit OFFSET @offset`,
            ),
          );
        }
      }
    }
  }

  list(options?: OutboxListOptions): StoreMeta[] {
    const o = options ?? {};
    checkObject("options", o);
    const state = o.state === undefined ? null : checkState("state", o.state);
    const sortBy = checkOneOf("sortBy", o.sortBy ?? "created", SORTS);
    const order = checkOneOf("order", o.order ?? "asc", ORDERS);
    const limit = o.limit === undefined ? 100 : checkInteger("limit", o.limit, 1);
    const offset = o.offset === undefined ? 0 : checkInteger("offset", o.offset, 0);
    const stmt = this.sql.get(key(state !== null, sortBy, order))!;
    const params: Record<string, unknown> = { spool: this.spool, limit, offset };
    if (state !== null) params.state = state;
    return (stmt.all(params) as MetaRow[]).map(toMeta);
  }
}

function key(filtered: boolean, sortBy: OutboxSortBy, order: "asc" | "desc"): string {
  return `${filtered ? "state" : "all"}:${sortBy}:${order}`;
}

function orderBy(sortBy: OutboxSortBy, order: "asc" | "desc"): string {
  const dir = order === "desc" ? "DESC" : "ASC";
  switch (sortBy) {
    case "created":
      return `id ${dir}`;
    case "priority":
      return order === "desc" ? "priority DESC, id ASC" : "priority ASC, id DESC";
    case "size":
      return `size ${dir}, id ${dir}`;
    case "updated":
      return `updated_at ${dir}, id ${dir}`;
  }
}
