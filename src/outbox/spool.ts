/**
 * The Outbox as a drop-in spool: the checks on a message stored with its own
 * id, state, attempts and next attempt time (one carried over from another
 * spool), and on a change to a stored message's metadata.
 *
 * Contract: what passes here keeps every invariant the Outbox's moves keep,
 * so a message stored or patched this way moves on like any other:
 * attempts never exceed maxAttempts; an incoming message has spent none and
 * every other one at least one (an attempt counts on entering active); a
 * deferred message has an attempt left, as its next claim spends one, and a
 * next attempt time, which no other state has. A caller's id
 * is a non-empty string of at most 200 characters, unique within its outbox.
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { checkInteger, checkName, checkTime } from "../validate.js";
import { describe, type MetaRow, serializeHeaders } from "./rows.js";
import { checkState } from "./states.js";
import type { MessageRef, MetaPatch, OutboxState, StoreMessageOptions } from "./types.js";

/** `store` was given an id its outbox already holds; nothing was written. */
export class DuplicateMessageError extends TidewireError {
  constructor(
    readonly outbox: string,
    readonly messageId: string,
  ) {
    super(
      `outbox ${outbox} already holds a message with id ${JSON.stringify(messageId)}`,
      "ERR_DUPLICATE_ID",
    );
    this.name = "DuplicateMessageError";
  }
}

/** The values of a new row, checked. */
export interface NewMessage {
  messageId: string | null;
  state: OutboxState;
  headers: string;
  priority: number;
  attempts: number;
  maxAttempts: number;
  nextAttemptAt: number | null;
  lastError: string | null;
}

export function normalizeStore(
  o: StoreMessageOptions,
  defaults: { priority: number; maxAttempts: number },
): NewMessage {
  const msg: NewMessage = {
    messageId: o.id === undefined ? null : checkName("id", o.id),
    state: o.state === undefined ? "incoming" : checkState("state", o.state),
    headers: serializeHeaders(o.headers),
    priority: o.priority === undefined ? defaults.priority : checkPriority("priority", o.priority),
    attempts: o.attempts === undefined ? 0 : checkInteger("attempts", o.attempts, 0),
    maxAttempts:
      o.maxAttempts === undefined ? defaults.maxAttempts : checkInteger("maxAttempts", o.maxAttempts, 1),
    nextAttemptAt: o.nextAttemptAt === undefined ? null : checkTime("nextAttemptAt", o.nextAttemptAt),
    lastError: checkLastError(o.lastError),
  };
  if (msg.state === "deferred" && msg.nextAttemptAt === null)
    throw new InvalidArgumentError("nextAttemptAt", "a deferred message needs the time of its next attempt");
  checkConsistent(msg.state, msg.attempts, msg.maxAttempts, msg.nextAttemptAt);
  return msg;
}

/** The columns a patch sets (null: left as it is), checked against the message it applies to. */
export interface PatchValues {
  headers: string | null;
  priority: number | null;
  attempts: number | null;
  maxAttempts: number | null;
  setNext: 0 | 1;
  next: number | null;
  setError: 0 | 1;
  error: string | null;
}

export function checkPatch(patch: MetaPatch): void {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch))
    throw new InvalidArgumentError("patch", `must be an object, got ${describe(patch)}`);
  const known = ["headers", "priority", "attempts", "maxAttempts", "nextAttemptAt", "lastError"];
  const given = Object.keys(patch).filter((k) => (patch as Record<string, unknown>)[k] !== undefined);
  for (const k of given)
    if (!known.includes(k))
      throw new InvalidArgumentError(
        "patch",
        `${k} is not metadata a patch can change (${known.join(", ")})`,
      );
  if (given.length === 0) throw new InvalidArgumentError("patch", `give at least one of ${known.join(", ")}`);
}

export function normalizePatch(patch: MetaPatch, row: MetaRow): PatchValues {
  const v: PatchValues = {
    headers: patch.headers === undefined ? null : serializeHeaders(patch.headers),
    priority: patch.priority === undefined ? null : checkPriority("priority", patch.priority),
    attempts: patch.attempts === undefined ? null : checkInteger("attempts", patch.attempts, 0),
    maxAttempts: patch.maxAttempts === undefined ? null : checkInteger("maxAttempts", patch.maxAttempts, 1),
    setNext: patch.nextAttemptAt === undefined ? 0 : 1,
    next: patch.nextAttemptAt === undefined ? null : checkTime("nextAttemptAt", patch.nextAttemptAt),
    setError: patch.lastError === undefined ? 0 : 1,
    error: checkLastError(patch.lastError),
  };
  checkConsistent(
    row.state,
    v.attempts ?? row.attempts,
    v.maxAttempts ?? row.max_attempts,
    v.setNext ? v.next : row.next_attempt_at,
  );
  return v;
}

/** A number is the Outbox's own id; a string, the id the caller stored the message under. */
export function checkRef(ref: MessageRef): number | string {
  if (typeof ref === "string") return checkName("id", ref);
  if (typeof ref === "number") return checkInteger("id", ref, 1);
  throw new InvalidArgumentError(
    "id",
    `must be a positive integer or the message's own string id, got ${describe(ref)}`,
  );
}

function checkConsistent(
  state: OutboxState,
  attempts: number,
  maxAttempts: number,
  next: number | null,
): void {
  if (attempts > maxAttempts)
    throw new InvalidArgumentError("attempts", `${attempts} is more than maxAttempts (${maxAttempts})`);
  if (state === "incoming" && attempts > 0)
    throw new InvalidArgumentError(
      "attempts",
      "an incoming message was never tried; one that was is deferred, with the time of its next attempt",
    );
  if (state !== "incoming" && attempts === 0)
    throw new InvalidArgumentError("attempts", `a message that is ${state} has spent at least one attempt`);
  if (state === "deferred" && attempts >= maxAttempts)
    throw new InvalidArgumentError(
      "attempts",
      `a deferred message needs an attempt left (${attempts} of ${maxAttempts} spent): bounce it instead`,
    );
  if (state === "deferred" && next === null)
    throw new InvalidArgumentError("nextAttemptAt", "a deferred message needs the time of its next attempt");
  if (state !== "deferred" && next !== null)
    throw new InvalidArgumentError(
      "nextAttemptAt",
      `only a deferred message has a next attempt time, not one that is ${state}`,
    );
}

function checkLastError(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  throw new InvalidArgumentError("lastError", `must be a string, an Error or null, got ${describe(value)}`);
}

function checkPriority(argument: string, value: unknown): number {
  return checkInteger(argument, value, -(2 ** 31));
}
