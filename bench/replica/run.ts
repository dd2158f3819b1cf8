/**
 * bench/replica: what change capture and apply cost, measured against the
 * same work without them, in one invocation on this machine.
 *
 *   node --import tsx bench/replica/run.ts [--n 50000] [--single 2000] [--runs 5] [--before DIR]
 *
 * `--before DIR`: also measure the tidewire source tree in DIR (DIR/src, e.g.
 * `git archive <commit> src | tar -x -C DIR`, with node_modules beside it),
 * in the same run, each round running both trees' tracked work beside the one
 * untracked baseline, so "before" and "after" meet the same machine load.
 *
 * - capture overhead, the writer's cost: N inserts, then N updates, on a
 *   tracked table, divided by the same on an identical untracked table; in
 *   single-row transactions and in transactions of 1,000 rows. Capture only
 *   stages the writes (triggers.ts), so this is the triggers' cost alone;
 * - ingest, the deferred rest: µs per change to move the staged writes into
 *   the log (one ingest after the inserts, one after the updates), and
 *   tracked writes plus their ingest divided by the untracked writes;
 * - apply: changes/s applying N inserted rows in batches of 1,000, and its
 *   ratio to a bare batched INSERT of the same rows (the floor);
 * - log size after 10,000 updates of one row.
 *
 * Every figure is the best of the rounds (the least disturbed by other load on
 * a shared machine; medians are printed beside them); tracked and untracked
 * runs, and apply and its floor, alternate within each round so drift in the
 * machine's load falls on both.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Change } from "../../src/replica/change.js";
import { Replica } from "../../src/replica/replica.js";
import { openStore, type Store } from "../../src/store.js";

/** One tidewire source tree under test. */
interface Impl {
  name: string;
  Replica: typeof Replica;
  openStore: typeof openStore;
}

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "50000" },
    single: { type: "string", default: "2000" },
    runs: { type: "string", default: "5" },
    before: { type: "string" },
  },
});
const N = Number(args.n);
const SINGLE = Number(args.single);
const RUNS = Number(args.runs);
const BATCH = 1000;
const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL)";

const IMPLS: Impl[] = [{ name: "this tree", Replica, openStore }];
if (args.before) {
  const root = resolve(args.before);
  IMPLS.unshift({
    name: `before (${root})`,
    Replica: (await import(join(root, "src/replica/replica.ts"))).Replica,
    openStore: (await import(join(root, "src/store.ts"))).openStore,
  });
}

const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-replica-"));
let fileNo = 0;

function freshStore(impl: Impl | null): { store: Store; ingest: () => void; close: () => void } {
  const path = join(dir, `db-${fileNo++}.db`);
  if (!impl) {
    const store = openStore(path);
    store.db.exec(SCHEMA);
    return { store, ingest: () => {}, close: () => store.close() };
  }
  // No ingest timer: ingest is timed on its own, when the bench calls it.
  const r = impl.Replica.open(path, { nodeId: "bench", ingestIntervalMs: 0 });
  r.store.db.exec(SCHEMA);
  r.track("items");
  return { store: r.store, ingest: () => r.ingest(), close: () => r.close() };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const best = (xs: number[]) => Math.min(...xs);

interface Times {
  insert: number;
  update: number;
  /** The ingest after the inserts, and after the updates (0 untracked). */
  ingestInsert: number;
  ingestUpdate: number;
}

/** ms for n inserts then n updates, `perTx` rows per transaction, each followed by an ingest. */
function writes(impl: Impl | null, n: number, perTx: number): Times {
  const { store, ingest, close } = freshStore(impl);
  const insertRow = store.db.prepare("INSERT INTO items (id, name, qty, price) VALUES (?, ?, ?, ?)");
  const updateRow = store.db.prepare("UPDATE items SET qty = ?, price = ? WHERE id = ?");
  const ins = store.writer((from: number, to: number) => {
    for (let i = from; i < to; i++) insertRow.run(i, `item ${i}`, i, i * 1.5);
  });
  const upd = store.writer((from: number, to: number) => {
    for (let i = from; i < to; i++) updateRow.run(i + 1, i * 2.5, i);
  });
  const timed = (fn: () => void) => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  };
  const insert = timed(() => {
    for (let i = 0; i < n; i += perTx) ins(i, Math.min(n, i + perTx));
  });
  const ingestInsert = timed(ingest);
  const update = timed(() => {
    for (let i = 0; i < n; i += perTx) upd(i, Math.min(n, i + perTx));
  });
  const ingestUpdate = timed(ingest);
  close();
  return { insert, update, ingestInsert, ingestUpdate };
}

