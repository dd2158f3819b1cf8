/**
 * bench/replica/paired: apply of this checkout beside another checkout's
 * (`--base <dir>`, a git worktree of an earlier commit with node_modules
 * linked), and beside the floor, in one run and alternating, so the machine's
 * drift falls on both alike.
 *
 *   node --import tsx bench/replica/paired.ts --base /path/to/old/checkout [--n 50000] [--runs 5]
 *
 * Measures changes/s applying, in batches of 1,000: N inserted rows (3
 * columns), then N updates of one column of those rows (the path this
 * session rewrote: an UPDATE of the changed columns instead of an upsert);
 * and the floor, a bare batched INSERT of the same rows. Prints the best of
 * the runs and each ratio, with the median ratio in brackets.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";

const { values } = parseArgs({
  options: {
    base: { type: "string" },
    n: { type: "string", default: "50000" },
    runs: { type: "string", default: "5" },
  },
});
if (!values.base) throw new Error("--base <dir> (another checkout of tidewire) is required");
const N = Number(values.n);
const RUNS = Number(values.runs);
const BATCH = 1000;
// No NOT NULL: the base before this session's apply could not take an update of such a table at all.
const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL)";

interface ReplicaLike {
  store: { db: Database.Database };
  track(t: string): unknown;
  changesSince(c: number, o: { limit: number }): { changes: unknown[] };
  apply(c: unknown[]): unknown;
  close(): void;
}
type Open = (path: string, o: { nodeId: string; ingestIntervalMs?: number }) => ReplicaLike;

const here = (await import(resolve("src/replica/replica.ts"))).Replica as { open: Open };
const base = (await import(resolve(values.base, "src/replica/replica.ts"))).Replica as { open: Open };
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-paired-"));
let fileNo = 0;

/** The wire batches of N inserts and then N one-column updates, made once by this checkout. */
function source(): { inserts: unknown[]; updates: unknown[]; rows: unknown[][] } {
  const r = here.open(join(dir, `src-${fileNo++}.db`), { nodeId: "src", ingestIntervalMs: 0 });
  r.store.db.exec(SCHEMA);
  r.track("items");
  const rows = Array.from({ length: N }, (_, i) => [i + 1, `item ${i}`, i, i / 3]);
  const insert = r.store.db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
  r.store.db.transaction(() => {
    for (const row of rows) insert.run(...row);
  })();
  const inserts = JSON.parse(JSON.stringify(r.changesSince(0, { limit: N }).changes));
  const update = r.store.db.prepare("UPDATE items SET qty = qty + 1 WHERE id = ?");
  r.store.db.transaction(() => {
    for (let i = 1; i <= N; i++) update.run(i);
  })();
  const all = r.changesSince(0, { limit: 3 * N }).changes as Array<{ op: string }>;
  const updates = JSON.parse(JSON.stringify(all.filter((c) => c.op === "update")));
  r.close();
  return { inserts, updates, rows };
}

function rate(n: number, ms: number): number {
  return (n / ms) * 1000;
}

function applyRun(open: Open, inserts: unknown[], updates: unknown[]): { ins: number; upd: number } {
  const r = open(join(dir, `db-${fileNo++}.db`), { nodeId: "target", ingestIntervalMs: 0 });
  r.store.db.exec(SCHEMA);
  r.track("items");
  let t0 = performance.now();
  for (let i = 0; i < inserts.length; i += BATCH) r.apply(inserts.slice(i, i + BATCH));
  const ins = rate(inserts.length, performance.now() - t0);
  t0 = performance.now();
  for (let i = 0; i < updates.length; i += BATCH) r.apply(updates.slice(i, i + BATCH));
  const upd = rate(updates.length, performance.now() - t0);
  r.close();
  return { ins, upd };
}

function floorRun(rows: unknown[][]): number {
  const db = new Database(join(dir, `floor-${fileNo++}.db`));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(SCHEMA);
  const insert = db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
  const tx = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) insert.run(...(rows[i] as unknown[]));
  });
  const t0 = performance.now();
  for (let i = 0; i < rows.length; i += BATCH) tx.immediate(i, Math.min(rows.length, i + BATCH));
  const r = rate(rows.length, performance.now() - t0);
  db.close();
  return r;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const { inserts, updates, rows } = source();
const results = {
  here: [] as Array<{ ins: number; upd: number }>,
  base: [] as Array<{ ins: number; upd: number }>,
  floor: [] as number[],
};
for (let i = 0; i < RUNS; i++) {
  // Alternate which goes first, so neither always runs on a warmer machine.
  const order: Array<"here" | "base"> = i % 2 ? ["base", "here"] : ["here", "base"];
  results.floor.push(floorRun(rows));
  for (const which of order)
    results[which].push(applyRun(which === "here" ? here.open : base.open, inserts, updates));
}
rmSync(dir, { recursive: true, force: true });

const k = (x: number) => `${Math.round(x).toLocaleString("en-US")}`;
const best = (xs: number[]) => Math.max(...xs);
const ratioMedian = (a: number[], b: number[]) => median(a.map((x, i) => x / (b[i] as number)));
const hi = results.here.map((r) => r.ins);
const bi = results.base.map((r) => r.ins);
const hu = results.here.map((r) => r.upd);
const bu = results.base.map((r) => r.upd);
console.log(`apply, batches of ${BATCH}, N = ${N}, ${RUNS} runs (best, and median of per-run ratios)
| measure | this checkout | base (${values.base}) | this ÷ base | floor | this ÷ floor | base ÷ floor |
|---|---:|---:|---:|---:|---:|---:|
| inserts | ${k(best(hi))}/s | ${k(best(bi))}/s | ${(best(hi) / best(bi)).toFixed(2)} (${ratioMedian(hi, bi).toFixed(2)}) | ${k(best(results.floor))}/s | ${(best(hi) / best(results.floor)).toFixed(2)} (${ratioMedian(hi, results.floor).toFixed(2)}) | ${(best(bi) / best(results.floor)).toFixed(2)} (${ratioMedian(bi, results.floor).toFixed(2)}) |
| one-column updates | ${k(best(hu))}/s | ${k(best(bu))}/s | ${(best(hu) / best(bu)).toFixed(2)} (${ratioMedian(hu, bu).toFixed(2)}) | | | |`);
