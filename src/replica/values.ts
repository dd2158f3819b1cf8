/**
 * Value: one SQLite value, as SQLite stores it and as a change carries it.
 *
 * Contract: `SqlValue` is what better-sqlite3 returns with safe integers on:
 * INTEGER is a bigint (never a number, so no integer beyond 2^53 is rounded
 * and a REAL 1.0 is never mistaken for INTEGER 1), REAL a number, TEXT a
 * string, BLOB a Uint8Array, NULL null. `WireValue` is its JSON-safe form;
 * `toWire`/`fromWire` round-trip every value exactly, and `fromWire` refuses
 * anything malformed with a message saying what is wrong. `compareValues` is a
 * total order, the last tie-break of last-writer-wins, so every replica picks
 * the same winner. Keys: a single-column key is stored as its own value; a
 * composite key as the text SQLite's quote() prints for each part, joined by
 * commas, which JavaScript reproduces here byte for byte.
 */

export type SqlValue = null | bigint | number | string | Uint8Array;

/**
 * JSON-safe value. A JSON number is an INTEGER (a safe integer); bigger
 * integers are `{ int: "<decimal>" }`; REAL is always tagged, so 1.0 stays
 * REAL: `{ real: number | "Infinity" | "-Infinity" | "-0" }`; BLOB is
 * `{ blob: "<base64>" }`; a string is TEXT and null is NULL.
 */
export type WireValue =
  | null
  | string
  | number
  | { int: string }
  | { real: number | "Infinity" | "-Infinity" | "-0" }
  | { blob: string };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DECIMAL = /^-?(0|[1-9][0-9]*)$/;

export function toWire(v: SqlValue): WireValue {
  if (v === null || typeof v === "string") return v;
  if (typeof v === "bigint") {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : { int: v.toString() };
  }
  if (typeof v === "number") {
    if (Object.is(v, -0)) return { real: "-0" };
    if (v === Number.POSITIVE_INFINITY) return { real: "Infinity" };
    if (v === Number.NEGATIVE_INFINITY) return { real: "-Infinity" };
    return { real: v };
  }
  return { blob: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
}

/** Decodes a wire value; throws an Error whose message says what is malformed. */
export function fromWire(w: unknown): SqlValue {
  if (w === null || typeof w === "string") return w;
  if (typeof w === "number") {
    if (!Number.isSafeInteger(w)) throw new Error(`number ${w} is not a safe integer (REAL is {"real": …})`);
    return BigInt(w);
  }
  if (typeof w !== "object" || Array.isArray(w)) throw new Error(`${describe(w)} is not a value`);
  // Counted, not listed: a values' batch has one such object per REAL, big INTEGER or BLOB.
  let keys = 0;
  for (const k in w) if (Object.hasOwn(w, k)) keys++;
  if (keys !== 1) throw new Error(`${describe(w)} must have exactly one of int, real, blob`);
  const o = w as Record<string, unknown>;
  if ("int" in o) {
    if (typeof o.int !== "string" || !DECIMAL.test(o.int))
      throw new Error(`int ${describe(o.int)} is not a decimal`);
    const n = BigInt(o.int);
    if (n < INT64_MIN || n > INT64_MAX) throw new Error(`int ${o.int} is outside the 64-bit range`);
    return n;
  }
  if ("real" in o) {
    const r = o.real;
    if (r === "-0") return -0;
    if (r === "Infinity") return Number.POSITIVE_INFINITY;
    if (r === "-Infinity") return Number.NEGATIVE_INFINITY;
    // SQLite stores NaN as NULL: a NaN could never round-trip.
    if (typeof r !== "number" || Number.isNaN(r)) throw new Error(`real ${describe(r)} is not a number`);
    return r;
  }
  if ("blob" in o) {
    if (typeof o.blob !== "string" || o.blob.length % 4 !== 0 || !BASE64.test(o.blob)) {
      throw new Error("blob is not canonical base64");
    }
    return Buffer.from(o.blob, "base64");
  }
  throw new Error(`${describe(w)} must have exactly one of int, real, blob`);
}

/**
 * Whether `v` has a wire value's shape, checked by hand: a zod union of
 * tagged objects cost about as much per change as applying it. `fromWire`
 * decodes (and refuses) every value again before anything is written.
 */
export function isWireValue(v: unknown): boolean {
  if (v === null || typeof v === "string") return true;
  if (typeof v === "number") return Number.isSafeInteger(v);
  if (typeof v !== "object" || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  let keys = 0;
  for (const _ in o) keys++;
  if (keys !== 1) return false;
  if (typeof o.int === "string" || typeof o.blob === "string") return true;
  const r = o.real;
  return (typeof r === "number" && !Number.isNaN(r)) || r === "Infinity" || r === "-Infinity" || r === "-0";
}

export function typeName(v: SqlValue): "null" | "integer" | "real" | "text" | "blob" {
  if (v === null) return "null";
  if (typeof v === "bigint") return "integer";
  if (typeof v === "number") return "real";
  if (typeof v === "string") return "text";
  return "blob";
}

const RANK = { null: 0, integer: 1, real: 2, text: 3, blob: 4 } as const;

/**
 * A total order: by storage class, then by value (TEXT by UTF-8 bytes, as
 * SQLite's BINARY collation; REAL -0 below 0). Only ever decides between two
 * writes with the same clock, which plain capture never produces.
 */
export function compareValues(a: SqlValue, b: SqlValue): number {
  const ta = typeName(a);
  const tb = typeName(b);
  if (ta !== tb) return RANK[ta] - RANK[tb];
  switch (ta) {
    case "null":
      return 0;
    case "integer":
      return a === b ? 0 : (a as bigint) < (b as bigint) ? -1 : 1;
    case "real": {
      const x = a as number;
      const y = b as number;
      if (x !== y) return x < y ? -1 : 1;
      return Object.is(x, y) ? 0 : Object.is(x, -0) ? -1 : 1;
    }
    case "text":
      return Buffer.compare(Buffer.from(a as string, "utf8"), Buffer.from(b as string, "utf8"));
    default:
      return Buffer.compare(a as Uint8Array, b as Uint8Array);
  }
}

export function sameValue(a: SqlValue, b: SqlValue): boolean {
  return compareValues(a, b) === 0;
}

/** Why a value cannot be part of a composite key, or null when it can. */
export function compositeKeyProblem(v: SqlValue): string | null {
  if (v === null) return "a NULL key part";
  if (typeof v === "number") return "a REAL key part (SQLite versions print REALs differently)";
  if (typeof v === "string" && v.includes("\0")) return "a key part containing U+0000";
  return null;
}

/** The text SQLite's quote() prints for an INTEGER, TEXT or BLOB key part. */
function quotePart(v: SqlValue): string {
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return `'${v.replaceAll("'", "''")}'`;
  if (v instanceof Uint8Array) return `X'${Buffer.from(v).toString("hex").toUpperCase()}'`;
  throw new Error(`cannot encode ${typeName(v)} as a key part`);
}

/** The stored form of a key: the value itself, or quote() parts joined by commas. */
export function encodeKey(parts: SqlValue[]): SqlValue {
  if (parts.length === 1) return parts[0] as SqlValue;
  return parts.map(quotePart).join(",");
}

const PART = /-?[0-9]+|'(?:[^']|'')*'|X'[0-9A-F]*'/y;

