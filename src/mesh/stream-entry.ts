/**
 * StreamEntry: what a mesh member writes to Redis, and how a reader checks it.
 *
 * Contract: a change entry in `{prefix}:{bucket}:{nodeId}` (each name with
 * ':' and '%' escaped, see `keyPart`) holds the fields
 * `v` (protocol version), `since` and `cursor` (the publisher's log cursor
 * range the entry covers: every change of its own with a sequence in
 * (since, cursor] is in this entry or a later one of the same run) and
 * `changes` (protocol v1 Changes as JSON). `decodeEntry` refuses anything
 * else with a ProtocolError naming the field, so a reader never applies what
 * it has not checked. A "wants" entry in `{prefix}:{bucket}:{nodeId}:wants`
 * asks that publisher to publish again from a log cursor. A reader's cursor
 * is `<stream id>/<log cursor>`: where it is in the stream, and how far the
 * publisher's log it holds.
 */
import { z } from "zod";
import type { Change } from "../replica/change.js";
import { changesSchema, PROTOCOL_VERSION, ProtocolError, parse } from "../sync/protocol.js";

/** Redis answers an entry's fields as one flat array: name, value, name, value… */
export type RawFields = string[];

export interface ChangeEntry {
  since: bigint;
  cursor: bigint;
  changes: Change[];
}

export interface WantsEntry {
  /** Publish again everything after this log cursor. */
  from: bigint;
  /** The reader asking (for the log). */
  by: string;
}

export interface ReadPosition {
  /** The last stream id read, "0-0" before any. */
  streamId: string;
  /** The publisher's log cursor this reader holds everything up to. */
  cursor: bigint;
}

export const START_ID = "0-0";
const SEQ = /^(0|[1-9][0-9]{0,17})$/;
const POSITION = /^([0-9]{1,20}-[0-9]{1,20})\/(0|[1-9][0-9]{0,17})$/;

const seq = z.string().regex(SEQ, "must be a sequence number");
const entrySchema = z.strictObject({
  v: z.string().regex(/^[0-9]{1,9}$/, "must be a protocol version"),
  since: seq,
  cursor: seq,
  changes: z.string(),
});
const wantsSchema = z.strictObject({ from: seq, by: z.string().min(1).max(64) });

/**
 * A bucket or node id as one part of a key: ':' (the separator) and '%' (the
 * escape) escaped, so that no bucket and node id ("a:b" and "c", or a node
 * named "members") can spell another pair's key. Names without them are kept
 * as they are.
 */
function keyPart(name: string): string {
  return name.replace(/[%:]/g, (c) => (c === "%" ? "%25" : "%3A"));
}

/** A publisher's stream: three parts after the prefix. */
export function streamKey(prefix: string, bucket: string, nodeId: string): string {
  return `${prefix}:${keyPart(bucket)}:${keyPart(nodeId)}`;
}

/** A publisher's wants: its stream key and one part more. */
export function wantsKey(prefix: string, bucket: string, nodeId: string): string {
  return `${streamKey(prefix, bucket, nodeId)}:wants`;
}

/** A bucket's members hash: an empty node part, which no node id is. */
export function membersKey(prefix: string, bucket: string): string {
  return `${prefix}:${keyPart(bucket)}::members`;
}

/** The fields of a change entry, in XADD order. */
export function encodeEntry(since: string, cursor: string, changes: Change[]): string[] {
  return [
    "v",
    String(PROTOCOL_VERSION),
    "since",
    since,
    "cursor",
    cursor,
    "changes",
    JSON.stringify(changes),
  ];
}

export function decodeEntry(fields: RawFields): ChangeEntry {
  const e = parse(entrySchema, toObject(fields), "stream entry");
  if (Number(e.v) !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `stream entry of protocol version ${e.v}: this replica speaks version ${PROTOCOL_VERSION}`,
      "ERR_PROTOCOL_VERSION",
    );
  }
  const since = BigInt(e.since);
  const cursor = BigInt(e.cursor);
  if (cursor < since)
    throw new ProtocolError("malformed stream entry: cursor is below since", "ERR_MALFORMED");
  let json: unknown;
  try {
    json = JSON.parse(e.changes);
  } catch {
    throw new ProtocolError("malformed stream entry: changes is not JSON", "ERR_MALFORMED");
  }
  return { since, cursor, changes: parse(changesSchema, json, "stream entry changes") as Change[] };
}

export function encodeWants(from: bigint, by: string): string[] {
  return ["from", from.toString(), "by", by];
}

export function decodeWants(fields: RawFields): WantsEntry {
  const w = parse(wantsSchema, toObject(fields), "wants entry");
  return { from: BigInt(w.from), by: w.by };
}

export function formatPosition(p: ReadPosition): string {
  return `${p.streamId}/${p.cursor}`;
}

/** A cursor value written by `formatPosition`, or null for any other (a hub's sequence, say). */
export function parsePosition(value: string): ReadPosition | null {
  const m = POSITION.exec(value);
  return m ? { streamId: m[1] as string, cursor: BigInt(m[2] as string) } : null;
}

function toObject(fields: RawFields): Record<string, string> | null {
  if (!Array.isArray(fields) || fields.length % 2 !== 0) return null;
  const o: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const k = fields[i] as string;
    // A repeated field is as malformed as an unknown one.
    if (Object.hasOwn(o, k)) return null;
    o[k] = fields[i + 1] as string;
  }
  return o;
}
