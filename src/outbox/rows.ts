/**
 * The Outbox's rows in `tw_outbox`: their shape, the columns read, how a
 * body and headers are encoded and checked on the way in, and how a row
 * becomes a StoreMeta or an OutboxMessage on the way out.
 */
import { InvalidArgumentError } from "../errors.js";
import { serializePayload } from "../json-payload.js";
import type { OutboxMessage, OutboxState, StoreMeta } from "./types.js";

export interface MetaRow {
  id: number;
  spool: string;
  message_id: string | null;
  state: OutboxState;
  headers: string;
  body_kind: "text" | "binary";
  size: number;
  priority: number;
  attempts: number;
  max_attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface MessageRow extends MetaRow {
  body: Buffer;
}

export interface CurrentRow {
  state: OutboxState;
  attempts: number;
  max_attempts: number;
}

export interface MoveParams {
  to: OutboxState;
  next: number | null;
  error: string | null;
  now: number;
  id: number;
  spool: string;
  from: OutboxState;
}

// Everything but the body, which can be large and is only read by get and claim.
export const META_COLUMNS = `id, spool, message_id, state, headers, body_kind, size, priority, attempts, max_attempts,
  next_attempt_at, last_error, created_at, updated_at`;

export function encodeBody(body: unknown): { bytes: Buffer; kind: "text" | "binary" } {
  if (typeof body === "string") {
    // UTF-8 cannot carry a lone surrogate: it would come back as U+FFFD, not as given.
    if (/\p{Cs}/u.test(body)) {
      throw new InvalidArgumentError("body", "contains a lone UTF-16 surrogate; pass it as bytes instead");
    }
    return { bytes: Buffer.from(body, "utf8"), kind: "text" };
  }
  if (body instanceof Uint8Array) {
    // A view, not a copy; better-sqlite3 copies on bind.
    return { bytes: Buffer.from(body.buffer, body.byteOffset, body.byteLength), kind: "binary" };
  }
  throw new InvalidArgumentError("body", `must be a string, Buffer or Uint8Array, got ${describe(body)}`);
}

export function serializeHeaders(headers: unknown): string {
  if (headers === undefined) return "{}";
  if (headers === null || typeof headers !== "object" || !isPlainObject(headers)) {
    throw new InvalidArgumentError(
      "headers",
      `must be a plain object of JSON values, got ${describe(headers)}`,
    );
  }
  return serializePayload("headers", headers);
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return `a ${v.constructor?.name ?? "object"}`;
  return typeof v;
}

export function checkError(error: unknown): string {
  if (typeof error === "string") return error;
  if (error instanceof Error) return error.message;
  throw new InvalidArgumentError("error", `must be a string or an Error, got ${describe(error)}`);
}

export function toMeta(r: MetaRow): StoreMeta {
  return {
    id: r.id,
    messageId: r.message_id,
    outbox: r.spool,
    state: r.state,
    headers: JSON.parse(r.headers),
    bodyKind: r.body_kind,
    size: r.size,
    priority: r.priority,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    nextAttemptAt: r.next_attempt_at,
    lastError: r.last_error,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export function toMessage(r: MessageRow): OutboxMessage {
  return { ...toMeta(r), body: r.body_kind === "text" ? r.body.toString("utf8") : r.body };
}
