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
 *
 * A message is named by the Outbox's number or by the caller's own string id
 * given to `store` (a drop-in spool's ids; unique in its outbox). `store` may
 * also carry a message over from another spool as it was, and `update`
 * changes metadata without a move; both keep the invariants above (see
 * src/outbox/spool.ts). A string id is resolved inside the same transaction
 * as the move it names.
 */

import { exponentialDelay } from "../backoff.js";
import { InvalidArgumentError } from "../errors.js";
import { resolveBackoff, validateBackoff } from "../queue/backoff.js";
import type { BackoffOptions } from "../queue/types.js";
import type { Store } from "../store.js";
import { checkDuration, checkInteger, checkName, checkObject } from "../validate.js";
import { emptyCounts } from "./counts.js";
import { Listing } from "./listing.js";
import {
  type CurrentRow,
  checkError,
  encodeBody,
  META_COLUMNS,
  type MessageRow,
  type MetaRow,
  type MoveParams,
  toMessage,
  toMeta,
} from "./rows.js";
import {
  checkPatch,
  checkRef,
  DuplicateMessageError,
  type NewMessage,
  normalizePatch,
  normalizeStore,
  type PatchValues,
} from "./spool.js";
import { checkFrom, checkState, describeMoves, FINAL_STATES, IllegalTransitionError } from "./states.js";
import {
  type MessageBody,
  type MessageRef,
  type MetaPatch,
  OUTBOX_TRANSITIONS,
  type OutboxCounts,
  type OutboxListOptions,
  type OutboxMessage,
  type OutboxOptions,
  type OutboxState,
  type PurgeOptions,
  type StoreMessageOptions,
  type StoreMeta,
} from "./types.js";

const DEFAULT_MAX_ATTEMPTS = 5;
const DAY_MS = 86_400_000;

type InsertParams = NewMessage & {
  spool: string;
  kind: "text" | "binary";
  size: number;
  body: Buffer;
  now: number;
};

export class Outbox {
  readonly name: string;
  readonly maxAttempts: number;
  readonly defaultPriority: number;
  private readonly backoff: Required<BackoffOptions>;
  private readonly clock: () => number;
  private readonly sql;
  private readonly listing: Listing;

  constructor(
    /** The Store this outbox lives in (`store` is the spool's verb here). */
    readonly database: Store,
    name = "default",
    options: OutboxOptions = {},
  ) {
    this.name = checkName("name", name);
    const o = options ?? {};
    checkObject("options", o);
    this.maxAttempts =
      o.maxAttempts === undefined ? DEFAULT_MAX_ATTEMPTS : checkInteger("maxAttempts", o.maxAttempts, 1);
    this.defaultPriority =
      o.defaultPriority === undefined ? 0 : checkInteger("defaultPriority", o.defaultPriority, -(2 ** 31));
    validateBackoff("backoff", o.backoff);
    this.backoff = resolveBackoff(o.backoff);
    if (o.clock !== undefined && typeof o.clock !== "function") {
      throw new InvalidArgumentError("clock", "must be a function returning epoch ms");
    }
    this.clock = o.clock ?? Date.now;
    const db = database.db;
    this.sql = {
      insert: db.prepare<InsertParams>(
        `INSERT INTO tw_outbox (spool, message_id, state, headers, body_kind, size, priority, attempts,
                                max_attempts, next_attempt_at, last_error, created_at, updated_at, body)
         VALUES (@spool, @messageId, @state, @headers, @kind, @size, @priority, @attempts,
                 @maxAttempts, @nextAttemptAt, @lastError, @now, @now, @body)
         RETURNING ${META_COLUMNS}`,
      ),
      get: db.prepare<[number, string]>(`SELECT * FROM tw_outbox WHERE id = ? AND spool = ?`),
      getMeta: db.prepare<[number, string]>(
        `SELECT ${META_COLUMNS} FROM tw_outbox WHERE id = ? AND spool = ?`,
      ),
      // The caller's own ids, through the partial unique index tw_outbox_message_id.
      getByKey: db.prepare<[string, string]>(
        `SELECT * FROM tw_outbox WHERE message_id = ? AND spool = ? AND message_id IS NOT NULL`,
      ),
      getMetaByKey: db.prepare<[string, string]>(
        `SELECT ${META_COLUMNS} FROM tw_outbox WHERE message_id = ? AND spool = ? AND message_id IS NOT NULL`,
      ),
      idOfKey: db
        .prepare<[string, string]>(
          `SELECT id FROM tw_outbox WHERE message_id = ? AND spool = ? AND message_id IS NOT NULL`,
        )
        .pluck(),
      patch: db.prepare<PatchValues & { id: number; spool: string }>(
        `UPDATE tw_outbox
            SET headers = coalesce(@headers, headers), priority = coalesce(@priority, priority),
                attempts = coalesce(@attempts, attempts), max_attempts = coalesce(@maxAttempts, max_attempts),
                next_attempt_at = CASE WHEN @setNext THEN @next ELSE next_attempt_at END,
                last_error = CASE WHEN @setError THEN @error ELSE last_error END
          WHERE id = @id AND spool = @spool
        RETURNING ${META_COLUMNS}`,
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
    this.listing = new Listing(db, this.name);
  }

  now(): number {
    return this.clock();
  }

  /**
   * Spools a new message, in state incoming unless `options` carry it over from
   * another spool as it was (state, attempts, next attempt time, last error; see
   * src/outbox/spool.ts for what must hold). An `id` this outbox already holds is
   * refused with a DuplicateMessageError, and nothing is written.
   */
  store(body: MessageBody, options?: StoreMessageOptions): StoreMeta {
    const { bytes, kind } = encodeBody(body);
    const o = options ?? {};
    checkObject("options", o);
    const msg = normalizeStore(o, { priority: this.defaultPriority, maxAttempts: this.maxAttempts });
    try {
      const row = this.database.write(() => {
        const now = this.now();
        const params = { ...msg, spool: this.name, kind, size: bytes.length, body: bytes, now };
        return this.sql.insert.get(params) as MetaRow;
      }, "outbox");
      return toMeta(row);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (msg.messageId !== null && code === "SQLITE_CONSTRAINT_UNIQUE")
        throw new DuplicateMessageError(this.name, msg.messageId);
      throw err;
    }
  }

  /** By the Outbox's number or by the caller's own id. */
  get(id: MessageRef): OutboxMessage | undefined {
    const ref = checkRef(id);
    const row = (
      typeof ref === "string" ? this.sql.getByKey.get(ref, this.name) : this.sql.get.get(ref, this.name)
    ) as MessageRow | undefined;
    return row && toMessage(row);
  }

  getMeta(id: MessageRef): StoreMeta | undefined {
    const ref = checkRef(id);
    const row = (
      typeof ref === "string"
        ? this.sql.getMetaByKey.get(ref, this.name)
        : this.sql.getMeta.get(ref, this.name)
    ) as MetaRow | undefined;
    return row && toMeta(row);
  }

  /**
   * Changes a stored message's metadata (see MetaPatch); its state is left as it
   * is. Returns the message, or undefined when there is none of that id. A patch
   * that would break an invariant is refused and writes nothing.
   */
  update(id: MessageRef, patch: MetaPatch): StoreMeta | undefined {
    const ref = checkRef(id);
    checkPatch(patch);
    return this.database.write(() => {
      const rowId = this.rowId(ref);
      const row = rowId === undefined ? undefined : (this.sql.getMeta.get(rowId, this.name) as MetaRow);
      if (!row) return undefined;
      const values = normalizePatch(patch, row);
      return toMeta(this.sql.patch.get({ ...values, id: row.id, spool: this.name }) as MetaRow);
    }, "outbox");
  }

  /** Inside a transaction: the Outbox's number of a message, undefined when there is none. */
  private rowId(ref: number | string): number | undefined {
    return typeof ref === "number" ? ref : (this.sql.idOfKey.get(ref, this.name) as number | undefined);
  }

  list(options?: OutboxListOptions): StoreMeta[] {
    return this.listing.list(options);
  }

  /**
   * Moves a message to `to` if it is in one of `from` (any state when omitted);
   * false when it is not there or does not exist. A move the graph does not
   * allow is refused: an InvalidArgumentError when `from`/`to` name one, an
   * IllegalTransitionError when it is the message's current state.
   */
  moveToState(ref: MessageRef, to: OutboxState, options?: { from?: OutboxState | OutboxState[] }): boolean {
    const checked = checkRef(ref);
    checkState("to", to);
    if (to === "incoming") {
      throw new InvalidArgumentError(
        "to",
        "no message moves back to incoming; store() creates incoming messages",
      );
    }
    const o = options ?? {};
    checkObject("options", o);
    const from = checkFrom(o.from, to);
    return this.database.write(() => {
      const id = this.rowId(checked);
      const cur =
        id === undefined ? undefined : (this.sql.current.get(id, this.name) as CurrentRow | undefined);
      if (id === undefined || !cur || (from !== null && !from.includes(cur.state))) return false;
      if (!OUTBOX_TRANSITIONS[cur.state].includes(to))
        throw new IllegalTransitionError(id, cur.state, to, describeMoves(cur.state));
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
        next = now + exponentialDelay(cur.attempts - 1, this.backoff);
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
  delivered(ref: MessageRef): boolean {
    const checked = checkRef(ref);
    return this.database.write(() => {
      const id = this.rowId(checked);
      if (id === undefined) return false;
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
  defer(ref: MessageRef, error: string | Error): StoreMeta | undefined {
    const checked = checkRef(ref);
    const text = checkError(error);
    return this.database.write(() => {
      const id = this.rowId(checked);
      const cur =
        id === undefined ? undefined : (this.sql.current.get(id, this.name) as CurrentRow | undefined);
      if (id === undefined || cur?.state !== "active") return undefined;
      const now = this.now();
      const bounce = cur.attempts >= cur.max_attempts;
      const row = this.sql.move.get({
        to: bounce ? "bounced" : "deferred",
        next: bounce ? null : now + exponentialDelay(cur.attempts - 1, this.backoff),
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
    const out = emptyCounts();
    for (const r of this.sql.counts.all(this.name) as Array<{ state: OutboxState; n: number }>) {
      out[r.state] = r.n;
      out.total += r.n;
    }
    return out;
  }

  /** Deletes final messages whose last move is older than `olderThanMs`; returns how many. */
  purge(options?: PurgeOptions): number {
    const o = options ?? {};
    checkObject("options", o);
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
