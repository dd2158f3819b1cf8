/**
 * Protocol v1: the messages a SyncManager and a hub exchange, as zod schemas.
 *
 * Contract: every message is parsed with these schemas at both edges (the
 * hub parses requests, the client parses answers), so neither side ever acts
 * on a message it has not checked; a malformed one is a ProtocolError naming
 * the field. A client speaking another protocol version is refused at the
 * handshake with a reason that names both versions, and the client raises it
 * as a ProtocolError of its own. Batches are bounded in rows and in bytes of
 * JSON (`BatchLimits`); `fitBatch` cuts a batch at a sequence boundary, so a
 * cursor taken from the last change kept never skips part of an event.
 */
import { z } from "zod";
import { TidewireError } from "../errors.js";
import { bucketSchema, type Change, changeSchema, isChange, nodeIdSchema } from "../replica/change.js";

import type { WireValue } from "../replica/values.js";

export const PROTOCOL_VERSION = 1;

/** What this implementation can do beyond the three calls; the hub answers with the subset it shares. */
/**
 * What a client may ask for in its handshake: "live" notices (GET /v1/live);
 * "head", the hub's last sequence number in the handshake's answer, which
 * lets an initial sync show how far it has to go. A hub answers only those it
 * has, so either side may be older.
 */
export const CAPABILITIES = ["live", "head"] as const;

export interface BatchLimits {
  /** Changes per pull or push (default 1000). */
  maxRows: number;
  /** Bytes of JSON per batch of changes (default 4 MiB). */
  maxBytes: number;
}

export const DEFAULT_LIMITS: BatchLimits = { maxRows: 1000, maxBytes: 4 * 1024 * 1024 };

/** A message broke the protocol: malformed, or from another protocol version. */
export class ProtocolError extends TidewireError {
  constructor(message: string, code = "ERR_PROTOCOL") {
    super(message, code);
    this.name = "ProtocolError";
  }
}

const nodeId = nodeIdSchema;
const buckets = z.array(bucketSchema).min(1).max(256);
const cursor = z.string().regex(/^(0|[1-9][0-9]{0,17})$/, "must be a sequence number");

/**
 * A batch of changes: each checked by `isChange`, and only one that fails it
 * parsed with `changeSchema`, for the errors that name its bad fields. The
 * full schema cost as much per change as applying it.
 */
export const changesSchema = z
  .custom<unknown[]>((v) => Array.isArray(v), { message: "must be an array of changes" })
  .superRefine((list, ctx) => {
    for (let i = 0; i < list.length; i++) {
      if (isChange(list[i])) continue;
      const r = changeSchema.safeParse(list[i]);
      if (r.success) continue;
      for (const issue of r.error.issues)
        ctx.addIssue({ code: "custom", message: issue.message, path: [i, ...issue.path] });
    }
  }) as unknown as z.ZodType<Change[]>;

export const handshakeRequest = z.strictObject({
  nodeId,
  protocolVersion: z.number().int(),
  buckets,
  capabilities: z.array(z.string().max(64)).max(64).default([]),
});

export const handshakeResponse = z.strictObject({
  accepted: z.boolean(),
  reason: z.string().optional(),
  hubNodeId: nodeId,
  protocolVersion: z.number().int(),
  capabilities: z.array(z.string()).default([]),
  limits: z.strictObject({ maxRows: z.number().int().positive(), maxBytes: z.number().int().positive() }),
  /** With capability "head": the hub's last sequence number, in the cursors' terms. */
  head: cursor.optional(),
});

export const pullRequest = z.strictObject({
  nodeId,
  cursor,
  buckets,
  limit: z.number().int().positive(),
});

export const pullResponse = z.strictObject({
  changes: changesSchema,
  cursor,
  hasMore: z.boolean(),
});

export const pushRequest = z.strictObject({
  nodeId,
  changes: changesSchema,
  /** The sender's cursor once these changes are durable on the hub; echoed back as the acknowledgement. */
  cursor,
});

export const pushResponse = z.strictObject({
  cursor,
  received: z.number().int().nonnegative(),
  applied: z.number().int().nonnegative(),
});

