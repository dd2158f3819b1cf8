/**
 * Capture on a remote target: what a target that can be pulled from offers
 * (`Capture`), the change entries it records, and their HLC and origin.
 *
 * Contract: a target's capture records, in the writer's own transaction,
 * one entry per row event in a change table on the target
 * (`_tidewire_changes`): a sequence that only grows, the table, the key, the
 * op (a key change is a delete of the old key and an insert of the new), the
 * columns an update changed, and the wall-clock ms of the write. Writes made
 * by Tidewire's own apply are not recorded (echo suppression: a marker the
 * apply sets inside its transaction, which the trigger checks). `install` is
 * idempotent and cheap when capture is already in place, so it is called
 * every cycle (a full push may have dropped or replaced the tables). An
 * entry's HLC is its ms and its sequence (as the counter), its origin a node
 * id derived from the target's id, so pulling the same entry twice yields the
 * same change, which the replica's apply then ignores.
 */
import { createHash } from "node:crypto";
import { formatHlc } from "../replica/hlc.js";
import type { SqlValue } from "../replica/values.js";
import type { TableSchema } from "./payload.js";
import { encodeValue } from "./values.js";

export const CHANGES_TABLE = "_tidewire_changes";

export interface CapturedChange {
  seq: bigint;
  table: string;
  key: SqlValue[];
  op: "insert" | "update" | "delete";
  /** The columns an update changed; null for an insert or a delete. */
  columns: string[] | null;
  /** Wall-clock ms on the target when the write happened. */
  at: number;
}

export interface Capture {
  /**
   * Installs or refreshes capture on each of the tables the target has;
   * returns, per such table, the columns both the schema and the target have.
   */
  install(tables: TableSchema[]): Promise<Map<string, string[]>>;
  /** Up to `limit` entries with a sequence above `after`, in sequence order. */
  read(after: bigint, limit: number): Promise<CapturedChange[]>;
  /** The current values of `columns` for each key (null where the row is gone), in the keys' order. */
  rows(t: TableSchema, columns: string[], keys: SqlValue[][]): Promise<Array<SqlValue[] | null>>;
  /** Deletes the entries up to and including `upto` (they are pulled). */
  prune(upto: bigint): Promise<void>;
}

/** The node id a target's changes carry as their origin: stable for a target id. */
export function remoteOrigin(targetId: string): string {
  return `remote:${createHash("sha256").update(targetId).digest("hex").slice(0, 24)}`;
}

/** An entry's HLC: its ms in the physical part and the low 16 bits of its sequence as the counter. */
export function entryHlc(c: Pick<CapturedChange, "at" | "seq">): string {
  return formatHlc((BigInt(c.at) << 16n) | (c.seq & 0xffffn));
}

/**
 * A value from the text SQLite's quote() prints: NULL, an integer, a real
 * (always with a point or an exponent, or Inf), 'text' with doubled quotes,
 * or X'hex'. The only parser of that text, so SQLite-dialect targets (files,
 * libSQL, D1 through wrangler's JSON) hand back every value with its storage
 * class, whatever their driver does with numbers.
 */
export function fromQuoted(text: unknown): SqlValue {
  if (typeof text !== "string") throw new Error(`expected quote() text, got ${JSON.stringify(text)}`);
  if (text === "NULL") return null;
  if (/^-?\d+$/.test(text)) return BigInt(text);
  if (text.startsWith("'") && text.endsWith("'") && text.length >= 2)
    return text.slice(1, -1).replaceAll("''", "'");
  if (/^X'[0-9A-Fa-f]*'$/.test(text)) return Buffer.from(text.slice(2, -1), "hex");
  if (text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  const n = Number(text);
  if (Number.isNaN(n)) throw new Error(`cannot read the quoted value ${JSON.stringify(text)}`);
  return n;
}

/** A key's canonical text, to group entries and match rows read back by key. */
export function keyText(key: SqlValue[]): string {
  return JSON.stringify(key.map(encodeValue));
}
