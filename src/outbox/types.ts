/**
 * The Outbox's public shapes: its states and their legal moves, messages,
 * and the options of its methods (the class is in outbox.ts).
 */
import type { BackoffOptions } from "../queue/types.js";

export const OUTBOX_STATES = ["incoming", "active", "delivered", "deferred", "bounced"] as const;
export type OutboxState = (typeof OUTBOX_STATES)[number];

/** Every legal move, by the state it leaves. */
export const OUTBOX_TRANSITIONS: Readonly<Record<OutboxState, readonly OutboxState[]>> = {
  incoming: ["active"],
  active: ["delivered", "deferred", "bounced"],
  deferred: ["active"],
  delivered: [],
  bounced: [],
};

export type OutboxSortBy = "created" | "priority" | "size" | "updated";

/** A string is stored as UTF-8; a Buffer or Uint8Array as its bytes. */
export type MessageBody = string | Uint8Array;

/** A message: the Outbox's own number, or the string id it was stored under (`store({ id })`). */
export type MessageRef = number | string;

export interface StoreMeta {
  id: number;
  /** The caller's own id, given to `store`; null when none was. */
  messageId: string | null;
  /** The outbox's name. */
  outbox: string;
  state: OutboxState;
  headers: Record<string, unknown>;
  /** "text" when the body was given as a string. */
  bodyKind: "text" | "binary";
  /** Body length in bytes. */
  size: number;
  priority: number;
  /** Attempts started so far; one is counted each time the message enters active. */
  attempts: number;
  maxAttempts: number;
  /** When a deferred message becomes due; null in every other state. */
  nextAttemptAt: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface OutboxMessage extends StoreMeta {
  body: string | Buffer;
}

export interface OutboxOptions {
  /** Attempts before a message bounces, unless `store` gives its own (default 5). */
  maxAttempts?: number;
  /** Priority of a message stored without one (default 0). Integer. */
  defaultPriority?: number;
  backoff?: BackoffOptions;
  /** Clock in epoch ms; tests replace it to make deferred messages due at will. */
  clock?: () => number;
}

export interface StoreMessageOptions {
  /** The caller's own id, unique in this outbox (at most 200 characters); the message is then found by it too. */
  id?: string;
  /** A plain object of JSON values. */
  headers?: Record<string, unknown>;
  /** Higher is claimed first. Integer (default: the outbox's defaultPriority). */
  priority?: number;
  maxAttempts?: number;
  /**
   * The state to store it in (default incoming), with the attempts it already spent and,
   * for deferred, when it is due: a message carried over from another spool as it was.
   * An incoming message has spent no attempt; any other, at least one (a deferred one
   * needs one left).
   */
  state?: OutboxState;
  attempts?: number;
  /** Required with state deferred; no other state has one. Epoch ms or Date. */
  nextAttemptAt?: number | Date;
  lastError?: string | Error | null;
}

/**
 * A change to a stored message's metadata, in any state; its state only moves by
 * `moveToState`, `claim`, `delivered` and `defer`. `updatedAt` stays the time of the
 * last move. The result must keep the invariants `store` checks.
 */
export interface MetaPatch {
  headers?: Record<string, unknown>;
  priority?: number;
  attempts?: number;
  maxAttempts?: number;
  /** Only for a deferred message: when it is due. */
  nextAttemptAt?: number | Date;
  /** null clears it. */
  lastError?: string | Error | null;
}

export interface OutboxListOptions {
  state?: OutboxState;
  /**
   * created (default), priority, size or updated. Ties go by id in the same
   * order, except priority: "desc" lists in claim order (ties oldest first).
   */
  sortBy?: OutboxSortBy;
  order?: "asc" | "desc";
  /** Default 100. */
  limit?: number;
  offset?: number;
}

export interface PurgeOptions {
  /** Remove messages whose last move is older than this (default 7 days). */
  olderThanMs?: number;
  /** Final states only (default both). */
  states?: OutboxState[];
}

export type OutboxCounts = Record<OutboxState, number> & { total: number };
