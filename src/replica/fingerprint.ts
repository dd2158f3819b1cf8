/**
 * Fingerprint: what the log remembers of a live row's values, so that capture
 * can find which columns changed without triggers that name them.
 *
 * Contract: `fingerprint(values)` is 8 bytes per captured column (in
 * `tw_tracked.cols` order) of a 64-bit hash of the value and its storage
 * class: 1 and 1.0, '1' and x'31', 'a' and 'A' all differ, as they did to the
 * triggers' `IS NOT … COLLATE BINARY OR typeof` test. It is kept on the row's
 * live row entry (`tw_log.fp`, migration 10) and rewritten by every ingest,
 * reconciliation and apply that writes the row: `refreshFingerprints` is the
 * one call the applier makes for the rows it materialised (capture is
 * suppressed there, and a row whose fingerprint lagged would be taken for a
 * local write). A fingerprint of another width (the column list changed) or
 * none (a row logged before migration 10) is unknown, never "all equal".
 * The hash is JavaScript, run by ingest in our process: triggers stay plain SQL.
 */
import type Database from "better-sqlite3";
import type { TrackedTable } from "./catalog.js";
import { chunkSize, placeholders, rowsOf } from "./rows.js";
import { quoteIdent } from "./schema.js";
import { keyString, type SqlValue } from "./values.js";

export const FP_BYTES = 8;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

let h1 = 0;
let h2 = 0;

function mix(w: number): void {
  h1 = Math.imul(h1 ^ w, 2654435761);
  h2 = Math.imul(h2 ^ w, 1597334677);
}

/** Two 32-bit lanes (cyrb53's mixing), seeded by storage class. */
function hashInto(v: SqlValue, out: Buffer, at: number): void {
  const tag =
    v === null ? 1 : typeof v === "bigint" ? 2 : typeof v === "number" ? 3 : typeof v === "string" ? 4 : 5;
  h1 = 0xdeadbeef ^ tag;
  h2 = 0x41c6ce57 ^ tag;
  if (typeof v === "bigint") {
    // SQLite has no integer beyond 64 bits.
    mix(Number(BigInt.asUintN(32, v)));
    mix(Number(BigInt.asUintN(32, v >> 32n)));
  } else if (typeof v === "number") {
    f64[0] = v;
    mix(u32[0] as number);
    mix(u32[1] as number);
  } else if (typeof v === "string") {
    for (let i = 0; i < v.length; i++) mix(v.charCodeAt(i));
    mix(v.length);
  } else if (v !== null) {
    for (let i = 0; i < v.length; i++) mix(v[i] as number);
    mix(v.length);
  }
  const a = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  const b = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(a ^ (a >>> 13), 3266489909);
  out.writeUInt32LE(a >>> 0, at);
  out.writeUInt32LE(b >>> 0, at + 4);
}

/** The fingerprint of a row's captured columns' values, in column order. */
export function fingerprint(values: readonly SqlValue[]): Buffer {
  const out = Buffer.allocUnsafe(values.length * FP_BYTES);
  for (let i = 0; i < values.length; i++) hashInto(values[i] as SqlValue, out, i * FP_BYTES);
  return out;
}

/**
 * The indexes of the columns whose value differs between two fingerprints of
 * one column list; null when `old` cannot tell (missing, or of another width).
 */
export function changedColumns(old: Uint8Array | null | undefined, now: Buffer): number[] | null {
  if (!old || old.length !== now.length) return null;
  const out: number[] = [];
  for (let at = 0; at < now.length; at += FP_BYTES) {
    for (let b = 0; b < FP_BYTES; b++) {
      if (old[at + b] !== now[at + b]) {
        out.push(at / FP_BYTES);
        break;
      }
    }
  }
  return out;
}

/** One column's 8 bytes of a fingerprint, or null when it has no such column. */
export function columnHash(fp: Uint8Array | null | undefined, i: number, width: number): Buffer | null {
  if (!fp || fp.length !== width * FP_BYTES || i < 0 || i >= width) return null;
  return Buffer.from(fp.buffer, fp.byteOffset + i * FP_BYTES, FP_BYTES);
}

const statements = new WeakMap<Database.Database, Database.Statement>();

/** Writes a live row entry's fingerprint. */
export function storeFingerprint(db: Database.Database, tbl: number, pk: SqlValue, fp: Buffer): void {
  let st = statements.get(db);
  if (!st) {
    st = db.prepare("UPDATE tw_log SET fp = ? WHERE tbl = ? AND pk = ? AND col = ''");
    statements.set(db, st);
  }
  st.run(fp, tbl, pk);
}

/** The SQL function (on tidewire's own connection only) that fingerprints its arguments. */
const FP_FUNCTION = "tidewire_fingerprint";
const registered = new WeakSet<Database.Database>();
const refreshers = new WeakMap<TrackedTable, Map<number, Database.Statement>>();

function refresher(db: Database.Database, t: TrackedTable, n: number): Database.Statement {
  if (!registered.has(db)) {
    db.function(
      FP_FUNCTION,
      { deterministic: true, varargs: true, safeIntegers: true },
      (...values: unknown[]) => fingerprint(values as SqlValue[]),
    );
    registered.add(db);
  }
  let bySize = refreshers.get(t);
  if (!bySize) {
    bySize = new Map();
    refreshers.set(t, bySize);
  }
  let st = bySize.get(n);
  if (!st) {
    const key = quoteIdent(t.pk[0]!);
    const cols = t.columns.map((c) => `r.${quoteIdent(c)}`).join(", ");
    // A key the table's collation matches under another spelling finds no row
    // here: the JS path below reads it as the applier wrote it.
    st = db.prepare(
      `UPDATE tw_log SET fp = ${FP_FUNCTION}(${cols}) FROM ${quoteIdent(t.name)} AS r
       WHERE tw_log.tbl = ? AND tw_log.col = '' AND tw_log.pk IN (${placeholders(n)}) AND r.${key} = tw_log.pk`,
    );
    bySize.set(n, st);
  }
  return st;
}

/**
 * Rewrites the fingerprints of these rows from what their tables hold now:
 * the applier calls it, capture suppressed, for the rows it wrote (see the
 * contract above). Rows of relayed tables, and keys without a row, are
 * skipped. A single-column key's rows are fingerprinted inside SQLite, a
 * chunk of keys per statement (the hash is a function on this connection,
 * never in a trigger); a composite key's are read row by row.
 */
export function refreshFingerprints(
  db: Database.Database,
  rows: Iterable<{ t: TrackedTable; key: SqlValue }>,
): void {
  const byTable = new Map<TrackedTable, SqlValue[]>();
  for (const { t, key } of rows) {
    if (t.relayed) continue;
    const keys = byTable.get(t);
    if (keys) keys.push(key);
    else byTable.set(t, [key]);
  }
  for (const [t, keys] of byTable) {
    if (t.pk.length === 1 && t.columns.length > 0) {
      let done = 0;
      for (let i = 0; i < keys.length; ) {
        const n = chunkSize(keys.length - i);
        done += refresher(db, t, n).run(t.id, ...keys.slice(i, i + n)).changes;
        i += n;
      }
      if (done === keys.length) continue;
    }
    const values = rowsOf(db, t).readMany(keys);
    for (const key of keys) {
      const v = values.get(keyString(key));
      if (v) storeFingerprint(db, t.id, key, fingerprint(v));
    }
  }
}
