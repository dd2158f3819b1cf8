/**
 * Change: the form in which change-log entries travel between replicas, and
 * ChangeSet, one page of them.
 *
 * Contract: `CHANGE_FIELDS` is the one definition of a Change. Each field
 * gives its zod schema and the same rule as a plain test; `changeSchema`
 * (the wire schema, whose errors name the bad field), `isChange` (the fast
 * check a batch passes before the schema is consulted) and the `Change` type
 * all derive from it, and a property test holds each field's two forms
 * together (the test may say no where the schema says yes, never yes where it
 * says no). The log, its pager and every transport name a Change through this
 * module with `import type`, so only the protocol's parsers load zod.
 */
import { z } from "zod";
import { isNodeId, NODE_ID, NODE_ID_RULE } from "../node-id.js";
import { isWireValue, type WireValue } from "./values.js";

const HLC_TEXT = /^[0-9a-f]{16}$/;
const OPS = ["insert", "update", "delete"] as const;

/** A bucket name: 1 to 200 characters, not all blank. */
export const bucketSchema = z
  .string()
  .min(1)
  .max(200)
  .refine((s) => s.trim().length > 0, "must not be blank");

export const nodeIdSchema = z.string().regex(NODE_ID, `must be a node id (${NODE_ID_RULE})`);

const wireValue = z.custom<WireValue>(isWireValue, {
  message: "must be a wire value: null, a string, a safe integer, {int}, {real} or {blob}",
});

function isName(v: unknown, max: number): v is string {
  return typeof v === "string" && v.length >= 1 && v.length <= max;
}

function isColumns(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in v) if (!isWireValue((v as Record<string, unknown>)[k])) return false;
  return true;
}

function isKey(v: unknown): boolean {
  if (!Array.isArray(v) || v.length < 1 || v.length > 64) return false;
  for (let i = 0; i < v.length; i++) if (!isWireValue(v[i])) return false;
  return true;
}

/** Every field of a Change: its wire schema, and `ok`, the same rule as a plain test (undefined included). */
export const CHANGE_FIELDS = {
  table: { schema: z.string().min(1).max(200), ok: (v: unknown) => isName(v, 200) },
  /**
   * The table's bucket at the sender: how a relay that lacks the table files it.
   * `changesSince` always sets it; `apply` needs it only for a table a relay does not track.
   */
  bucket: {
    schema: bucketSchema.optional(),
    ok: (v: unknown) => v === undefined || (isName(v, 200) && v.trim().length > 0),
  },
  /** The key's values, in key order. */
  pk: { schema: z.array(wireValue).min(1).max(64), ok: isKey },
  /** insert: the row entry says the row exists; delete: a tombstone; update: columns only. */
  op: { schema: z.enum(OPS), ok: (v: unknown) => v === "insert" || v === "update" || v === "delete" },
  /** Column values written by this event and not yet overwritten (empty for a delete). */
  columns: { schema: z.record(z.string(), wireValue), ok: isColumns },
  /** 16 hex digits: physical ms << 16 | counter. */
  hlc: {
    schema: z.string().regex(HLC_TEXT, "must be 16 hex digits"),
    ok: (v: unknown) => typeof v === "string" && HLC_TEXT.test(v),
  },
  /** Node id of the replica where the write happened. */
  origin: { schema: nodeIdSchema, ok: isNodeId },
  /** The sender's local sequence number. */
  seq: {
    schema: z.number().int().nonnegative(),
    ok: (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0,
  },
};

type Fields = typeof CHANGE_FIELDS;

export const changeSchema = z.strictObject(
  Object.fromEntries(Object.entries(CHANGE_FIELDS).map(([k, f]) => [k, f.schema])) as {
    [K in keyof Fields]: Fields[K]["schema"];
  },
);

export type Change = z.output<typeof changeSchema>;

const F = CHANGE_FIELDS;

/**
 * Whether `v` passes `changeSchema`, by the fields' plain tests: it may say
 * no to a change the schema accepts (which then goes through the schema),
 * never yes to one it refuses. The tests are called one by one, not in a loop
 * over the table: a loop of keyed reads and calls cost twice as much.
 */
export function isChange(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const c = v as Record<keyof Fields, unknown>;
  for (const k in c) if (!Object.hasOwn(F, k)) return false;
  return (
    F.table.ok(c.table) &&
    F.bucket.ok(c.bucket) &&
    F.pk.ok(c.pk) &&
    F.op.ok(c.op) &&
    F.columns.ok(c.columns) &&
    F.hlc.ok(c.hlc) &&
    F.origin.ok(c.origin) &&
    F.seq.ok(c.seq)
  );
}

export interface ChangeSet {
  changes: Change[];
  /** Pass back to `changesSince` for the next page. */
  cursor: string;
  hasMore: boolean;
}
