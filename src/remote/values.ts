/**
 * Values on their way to a remote target: the replica's SqlValue (SQLite's
 * storage classes as better-sqlite3 reads them with safe integers, see
 * replica/values.ts, which also decodes the log's wire form) in their JSON
 * form in a spooled payload, and as a SQL literal for the targets that take
 * SQL text (D1 through `wrangler --file`), and described in an error.
 *
 * Contract: every conversion is exact and keeps the storage class: an
 * INTEGER stays INTEGER (bigint, never a lossy number), a REAL stays REAL
 * (1.0 is not 1), TEXT and BLOB stay apart. `sqlLiteral` is the only place a
 * value becomes SQL text.
 */
import type { SqlValue } from "../replica/values.js";

/** JSON-safe: a tagged pair per storage class, so nothing is guessed on the way back. */
export type Encoded = null | ["i", string] | ["r", string] | ["t", string] | ["b", string];

export function encodeValue(v: SqlValue): Encoded {
  if (v === null) return null;
  if (typeof v === "bigint") return ["i", v.toString()];
  if (typeof v === "number") return ["r", realText(v)];
  if (typeof v === "string") return ["t", v];
  return ["b", Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")];
}

export function decodeValue(e: Encoded): SqlValue {
  if (e === null) return null;
  switch (e[0]) {
    case "i":
      return BigInt(e[1]);
    case "r":
      return Number(e[1]);
    case "t":
      return e[1];
    case "b":
      return Buffer.from(e[1], "base64");
  }
  throw new Error(`malformed value ${JSON.stringify(e)}`);
}

/** A REAL's exact text: JavaScript prints the shortest form that reads back as the same double. */
function realText(v: number): string {
  if (Object.is(v, -0)) return "-0";
  return String(v);
}

/**
 * A SQLite literal that reads back as exactly `v`, storage class included.
 * A REAL always carries a decimal point or exponent (1.0, not 1); infinities
 * are 9e999 (SQLite reads an overflowing literal as Inf); text holding U+0000,
 * which a quoted literal cannot carry, is a cast blob.
 */
export function sqlLiteral(v: SqlValue): string {
  if (v === null) return "NULL";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "NULL";
    if (v === Number.POSITIVE_INFINITY) return "9e999";
    if (v === Number.NEGATIVE_INFINITY) return "-9e999";
    if (Object.is(v, -0)) return "-0.0";
    const s = String(v);
    return /[.eE]/.test(s) ? s : `${s}.0`;
  }
  if (typeof v === "string") {
    if (v.includes("\u0000")) return `CAST(X'${Buffer.from(v, "utf8").toString("hex")}' AS TEXT)`;
    return `'${v.replaceAll("'", "''")}'`;
  }
  return `X'${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex")}'`;
}

/** A short form of a value for an error message: its text or hex, cut at 40 characters. */
export function describeValue(v: SqlValue): string {
  const s =
    v instanceof Uint8Array ? `x'${Buffer.from(v).toString("hex").slice(0, 16)}'` : JSON.stringify(String(v));
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
