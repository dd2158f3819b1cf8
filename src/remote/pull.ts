/**
 * Puller: brings the edits made directly on a remote target (by another
 * app, psql, wrangler, the sqlite3 shell) into the local replica.
 *
 * Contract: each cycle installs (or confirms) capture on the target's copies
 * of the tracked tables, then reads the target's change entries after the
 * pull cursor (CursorStore, direction "pull", peer = the target's id) in
 * batches, reads the current remote rows of the keys they name, and applies
 * them through `Replica.apply` — the same per-column last-writer-wins,
 * conflict and quarantine rules as hub sync — as changes from the target's
 * own node id (capture.ts `remoteOrigin`), each with the HLC of the entry
 * that last wrote it. The apply and the cursor commit in one transaction,
 * and only then are the pulled entries pruned on the target. Were the
 * cursor ever behind (a cursor store restored from elsewhere), a batch read
 * again finds its changes already here (the same HLC and origin): the
 * replica applies none of them twice.
 * Entries for tables not pulled here (not tracked locally, another bucket)
 * are passed over. A key whose row is gone on the target but whose last
 * entry is not a delete is passed over too: its delete follows in the log.
 */
import type { CursorStore } from "../cursor-store.js";
import { TidewireError } from "../errors.js";
import { remotePullChanges, remotePullTotal } from "../metrics.js";
import type { Change } from "../replica/change.js";
import type { Replica } from "../replica/replica.js";
import { type SqlValue, toWire, type WireValue } from "../replica/values.js";
import { type Capture, type CapturedChange, entryHlc, keyText, remoteOrigin } from "./capture.js";
import type { TableSchema } from "./payload.js";
import { type Backend, describeError, RemoteError, type RemoteTarget } from "./target.js";

export interface PullResult {
  target: string;
  backend: Backend;
  /** Change entries read from the target. */
  entries: number;
  /** Changes handed to the local apply (one key's entries become one to a few). */
  changes: number;
  /** Of those, how many changed something here (a repeated pull applies none). */
  applied: number;
  /** Of those, how many were quarantined (see `tidewire conflicts list`). */
  quarantined: number;
  /** Entries passed over: tables not pulled here, or rows gone before a delete entry. */
  skipped: number;
  /** The target's last pulled sequence. */
  cursor: string;
  durationMs: number;
}

export interface PullerOptions {
  replica: Replica;
  target: RemoteTarget;
  cursors: CursorStore;
  /** The cursor's bucket part: "*" or the buckets joined by commas. */
  bucket: string;
  batchSize: number;
  /** The tracked tables pulled, as the push sees them. */
  schemas: () => TableSchema[];
}

export class Puller {
  readonly origin: string;
  private readonly capture: Capture;
  private readonly key: { peer: string; bucket: string; direction: "pull" };

  constructor(private readonly o: PullerOptions) {
    if (!o.target.capture) throw new Error(`${o.target.id} cannot be pulled from`);
    this.capture = o.target.capture();
    this.origin = remoteOrigin(o.target.id);
    this.key = { peer: o.target.id, bucket: o.bucket, direction: "pull" };
  }

  /** The target's last pulled sequence, or undefined before the first pull. */
  cursor(): string | undefined {
    return this.o.cursors.get(this.key);
  }

  /** Installs capture on the target's copies of the tables (idempotent); returns the tables captured. */
  async install(): Promise<Map<string, string[]>> {
    return this.capture.install(this.o.schemas());
  }

  /** Rejects with a RemoteError when the target failed (the cursor stays), or the apply's own error. */
  async pull(): Promise<PullResult> {
    const backend = this.o.target.backend;
    try {
      const r = await this.run();
      remotePullTotal.inc({ backend, status: "success" });
      remotePullChanges.inc({ backend }, r.applied);
      return r;
    } catch (err) {
      remotePullTotal.inc({ backend, status: "failure" });
      if (err instanceof TidewireError) throw err;
      throw new RemoteError(
        `pull from ${this.o.target.id} failed: ${describeError(err)}; the cursor did not move`,
      );
    }
  }

  /**
   * Applies a batch's changes and moves the cursor in one transaction; only
   * then may the entries go on the target. When it rolls back, the cursor
   * store's memory is put back too, so the next pull reads the batch again.
   */
  private commit(
    changes: Change[],
    last: bigint,
    r: Omit<PullResult, "target" | "backend" | "cursor" | "durationMs">,
  ): void {
    const before = this.cursor();
    try {
      this.o.replica.store.write(() => {
        if (changes.length > 0) {
          const applied = this.o.replica.apply(changes, { from: this.origin });
          r.changes += applied.received;
          r.applied += applied.applied;
          r.quarantined += applied.quarantined;
        }
        this.o.cursors.set(this.key, String(last));
        this.o.cursors.flushDirty();
      });
    } catch (err) {
      if (before === undefined) this.o.cursors.delete(this.key);
      else this.o.cursors.set(this.key, before);
      throw err;
    }
  }

