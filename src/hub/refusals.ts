/**
 * Refusals: what an error thrown while a push was applied means to the client
 * that sent it, as the HTTP status and one sentence the hub answers with.
 *
 * Contract: `pushRefusal` maps what `Replica.apply` threw to a HubError, or
 * returns null for a fault of the hub's own (the route answers 500 and logs
 * it). The client's fault is a 4xx: a change the replica refused (422 with
 * its code), one the hub's tables refused — a CHECK, NOT NULL, UNIQUE or
 * FOREIGN KEY constraint, or a value of the wrong type for a STRICT column or
 * an INTEGER PRIMARY KEY (422 `ERR_CONSTRAINT`, naming the constraint and the
 * change) — or a value over SQLite's size limit (413). A full disk is 507: the
 * same push may succeed once space is freed. Naming the change that broke a
 * constraint takes a second look (`culprit`), paid only on this error path:
 * the batch is applied again one change at a time inside a transaction that
 * is always rolled back, so it changes nothing.
 */
import Database from "better-sqlite3";
import { HubError } from "../errors.js";
import { InvalidChangeError } from "../replica/apply.js";
import type { Change } from "../replica/change.js";
import { describeChange } from "../replica/incoming.js";
import type { Replica } from "../replica/replica.js";

export function pushRefusal(
  err: unknown,
  replica: Replica,
  changes: Change[],
  from: string,
): HubError | null {
  if (err instanceof HubError) return err;
  // InvalidChangeError and ClockDriftError: the replica refused the batch whole, naming the change.
  if (err instanceof InvalidChangeError) return new HubError(422, err.code, err.message);
  if (!(err instanceof Database.SqliteError)) return null;
  if (err.code === "SQLITE_FULL") {
    return new HubError(
      507,
      "ERR_DISK_FULL",
      "the hub's disk is full, so the push was not applied; it can be retried once space is freed",
    );
  }
  if (err.code === "SQLITE_TOOBIG")
    return new HubError(
      413,
      "ERR_VALUE_TOO_BIG",
      "a value in the push is larger than the hub's SQLite accepts; nothing applied",
    );
  if (!isConstraint(err.code)) return null;
  const i = culprit(replica, changes, from);
  const which =
    i === undefined
      ? "a change of the batch"
      : `changes[${i}] (${describeChange(changes[i]! as unknown as Record<string, unknown>)})`;
  return new HubError(
    422,
    "ERR_CONSTRAINT",
    `${which} breaks a constraint of the hub's table (${err.message}); nothing applied`,
  );
}

/** Constraint and type violations: SQLite's answer to a value, never to the hub's state. */
function isConstraint(code: string): boolean {
  return code.startsWith("SQLITE_CONSTRAINT") || code === "SQLITE_MISMATCH";
}

const ROLLBACK = Symbol("rollback");

/**
 * The first change that breaks a constraint when the batch is applied in
 * order, one change at a time; a deferred foreign key is found by
 * `foreign_key_check` once all are in. Nothing of it is kept.
 */
function culprit(replica: Replica, changes: Change[], from: string): number | undefined {
  let found: number | undefined;
  const db = replica.store.db;
  // Only a table can break a constraint. A relayed table has none, and applying
  // its change would record it in the replica's catalog, which no rollback undoes.
  const tables = new Set(replica.tables().map((t) => t.table));
  try {
    replica.store.write(() => {
      for (let i = 0; i < changes.length; i++) {
        if (!tables.has(changes[i]!.table)) continue;
        try {
          replica.apply([changes[i]], { from });
        } catch (err) {
          if (err instanceof Database.SqliteError && isConstraint(err.code)) {
            found = i;
            throw ROLLBACK;
          }
          throw err;
        }
      }
      const broken = db.prepare("PRAGMA foreign_key_check").all() as Array<{ table: string }>;
      const children = new Set(broken.map((r) => r.table));
      const i = changes.findIndex((c) => children.has(c.table) && c.op !== "delete");
      if (i >= 0) found = i;
      throw ROLLBACK;
    }, "hub.refusal");
  } catch {
    // ROLLBACK, or anything else (the disk, the lock): then the answer names no change.
  }
  return found;
}
