/**
 * Values on their way to a remote target: SQLite's storage classes as read
 * from the source (better-sqlite3 with safe integers), their JSON form in a
 * spooled payload, their canonical form in a sync key, and their SQL literal
 * for the one target that only takes SQL text (D1 through `wrangler --file`).
 *
 * Contract: every conversion is exact and keeps the storage class: an
 * INTEGER stays INTEGER (bigint, never a lossy number), a REAL stays REAL
 * (1.0 is not 1), TEXT and BLOB stay apart. `sqlLiteral` is the only place a
 * value becomes SQL text.
 */
export type Value = null | bigint | number | string | Uint8Array;

/** JSON-safe: a tagged pair per storage class, so nothing is guessed on the way back. */
export type Encoded = null | ["i", string] | ["r", string] | ["t", string] | ["b", string];

export function encodeValue(v: Value): Encoded {
  if (v === null) return null;
  if (typeof v === "bigint") return ["i", v.toString()];
  if (typeof v === "number") return ["r", realText(v)];
  if (typeof v === "string") return ["t", v];
  return ["b", Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")];
}

export function decodeValue(e: Encoded): Value {
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

/** The storage class's name as SQLite's typeof() spells it. */
export function storageClass(v: Value): "null" | "integer" | "real" | "text" | "blob" {
  if (v === null) return "null";
  if (typeof v === "bigint") return "integer";
  if (typeof v === "number") return "real";
  if (typeof v === "string") return "text";
  return "blob";
}

/**
 * A SQLite literal that reads back as exactly `v`, storage class included.
 * A REAL always carries a decimal point or exponent (1.0, not 1); infinities
 * are 9e999 (SQLite reads an overflowing literal as Inf); text holding U+0000,
 * which a quoted literal cannot carry, is a cast blob.
 */
export function sqlLiteral(v: Value): string {
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
export function describeValue(v: Value): string {
  const s =
    v instanceof Uint8Array ? `x'${Buffer.from(v).toString("hex").slice(0, 16)}'` : JSON.stringify(String(v));
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** An identifier, always quoted: any name, even one that is a keyword or holds a quote, stays a name. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A key part in the change log's wire form (the replica protocol's, see
 * docs/architecture.md): a JSON number is an INTEGER, `{int}` a big one,
 * `{real}` a REAL, `{blob}` base64, a string TEXT.
 */
export function fromWire(w: unknown): Value {
  if (w === null || typeof w === "string") return w;
  if (typeof w === "number" && Number.isSafeInteger(w)) return BigInt(w);
  if (w !== null && typeof w === "object") {
    const o = w as Record<string, unknown>;
    if (typeof o.int === "string") return BigInt(o.int);
    if ("real" in o) {
      if (o.real === "-0") return -0;
      if (o.real === "Infinity") return Number.POSITIVE_INFINITY;
      if (o.real === "-Infinity") return Number.NEGATIVE_INFINITY;
      if (typeof o.real === "number") return o.real;
    }
    if (typeof o.blob === "string") return Buffer.from(o.blob, "base64");
  }
  throw new Error(`malformed key value ${JSON.stringify(w)}`);
}
