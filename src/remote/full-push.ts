/**
 * FullPush: the full copy of a push — the first one, a resync, or after the
 * tables' shape changed — as one atomic swap on the target.
 *
 * Contract: what is durable is the decision, not the rows. `decision`
 * makes a small payload (spooled in the outbox like any other, `copy: true`,
 * no rows) holding the sync key, the tables and the cursor the target will
 * have acknowledged once the copy is in: `<sequence>@<shape>`, the sequence
 * read before the copy. `copy` then reads every row from one snapshot of
 * the local file (snapshot.ts) and hands the target a CopyJob, which it
 * applies in one transaction with the key recorded in its history. A crash
 * before the commit leaves the target's old state whole and the decision in
 * the outbox: the next cycle copies again under the same key. A crash after
 * the commit finds the key there ("duplicate"), and only the cursor moves:
 * the copy is applied exactly once. A decision whose shape is no longer the
 * tables' (a schema change after a crash) is dropped for a new one. Rows
 * written during the copy have later sequences than the cursor, and the
 * next incremental push sends them again as whole rows: harmless.
 */
import { createHash } from "node:crypto";
import { ulid } from "ulid";
import type { SqlValue } from "../replica/values.js";
import type { Store } from "../store.js";
import type { Catalog } from "./catalog.js";
import type { CopyJob, IndexSpec, SwapHook, ViewSpec } from "./copy-job.js";
import { makePayload, type Payload, type TableSchema } from "./payload.js";
import type { PushProgress } from "./push-options.js";
import { Snapshot } from "./snapshot.js";
import type { ApplyOutcome, RemoteTarget } from "./target.js";
import { type Fallback, type PgOverrides, planPgTypes } from "./targets/postgres-plan.js";

export interface FullPushOptions {
  /** Also copy tables nobody tracks (a snapshot at each full push; never pushed incrementally). */
  allTables: boolean;
  /** Also create the views. */
  withViews: boolean;
  pgTypes: PgOverrides;
  /** Rows per batch read from the source, and per progress report. */
  chunkRows: number;
  keepHistory: number;
  onProgress: ((p: PushProgress) => void) | undefined;
  /** Every tracked table, pushed or not (--all-tables copies only the others; a table of another bucket is not "untracked"). */
  tracked: () => string[];
  /** Where capture on the target's tables is installed again after the swap (the tables are new objects). */
  afterSwap?: SwapHook;
}

/** What a copy reports back to the cycle. */
export interface CopyStat {
  mutations: number;
  fallbacks: Fallback[];
  warnings: string[];
}

const noHook: SwapHook = async () => {};

export class FullPush {
  constructor(
    private readonly store: Store,
    private readonly target: RemoteTarget,
    private readonly catalog: Catalog,
    private readonly options: FullPushOptions,
  ) {}

  /**
   * The fingerprint a cursor carries: the tracked tables' names, keys,
   * columns and declared types, the type overrides, the indexes, and with
   * the flags the untracked tables and the views. A change in any of them
   * makes the next push a full one.
   */
  shape(schemas: TableSchema[], overrides: string): string {
    const o = this.options;
    const extra = o.allTables ? this.catalog.untracked(new Set(o.tracked()), () => {}) : [];
    const text = JSON.stringify([
      schemas.map((t) => [
        t.name,
        t.key,
        t.columns.map((c) => [c.name, c.affinity, c.untyped, c.declared ?? "", c.json ?? false]),
      ]),
      overrides,
      // Appended only when present, so a cursor taken before indexes were copied stays valid without any.
      ...this.extrasOf(schemas, extra),
    ]);
    return createHash("sha256").update(text).digest("hex").slice(0, 16);
  }

  /** The spooled decision to copy every table now; `upto` is the change-log sequence read before. */
  decision(schemas: TableSchema[], shape: string, upto: string): Payload {
    return makePayload({
      mode: "full",
      scope: `copy:${ulid()}`,
      reset: schemas,
      tables: [],
      mutations: [],
      cursor: `${upto}@${shape}`,
      copy: true,
    });
  }

  /** Whether a spooled decision still describes the tables (else a new full push replaces it). */
  current(p: Payload, shape: string): boolean {
    return p.cursor?.split("@")[1] === shape;
  }

  /** Copies every table under the decision's key; "duplicate" when the target already has it. */
  async copy(p: Payload, stat: CopyStat): Promise<ApplyOutcome> {
    const o = this.options;
    const snapshot = new Snapshot(this.store);
    try {
      const warn = (m: string) => {
        if (!stat.warnings.includes(m)) stat.warnings.push(m);
      };
      const extra = o.allTables ? snapshot.catalog.untracked(new Set(o.tracked()), warn) : [];
      let tables = [...p.reset, ...extra];
      let retype: CopyJob["retype"];
      if (this.target.backend === "postgres") {
        // The declared types (and overrides) without reading the data; the target asks for a scan only if a value misfits.
        tables = planPgTypes(tables, () => [], o.pgTypes).tables;
        retype = (t) => {
          const plan = planPgTypes([t], (x) => snapshot.scan(x), o.pgTypes);
          stat.fallbacks.push(...plan.fallbacks);
          return plan.tables[0]!;
        };
      }
      const indexes = tables.flatMap((t) => snapshot.catalog.indexes(t.name));
      const views = o.withViews ? snapshot.catalog.views() : [];
      const totals = new Map(tables.map((t) => [t.name, snapshot.count(t)]));
      const progress = (t: TableSchema, rows: number) => {
        const total = totals.get(t.name) ?? rows;
        o.onProgress?.({ table: t.name, rows, total: Math.max(total, rows) });
      };
      const job: CopyJob = {
        key: p.key,
        name: p.name,
        tables,
        indexes,
        views,
        rows: (t, size) => this.reported(t, snapshot.rows(t, Math.min(size, o.chunkRows)), progress),
        sourceFile: this.store.path === ":memory:" ? null : this.store.path,
        chunkRows: o.chunkRows,
        progress,
        afterSwap: o.afterSwap ?? noHook,
        warn,
        retype,
      };
      const outcome = await this.target.copy(job, o.keepHistory);
      if (outcome === "applied") stat.mutations += [...totals.values()].reduce((a, b) => a + b, 0);
      return outcome;
    } finally {
      snapshot.close();
    }
  }

  /** The batches, with a progress report before the first and after each. */
  private *reported(
    t: TableSchema,
    batches: Iterable<SqlValue[][]>,
    progress: (t: TableSchema, rows: number) => void,
  ): Generator<SqlValue[][]> {
    let rows = 0;
    progress(t, rows);
    for (const batch of batches) {
      yield batch;
      rows += batch.length;
      progress(t, rows);
    }
  }

  private extrasOf(schemas: TableSchema[], extra: TableSchema[]): unknown[] {
    const indexes: IndexSpec[] = [...schemas, ...extra].flatMap((t) => this.catalog.indexes(t.name));
    const views: ViewSpec[] = this.options.withViews ? this.catalog.views() : [];
    const out: unknown[] = [];
    if (indexes.length > 0) out.push(["indexes", indexes]);
    if (extra.length > 0) out.push(["tables", extra]);
    if (views.length > 0) out.push(["views", views]);
    return out;
  }
}