function captureOverhead(n: number, perTx: number) {
  const plainInsert: number[] = [];
  const plainUpdate: number[] = [];
  const per = IMPLS.map(() => ({
    insert: [] as number[],
    update: [] as number[],
    ingestInsert: [] as number[],
    ingestUpdate: [] as number[],
    allInsert: [] as number[],
    allUpdate: [] as number[],
    ratios: {
      insert: [] as number[],
      update: [] as number[],
      allInsert: [] as number[],
      allUpdate: [] as number[],
    },
  }));
  for (let r = 0; r < RUNS; r++) {
    const plain = writes(null, n, perTx);
    plainInsert.push(plain.insert);
    plainUpdate.push(plain.update);
    IMPLS.forEach((impl, i) => {
      const t = per[i]!;
      const tracked = writes(impl, n, perTx);
      t.insert.push(tracked.insert);
      t.update.push(tracked.update);
      t.ingestInsert.push(tracked.ingestInsert);
      t.ingestUpdate.push(tracked.ingestUpdate);
      t.allInsert.push(tracked.insert + tracked.ingestInsert);
      t.allUpdate.push(tracked.update + tracked.ingestUpdate);
      t.ratios.insert.push(tracked.insert / plain.insert);
      t.ratios.update.push(tracked.update / plain.update);
      t.ratios.allInsert.push((tracked.insert + tracked.ingestInsert) / plain.insert);
      t.ratios.allUpdate.push((tracked.update + tracked.ingestUpdate) / plain.update);
    });
  }
  const us = (ms: number[]) => (best(ms) * 1000) / n;
  return per.map((t) => ({
    insert: best(t.insert) / best(plainInsert),
    update: best(t.update) / best(plainUpdate),
    medianInsert: median(t.ratios.insert),
    medianUpdate: median(t.ratios.update),
    ingestInsertUs: us(t.ingestInsert),
    ingestUpdateUs: us(t.ingestUpdate),
    allInsert: best(t.allInsert) / best(plainInsert),
    allUpdate: best(t.allUpdate) / best(plainUpdate),
    medianAllInsert: median(t.ratios.allInsert),
    medianAllUpdate: median(t.ratios.allUpdate),
    plainInsertPerSec: (n / best(plainInsert)) * 1000,
    plainUpdatePerSec: (n / best(plainUpdate)) * 1000,
  }));
}

function sourceChanges(n: number): Change[] {
  const { store, close } = freshStore(IMPLS[IMPLS.length - 1]!);
  const r = Replica.attach(store, { nodeId: "bench" });
  const insert = store.db.prepare("INSERT INTO items (id, name, qty, price) VALUES (?, ?, ?, ?)");
  store.write(() => {
    for (let i = 0; i < n; i++) insert.run(i, `item ${i}`, i, i * 1.5);
  });
  const changes = r.changesSince(0, { limit: n }).changes;
  close();
  // As a transport hands them over: parsed from JSON.
  return JSON.parse(JSON.stringify(changes)) as Change[];
}

function applyThroughput(n: number) {
  const changes = sourceChanges(n);
  const rows = changes.map((c) => [
    BigInt(c.pk[0] as number),
    c.columns.name,
    BigInt(c.columns.qty as number),
    (c.columns.price as { real: number }).real,
  ]);
  const applyRates = IMPLS.map(() => [] as number[]);
  const floorRates: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const plain = freshStore(null);
    const insert = plain.store.db.prepare("INSERT INTO items (id, name, qty, price) VALUES (?, ?, ?, ?)");
    const tx = plain.store.writer((from: number, to: number) => {
      for (let i = from; i < to; i++) insert.run(...(rows[i] as unknown[]));
    });
    let t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) tx(i, Math.min(n, i + BATCH));
    floorRates.push((n / (performance.now() - t0)) * 1000);
    plain.close();

    IMPLS.forEach((impl, k) => {
      const target = impl.Replica.open(join(dir, `db-${fileNo++}.db`), { nodeId: "target" });
      target.store.db.exec(SCHEMA);
      target.track("items");
      t0 = performance.now();
      for (let i = 0; i < n; i += BATCH) target.apply(changes.slice(i, i + BATCH));
      applyRates[k]!.push((n / (performance.now() - t0)) * 1000);
      target.close();
    });
  }
  const floor = Math.max(...floorRates);
  return applyRates.map((rates) => {
    const apply = Math.max(...rates);
    const ratios = rates.map((a, i) => a / (floorRates[i] as number));
    return { apply, floor, ratio: apply / floor, medianRatio: median(ratios) };
  });
}

