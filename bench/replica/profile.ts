/**
 * bench/replica/profile: one phase of the change path alone in this process,
 * for `node --cpu-prof` (then bench/common/profile-summary.ts --per N×rounds).
 *
 *   node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/replica/profile.ts apply|apply-update|ingest-insert|ingest-update [--n 50000] [--rounds 4] [--src DIR]
 *
 * Prints wall and CPU µs per change (CPU of this process, the steadier figure
 * on a shared machine); `--base DIR` also runs another checkout's sources
 * (DIR/src, node_modules linked), round by round alternating with this tree's,
 * and prints the best and median CPU µs per change of each, and their ratio.
 *
 * apply: N inserted rows applied in batches of 1,000; apply-update: then N
 * updates of one column of those rows (only these timed); ingest-insert /
 * ingest-update: N tracked inserts (or updates of 2 columns) in transactions
 * of 1,000, then one ingest, the writes included (the profile tells them apart).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Change } from "../../src/replica/change.js";
import { Replica as ThisReplica } from "../../src/replica/replica.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    n: { type: "string", default: "50000" },
    rounds: { type: "string", default: "4" },
    base: { type: "string" },
  },
});
type ReplicaClass = typeof ThisReplica;
type Replica = ReturnType<ReplicaClass["open"]>;
const impls: Array<{ name: string; Replica: ReplicaClass; cpu: number[] }> = [
  { name: "this tree", Replica: ThisReplica, cpu: [] },
];
if (values.base) {
  const root = resolve(values.base);
  impls.push({ name: root, Replica: (await import(join(root, "src/replica/replica.ts"))).Replica, cpu: [] });
}
const N = Number(values.n);
const ROUNDS = Number(values.rounds);
const phase = positionals[0] ?? "apply";
const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL)";
const dir = mkdtempSync(join(tmpdir(), "tidewire-prof-"));
let no = 0;

function open(name: string, impl = impls[0]!): Replica {
  const r = impl.Replica.open(join(dir, `${name}-${no++}.db`), { nodeId: name, ingestIntervalMs: 0 });
  r.store.db.exec(SCHEMA);
  r.track("items");
  return r;
}

function insertRows(r: Replica): void {
  const ins = r.store.db.prepare("INSERT INTO items (id, name, qty, price) VALUES (?, ?, ?, ?)");
  const tx = r.store.writer((from: number, to: number) => {
    for (let i = from; i < to; i++) ins.run(i, `item ${i}`, i, i * 1.5);
  });
  for (let i = 0; i < N; i += 1000) tx(i, Math.min(N, i + 1000));
}

let changes: Change[] = [];
let updates: Change[] = [];
if (phase === "apply" || phase === "apply-update") {
  const src = open("source");
  insertRows(src);
  changes = JSON.parse(JSON.stringify(src.changesSince(0, { limit: N }).changes)) as Change[];
  const after = src.stats().lastSeq;
  const upd = src.store.db.prepare("UPDATE items SET qty = ? WHERE id = ?");
  const tx = src.store.writer((from: number, to: number) => {
    for (let i = from; i < to; i++) upd.run(i + 7, i);
  });
  for (let i = 0; i < N; i += 1000) tx(i, Math.min(N, i + 1000));
  updates = JSON.parse(JSON.stringify(src.changesSince(after, { limit: N }).changes)) as Change[];
  src.close();
}

const t0 = performance.now();
for (let round = 0; round < ROUNDS; round++) {
  // Each goes first every other round: the garbage one round leaves is collected in the next.
  for (const impl of round % 2 ? [...impls].reverse() : impls) {
    let cpu0 = process.cpuUsage();
    const r = open("target", impl);
    if (phase === "apply-update") {
      // Timed: the updates of one column only, applied to rows the target holds.
      for (let i = 0; i < N; i += 1000) r.apply(changes.slice(i, i + 1000));
      cpu0 = process.cpuUsage();
      for (let i = 0; i < N; i += 1000) r.apply(updates.slice(i, i + 1000));
    } else if (phase === "apply") {
      for (let i = 0; i < N; i += 1000) r.apply(changes.slice(i, i + 1000));
    } else {
      insertRows(r);
      r.ingest();
      if (phase === "ingest-update") {
        const upd = r.store.db.prepare("UPDATE items SET qty = ?, price = ? WHERE id = ?");
        const tx = r.store.writer((from: number, to: number) => {
          for (let i = from; i < to; i++) upd.run(i + 1, i * 2.5, i);
        });
        for (let i = 0; i < N; i += 1000) tx(i, Math.min(N, i + 1000));
        r.ingest();
      }
    }
    r.close();
    const cpu = process.cpuUsage(cpu0);
    impl.cpu.push((cpu.user + cpu.system) / N);
  }
}
const ms = performance.now() - t0;
const best = (xs: number[]) => Math.min(...xs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(
  `${phase}: ${ROUNDS} rounds × ${N}, wall ${((ms * 1000) / (ROUNDS * N * impls.length)).toFixed(2)} µs per change`,
);
for (const impl of impls)
  console.log(
    `  ${impl.name}: CPU best ${best(impl.cpu).toFixed(2)}, median ${median(impl.cpu).toFixed(2)} µs per change`,
  );
for (const impl of impls) console.log(`  ${impl.name}: ${impl.cpu.map((c) => c.toFixed(1)).join(" ")}`);
if (impls.length === 2) {
  const ratios = impls[0]!.cpu.map((c, i) => c / (impls[1]!.cpu[i] as number));
  console.log(
    `  this ÷ base CPU: best ${(best(impls[0]!.cpu) / best(impls[1]!.cpu)).toFixed(2)}, median of rounds ${median(ratios).toFixed(2)}`,
  );
}
rmSync(dir, { recursive: true, force: true });
