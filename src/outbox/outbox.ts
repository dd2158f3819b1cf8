/**
 * Outbox: a message spool in the Store's SQLite file.
 *
 * Contract: a message moves incoming -> active -> delivered, or from active
 * to deferred (with a next attempt time from exponential backoff with jitter)
 * and back to active once that time has come, or to bounced; delivered and
 * bounced are final. `defer` bounces a message whose attempts are spent. No
 * other move exists, and `moveToState` refuses any other. Each move is one
 * IMMEDIATE transaction that re-reads the state it moves from, so two
 * processes can never both move a message out of the same state.
 *
 * An attempt counts when a message enters active (by `claim` or
 * `moveToState`), before anyone tries to deliver it: a deliverer that dies
 * mid-attempt has still spent it, and `attempts` never exceeds `maxAttempts`.
 * There is no lease: a message left active by a deliverer that died stays
 * active until someone defers or bounces it (`list({ state: "active",
 * sortBy: "updated" })` finds the oldest).
 *
 * Bodies are stored as bytes; a string body comes back as the same string,
 * bytes come back as a Buffer.
 */
import type Database from "better-sqlite3";
import { InvalidArgumentError } from "../errors.js";
import { backoffDelay, resolveBackoff, validateBackoff } from "../queue/backoff.js";
import type { BackoffOptions } from "../queue/types.js";
import { checkDuration, checkId, checkInteger, checkName, checkOneOf } from "../queue/validate.js";
import type { Store } from "../store.js";
import {
  type CurrentRow,
  checkError,
  encodeBody,
  META_COLUMNS,
  type MessageRow,
  type MetaRow,
  type MoveParams,
  serializeHeaders,
  toMessage,
  toMeta,
} from "./rows.js";
import { checkFrom, checkState, FINAL_STATES, IllegalTransitionError } from "./states.js";
import {
  type MessageBody,
  OUTBOX_STATES,
  OUTBOX_TRANSITIONS,
  type OutboxCounts,
  type OutboxListOptions,
  type OutboxMessage,
  type OutboxOptions,
  type OutboxSortBy,
  type OutboxState,
  type PurgeOptions,
  type StoreMessageOptions,
  type StoreMeta,
} from "./types.js";

const DEFAULT_MAX_ATTEMPTS = 5;
const DAY_MS = 86_400_000;
const SORTS: readonly OutboxSortBy[] = ["created", "priority", "size", "updated"];
const ORDERS = ["asc", "desc"] as const;

export class Outbox {
  readonly name: string;
  readonly maxAttempts: number;
  private readonly backoff: Required<BackoffOptions>;
  private readonly clock: () => number;
  private readonly sql;
  private readonly listSql = new Map<string, Database.Statement>();