/** The hub's notice on GET /v1/live that buckets have new changes. */
export const liveMessage = z.strictObject({
  type: z.literal("changes"),
  buckets: z.array(bucketSchema),
});

/** A subscription to the hub's notices on its WebSocket endpoint (GET /v1/ws), answered with the same. */
export const subscribeRequest = z.strictObject({ buckets });

/** An error answer from the hub. */
export const errorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});

export type HandshakeRequest = z.input<typeof handshakeRequest>;
export type HandshakeResponse = z.output<typeof handshakeResponse>;
export type PullRequest = z.output<typeof pullRequest>;
export type PullResponse = z.output<typeof pullResponse>;
export type PushRequest = z.output<typeof pushRequest>;
export type PushResponse = z.output<typeof pushResponse>;
export type LiveMessage = z.output<typeof liveMessage>;

/** Parses `value` with `schema`, or throws a ProtocolError naming `what` and the first bad fields. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join(".") : "(body)"}: ${i.message}`)
    .join("; ");
  throw new ProtocolError(`malformed ${what}: ${problems}`, "ERR_MALFORMED");
}

/** The hub's refusal of another protocol version; both sides word it the same way. */
export function versionMismatch(theirs: number): string {
  return `protocol version ${theirs} is not supported: this hub speaks version ${PROTOCOL_VERSION}`;
}

export function checkLimits(limits: Partial<BatchLimits> | undefined): BatchLimits {
  const out = { ...DEFAULT_LIMITS, ...limits };
  for (const k of ["maxRows", "maxBytes"] as const) {
    if (!Number.isSafeInteger(out[k]) || out[k] < 1) {
      throw new ProtocolError(`limits.${k} must be a positive integer, got ${String(out[k])}`, "ERR_LIMITS");
    }
  }
  return out;
}

/**
 * The longest prefix of `changes` within `limits`, cut only between changes
 * of different sequence numbers. `cut` is true when something was left out.
 * The first sequence group is always kept, so a batch always makes progress.
 */
export function fitBatch(changes: Change[], limits: BatchLimits): { changes: Change[]; cut: boolean } {
  // The common case, a batch well within the limits, costs a bound on its
  // size, or at worst one stringify of the whole.
  if (
    changes.length <= limits.maxRows &&
    (boundBytes(changes, limits.maxBytes) <= limits.maxBytes ||
      Buffer.byteLength(JSON.stringify(changes)) <= limits.maxBytes)
  )
    return { changes, cut: false };
  let bytes = 2;
  let end = 0;
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    bytes += Buffer.byteLength(JSON.stringify(c)) + 1;
    const boundary = i + 1 === changes.length || changes[i + 1]!.seq !== c.seq;
    if ((bytes > limits.maxBytes || i + 1 > limits.maxRows) && end > 0) break;
    if (boundary) end = i + 1;
  }
  return { changes: end === changes.length ? changes : changes.slice(0, end), cut: end < changes.length };
}

/** Bytes of JSON a string may take: 3 per UTF-16 unit, 6 for a \u escape, plus quotes. */
const stringBound = (v: string) => 6 * v.length + 2;

/** Bytes of JSON a wire value may take, at most. */
function valueBound(v: WireValue): number {
  if (v === null) return 4;
  if (typeof v === "string") return stringBound(v);
  if (typeof v === "number") return 24;
  if ("blob" in v) return v.blob.length + 12;
  if ("int" in v) return v.int.length + 12;
  return 40;
}

/**
 * An upper bound on the bytes of `JSON.stringify(changes)`, much cheaper than
 * the stringify; stops counting once past `stop`.
 */
function boundBytes(changes: Change[], stop: number): number {
  let bytes = 2;
  for (const c of changes) {
    // Keys, punctuation, op, hlc (16), seq and slack.
    bytes += 160 + stringBound(c.table) + stringBound(c.origin) + (c.bucket ? stringBound(c.bucket) : 0);
    for (const v of c.pk) bytes += valueBound(v) + 1;
    for (const col in c.columns) bytes += stringBound(col) + 2 + valueBound(c.columns[col] as WireValue);
    if (bytes > stop) return bytes;
  }
  return bytes;
}