function logAfterUpdates(updates: number) {
  const r = IMPLS[IMPLS.length - 1]!.Replica.open(join(dir, `db-${fileNo++}.db`), { nodeId: "bench" });
  r.store.db.exec(SCHEMA);
  r.track("items");
  r.store.db.prepare("INSERT INTO items VALUES (1, 'pen', 0, 1.0)").run();
  const update = r.store.db.prepare("UPDATE items SET qty = ? WHERE id = 1");
  for (let i = 1; i <= updates; i++) update.run(i);
  const stats = r.stats();
  r.close();
  return stats;
}

const started = Date.now();
const singles = captureOverhead(SINGLE, 1);
const batcheds = captureOverhead(N, BATCH);
const applies = applyThroughput(N);
const log = logAfterUpdates(10_000);
rmSync(dir, { recursive: true, force: true });

const f = (x: number) => x.toFixed(2);
const k = (x: number) => Math.round(x).toLocaleString("en-US");
const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, load ${loadavg()
  .map((l) => l.toFixed(1))
  .join("/")}, node ${process.version}`;
console.log(`bench/replica — ${new Date(started).toISOString()} — ${machine}
runs ${RUNS} (best of, medians of the per-round ratios in brackets), N ${N} batched (transactions of ${BATCH}), ${SINGLE} single-row`);
IMPLS.forEach((impl, i) => {
  const [single, batched, apply] = [singles[i]!, batcheds[i]!, applies[i]!];
  console.log(`
## ${impl.name}

| capture overhead, the writer's cost (tracked ÷ untracked time; triggers only, ingest deferred) | inserts | updates |
|---|---|---|
| single-row transactions (${SINGLE}) | ${f(single.insert)}x (${f(single.medianInsert)}x) | ${f(single.update)}x (${f(single.medianUpdate)}x) |
| transactions of ${BATCH} rows (${N}) | ${f(batched.insert)}x (${f(batched.medianInsert)}x) | ${f(batched.update)}x (${f(batched.medianUpdate)}x) |

| ingest, the deferred work (one ingest of all staged writes) | inserts | updates |
|---|---|---|
| µs per change, after single-row transactions (${SINGLE}) | ${f(single.ingestInsertUs)} | ${f(single.ingestUpdateUs)} |
| µs per change, after transactions of ${BATCH} rows (${N}) | ${f(batched.ingestInsertUs)} | ${f(batched.ingestUpdateUs)} |
| tracked + ingest ÷ untracked, single-row | ${f(single.allInsert)}x (${f(single.medianAllInsert)}x) | ${f(single.allUpdate)}x (${f(single.medianAllUpdate)}x) |
| tracked + ingest ÷ untracked, transactions of ${BATCH} | ${f(batched.allInsert)}x (${f(batched.medianAllInsert)}x) | ${f(batched.allUpdate)}x (${f(batched.medianAllUpdate)}x) |

untracked baseline: ${k(single.plainInsertPerSec)} inserts/s and ${k(single.plainUpdatePerSec)} updates/s single-row; ${k(batched.plainInsertPerSec)} / ${k(batched.plainUpdatePerSec)} batched

| apply, batches of ${BATCH} | changes/s |
|---|---|
| Replica.apply (${N} inserted rows, 3 columns each) | ${k(apply.apply)} |
| floor: bare batched INSERT of the same rows | ${k(apply.floor)} |
| ratio apply ÷ floor | ${f(apply.ratio)} (${f(apply.medianRatio)}) |`);
});
console.log(`
log after 10,000 updates of one row's column: ${log.entries} clocks (the row entry and 3 columns), ${log.stored} stored entries, last sequence ${log.lastSeq}`);