  constructor(
    /** The Store this outbox lives in (`store` is the spool's verb here). */
    readonly database: Store,
    name = "default",
    options: OutboxOptions = {},
  ) {
    this.name = checkName("name", name);
    const o = options ?? {};
    if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
    this.maxAttempts =
      o.maxAttempts === undefined ? DEFAULT_MAX_ATTEMPTS : checkInteger("maxAttempts", o.maxAttempts, 1);
    validateBackoff("backoff", o.backoff);
    this.backoff = resolveBackoff(o.backoff);
    if (o.clock !== undefined && typeof o.clock !== "function") {
      throw new InvalidArgumentError("clock", "must be a function returning epoch ms");
    }
    this.clock = o.clock ?? Date.now;
    const db = database.db;
    this.sql = {
      insert: db.prepare<[string, string, string, number, number, number, number, number, Buffer]>(
        `INSERT INTO tw_outbox (spool, state, headers, body_kind, size, priority, max_attempts,
                                created_at, updated_at, body)
         VALUES (?, 'incoming', ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING ${META_COLUMNS}`,
      ),
      get: db.prepare<[number, string]>(`SELECT * FROM tw_outbox WHERE id = ? AND spool = ?`),
      getMeta: db.prepare<[number, string]>(
        `SELECT ${META_COLUMNS} FROM tw_outbox WHERE id = ? AND spool = ?`,
      ),
      current: db.prepare<[number, string]>(
        `SELECT state, attempts, max_attempts FROM tw_outbox WHERE id = ? AND spool = ?`,
      ),
      // Every move but the claim; the WHERE re-checks the state the caller read.
      move: db.prepare<[MoveParams]>(
        `UPDATE tw_outbox
            SET state = @to,
                attempts = CASE WHEN @to = 'active' THEN attempts + 1 ELSE attempts END,
                next_attempt_at = @next,
                last_error = coalesce(@error, last_error),
                updated_at = @now
          WHERE id = @id AND spool = @spool AND state = @from
        RETURNING ${META_COLUMNS}`,
      ),
      claim: db.prepare<[{ now: number; spool: string; limit: number }]>(
        `UPDATE tw_outbox
            SET state = 'active', attempts = attempts + 1, next_attempt_at = NULL, updated_at = @now
          WHERE id IN (SELECT id FROM tw_outbox
                        WHERE spool = @spool AND state IN ('incoming', 'deferred')
                          AND (state = 'incoming' OR next_attempt_at <= @now)
                        ORDER BY priority DESC, id LIMIT @limit)
        RETURNING *`,
      ),
      counts: db.prepare<[string]>(
        `SELECT state, count(*) AS n FROM tw_outbox WHERE spool = ? GROUP BY state`,
      ),
      // Two fixed slots instead of json_each, so the state index narrows the delete.
      purge: db.prepare<[string, OutboxState, OutboxState, number]>(
        `DELETE FROM tw_outbox WHERE spool = ? AND state IN (?, ?) AND updated_at < ?`,
      ),
    };
    // ORDER BY cannot be a parameter: one fixed statement per filter, column and
    // direction, so nothing the caller passes ever reaches the SQL text.
    for (const filtered of [false, true]) {
      for (const sortBy of SORTS) {
        for (const order of ORDERS) {
          this.listSql.set(
            listKey(filtered, sortBy, order),
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

  now(): number {
    return this.clock();
  }

  /** Spools a new message in state incoming. */
  store(body: MessageBody, options?: StoreMessageOptions): StoreMeta {
    const { bytes, kind } = encodeBody(body);
    const o = options ?? {};
    if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
    const headers = serializeHeaders(o.headers);
    const priority = o.priority === undefined ? 0 : checkInteger("priority", o.priority, -(2 ** 31));
    const maxAttempts =
      o.maxAttempts === undefined ? this.maxAttempts : checkInteger("maxAttempts", o.maxAttempts, 1);
    const row = this.database.write(() => {
      const now = this.now();
      return this.sql.insert.get(
        this.name,
        headers,
        kind,
        bytes.length,
        priority,
        maxAttempts,
        now,
        now,
        bytes,
      ) as MetaRow;
    }, "outbox");
    return toMeta(row);
  }

  get(id: number): OutboxMessage | undefined {
    const row = this.sql.get.get(checkId(id), this.name) as MessageRow | undefined;
    return row && toMessage(row);
  }

  getMeta(id: number): StoreMeta | undefined {
    const row = this.sql.getMeta.get(checkId(id), this.name) as MetaRow | undefined;
    return row && toMeta(row);
  }

  list(options?: OutboxListOptions): StoreMeta[] {
    const o = options ?? {};
    if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
    const state = o.state === undefined ? null : checkState("state", o.state);
    const sortBy = checkOneOf("sortBy", o.sortBy ?? "created", SORTS);
    const order = checkOneOf("order", o.order ?? "asc", ORDERS);
    const limit = o.limit === undefined ? 100 : checkInteger("limit", o.limit, 1);
    const offset = o.offset === undefined ? 0 : checkInteger("offset", o.offset, 0);
    const stmt = this.listSql.get(listKey(state !== null, sortBy, order))!;
    const params: Record<string, unknown> = { spool: this.name, limit, offset };
    if (state !== null) params.state = state;
    return (stmt.all(params) as MetaRow[]).map(toMeta);
  }

  /**
   * Moves a message to `to` if it is in one of `from` (any state when omitted);
   * false when it is not there or does not exist. A move the graph does not
   * allow is refused: an InvalidArgumentError when `from`/`to` name one, an
   * IllegalTransitionError when it is the message's current state.
   */
  moveToState(id: number, to: OutboxState, options?: { from?: OutboxState | OutboxState[] }): boolean {
    checkId(id);
    checkState("to", to);
    if (to === "incoming") {
      throw new InvalidArgumentError(
        "to",
        "no message moves back to incoming; store() creates incoming messages",
      );
    }
    const o = options ?? {};
    if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
    const from = checkFrom(o.from, to);
    return this.database.write(() => {
      const cur = this.sql.current.get(id, this.name) as CurrentRow | undefined;
      if (!cur || (from !== null && !from.includes(cur.state))) return false;
      if (!OUTBOX_TRANSITIONS[cur.state].includes(to)) throw new IllegalTransitionError(id, cur.state, to);
      const now = this.now();
      let next: number | null = null;
      if (to === "deferred") {
        if (cur.attempts >= cur.max_attempts) {
          throw new IllegalTransitionError(
            id,
            cur.state,
            to,
            `it has spent all ${cur.max_attempts} attempts, so it can only be bounced`,
          );
        }
        next = now + backoffDelay(cur.attempts, this.backoff);
      }
      const params = { to, next, error: null, now, id, spool: this.name, from: cur.state };
      return this.sql.move.get(params) !== undefined;
    }, "outbox");
  }

  /** Moves due incoming and deferred messages to active, highest priority then oldest first. */
  claim(limit: number): OutboxMessage[] {
    checkInteger("limit", limit, 1);
    const rows = this.database.write(
      () => this.sql.claim.all({ now: this.now(), spool: this.name, limit }) as MessageRow[],
      "outbox",
    );
    // RETURNING gives no order; hand messages out in claim order.
    rows.sort((a, b) => b.priority - a.priority || a.id - b.id);
    return rows.map(toMessage);
  }

  /** Active -> delivered; false when the message is not active. */
  delivered(id: number): boolean {
    checkId(id);
    return this.database.write(() => {
      const params: MoveParams = {
        to: "delivered",
        next: null,
        error: null,
        now: this.now(),
        id,
        spool: this.name,
        from: "active",
      };
      return this.sql.move.get(params) !== undefined;
    }, "outbox");
  }

  /**
   * Active -> deferred, due after the backoff for the attempts spent, or ->
   * bounced when none are left; keeps `error` as lastError. Returns the moved
   * message, or undefined when it is not active.
   */
  defer(id: number, error: string | Error): StoreMeta | undefined {
    checkId(id);
    const text = checkError(error);
    return this.database.write(() => {
      const cur = this.sql.current.get(id, this.name) as CurrentRow | undefined;
      if (cur?.state !== "active") return undefined;
      const now = this.now();
      const bounce = cur.attempts >= cur.max_attempts;
      const row = this.sql.move.get({
        to: bounce ? "bounced" : "deferred",
        next: bounce ? null : now + backoffDelay(cur.attempts, this.backoff),
        error: text,
        now,
        id,
        spool: this.name,
        from: "active",
      }) as MetaRow;
      return toMeta(row);
    }, "outbox");
  }

  counts(): OutboxCounts {
    const out = Object.fromEntries(OUTBOX_STATES.map((s) => [s, 0])) as OutboxCounts;
    out.total = 0;
    for (const r of this.sql.counts.all(this.name) as Array<{ state: OutboxState; n: number }>) {
      out[r.state] = r.n;
      out.total += r.n;
    }
    return out;
  }

  /** Deletes final messages whose last move is older than `olderThanMs`; returns how many. */
  purge(options?: PurgeOptions): number {
    const o = options ?? {};
    if (typeof o !== "object") throw new InvalidArgumentError("options", "must be an object");
    const olderThan = o.olderThanMs === undefined ? 7 * DAY_MS : checkDuration("olderThanMs", o.olderThanMs);
    const states = o.states ?? FINAL_STATES;
    if (!Array.isArray(states) || states.length === 0) {
      throw new InvalidArgumentError("states", "must be a non-empty array of states");
    }
    for (const s of states) {
      if (!FINAL_STATES.includes(checkState("states", s))) {
        throw new InvalidArgumentError(
          "states",
          `purge removes final messages only (delivered, bounced), not ${s}`,
        );
      }
    }
    const [a, b = a] = states as [OutboxState, OutboxState?];
    return this.database.write(
      () => this.sql.purge.run(this.name, a, b, this.now() - olderThan).changes,
      "outbox",
    );
  }
}

function listKey(filtered: boolean, sortBy: OutboxSortBy, order: "asc" | "desc"): string {
  return `${filtered ? "state" : "all"}:${sortBy}:${order}`;
}

function orderBy(sortBy: OutboxSortBy, order: "asc" | "desc"): string {
  const dir = order === "desc" ? "DESC" : "ASC";
  switch (sortBy) {
    case "created":
      return `id ${dir}`;
    case "priority":
      // desc is the claim order and asc its exact reverse, so the state index serves both without a sort.
      return order === "desc" ? "priority DESC, id ASC" : "priority ASC, id DESC";
    case "size":
      return `size ${dir}, id ${dir}`;
    case "updated":
      return `updated_at ${dir}, id ${dir}`;
  }
}