  private async run(): Promise<PullResult> {
    const started = performance.now();
    const schemas = this.o.schemas();
    const byName = new Map(schemas.map((t) => [t.name, t]));
    const columns = await this.capture.install(schemas);
    const r = { entries: 0, changes: 0, applied: 0, quarantined: 0, skipped: 0 };
    let cursor = BigInt(this.cursor() ?? "0");
    for (;;) {
      const batch = await this.capture.read(cursor, this.o.batchSize);
      if (batch.length === 0) break;
      r.entries += batch.length;
      const changes: Change[] = [];
      for (const [table, keys] of group(batch)) {
        const t = byName.get(table);
        const cols = columns.get(table);
        if (!t || !cols) {
          for (const list of keys.values()) r.skipped += list.length;
          continue;
        }
        const live = [...keys.values()].filter((l) => l[l.length - 1]!.op !== "delete").map((l) => l[0]!.key);
        const rows = new Map<string, SqlValue[]>();
        (await this.capture.rows(t, cols, live)).forEach((row, i) => {
          if (row) rows.set(keyText(live[i]!), row);
        });
        for (const [k, list] of keys) {
          const made = toChanges(t, cols, list, rows.get(k) ?? null, this.origin);
          if (made.length === 0) r.skipped += list.length;
          changes.push(...made);
        }
      }
      const last = batch[batch.length - 1]!.seq;
      this.commit(changes, last, r);
      cursor = last;
      await this.capture.prune(last);
      if (batch.length < this.o.batchSize) break;
    }
    return {
      target: this.o.target.id,
      backend: this.o.target.backend,
      ...r,
      cursor: String(cursor),
      durationMs: performance.now() - started,
    };
  }
}

/** The batch's entries by table, then by key, each key's in sequence order. */
function group(batch: CapturedChange[]): Map<string, Map<string, CapturedChange[]>> {
  const out = new Map<string, Map<string, CapturedChange[]>>();
  for (const c of batch) {
    const keys = out.get(c.table) ?? new Map<string, CapturedChange[]>();
    out.set(c.table, keys);
    const k = keyText(c.key);
    const list = keys.get(k);
    if (list) list.push(c);
    else keys.set(k, [c]);
  }
  return out;
}

/**
 * One key's entries as changes: a delete when the last entry is one;
 * otherwise the row as it is now — whole, at the HLC of its last insert
 * (if the batch has one), and each column an update changed after that at
 * the HLC of the last entry that changed it, so a column the target did not
 * touch never overrides a newer local write.
 */
function toChanges(
  t: TableSchema,
  cols: string[],
  list: CapturedChange[],
  row: SqlValue[] | null,
  origin: string,
): Change[] {
  const last = list[list.length - 1]!;
  const pk = last.key.map(toWire);
  const base = { table: t.name, pk, origin };
  if (last.op === "delete") {
    return [{ ...base, op: "delete", columns: {}, hlc: entryHlc(last), seq: Number(last.seq) }];
  }
  if (row === null) return [];
  // A change names the key in `pk` only.
  const keys = new Set(t.key);
  const value = new Map<string, WireValue>();
  cols.forEach((c, i) => {
    if (!keys.has(c)) value.set(c, toWire(row[i] ?? null));
  });
  const pick = (names: Iterable<string>) => {
    const out: Record<string, WireValue> = {};
    for (const n of names) if (value.has(n)) out[n] = value.get(n)!;
    return out;
  };
  const out: Change[] = [];
  let from = 0;
  for (let i = list.length - 1; i >= 0; i--) {
    if (list[i]!.op === "insert" || list[i]!.columns === null) {
      from = i + 1;
      out.push({
        ...base,
        op: "insert",
        columns: pick(cols),
        hlc: entryHlc(list[i]!),
        seq: Number(list[i]!.seq),
      });
      break;
    }
  }
  const lastWriter = new Map<string, CapturedChange>();
  for (const e of list.slice(from)) for (const c of e.columns ?? []) lastWriter.set(c, e);
  const byEntry = new Map<CapturedChange, string[]>();
  for (const [c, e] of lastWriter) {
    if (!value.has(c)) continue;
    const names = byEntry.get(e);
    if (names) names.push(c);
    else byEntry.set(e, [c]);
  }
  for (const [e, names] of byEntry) {
    out.push({ ...base, op: "update", columns: pick(names), hlc: entryHlc(e), seq: Number(e.seq) });
  }
  return out;
}