/** Splits a stored key back into its parts; `arity` is the key's column count. */
export function decodeKey(stored: SqlValue, arity: number): SqlValue[] {
  if (arity === 1) return [stored];
  if (typeof stored !== "string") throw new Error(`stored composite key is ${typeName(stored)}, not text`);
  const parts: SqlValue[] = [];
  let at = 0;
  while (at < stored.length) {
    PART.lastIndex = at;
    const m = PART.exec(stored);
    if (!m) throw new Error(`cannot parse stored key ${JSON.stringify(stored)}`);
    const tok = m[0];
    if (tok.startsWith("'")) parts.push(tok.slice(1, -1).replaceAll("''", "'"));
    else if (tok.startsWith("X'")) parts.push(Buffer.from(tok.slice(2, -1), "hex"));
    else parts.push(BigInt(tok));
    at = PART.lastIndex;
    if (at < stored.length) {
      if (stored[at] !== ",") throw new Error(`cannot parse stored key ${JSON.stringify(stored)}`);
      at++;
    }
  }
  if (parts.length !== arity) throw new Error(`stored key has ${parts.length} parts, expected ${arity}`);
  return parts;
}

/** A stored key as a Map key: equal keys (INTEGER 1 and REAL 1.0 are, to SQLite) give equal strings. */
export function keyString(v: SqlValue): string {
  if (v === null) return "n";
  if (typeof v === "bigint") return `#${v}`;
  // SQLite holds INTEGER 1 and REAL 1.0 to be the same key.
  if (typeof v === "number") return Number.isInteger(v) ? `#${BigInt(v)}` : `#${v}`;
  if (typeof v === "string") return `t${v}`;
  return `b${Buffer.from(v).toString("hex")}`;
}

function describe(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return typeof v;
  }
}

/** A short human description of a value, for error messages. */
export function describeValue(v: unknown): string {
  return describe(v);
}

/**
 * Sets a column of a change's `columns`, a plain object: V8 keeps a
 * prototype-less one as a slow dictionary, to fill and to stringify. A
 * column named __proto__ is defined as an own property, so it is neither
 * lost nor made the object's prototype.
 */
export function setColumn(columns: Record<string, WireValue>, col: string, value: WireValue): void {
  if (col === "__proto__")
    Object.defineProperty(columns, col, { value, enumerable: true, writable: true, configurable: true });
  else columns[col] = value;
}
