/**
 * bench/queue/overhead: the queue's own CPU cost per add, beside the SQL it
 * runs. In one store, blocks of `Queue.add` alternate with blocks of the bare
 * prepared INSERT in autocommit, and blocks of `addMany` (chunks of 1,000) with
 * the bare 100-row INSERT in one IMMEDIATE transaction per 1,000; the median of
 * the per-block differences is what validation, the Job, metrics and the
 * wrapping cost. A difference within one process and one file is steady on a
 * loaded machine, where jobs/s mostly measures the neighbours.
 *
 *   npm run build && node --import tsx bench/queue/overhead.ts [--build DIR] [--rounds 40]
 *
 * `--build`: a checkout built with `npm run build` (default this one), to
 * compare commits. The first quarter of the rounds is a warm-up and not counted.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

type Tidewire = typeof import("../../src/index.js");

const { values } = parseArgs({
  options: { build: { type: "string", default: "." }, rounds: { type: "string", default: "40" } },
});
const ROUNDS = Number(values.rounds);
const BLOCK = 2000;
const CHUNK = 1000;
const CHUNKS = 5;
const ROWS = 100;

const tw = (await import(pathToFileURL(join(resolve(values.build!), "dist/index.js")).href)) as Tidewire;
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-queue-overhead-"));
const store = tw.openStore(join(dir, "q.db"));
const queue = new tw.Queue(store, "bench");
const COLUMNS =
  "INSERT INTO tw_jobs (queue, type, payload, state, priority, run_at, max_attempts, backoff, key, timeout_ms, created_at, trace)";
const one = store.db.prepare(`${COLUMNS} VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)`);
const many = store.db.prepare(
  `${COLUMNS} VALUES ${Array.from({ length: ROWS }, () => "(?, ?, ?, 'pending', ?, ?, ?, ?, NULL, ?, ?, ?)").join(", ")}`,
);
const bareMany = store.db.transaction((payloads: Array<{ i: number }>) => {
  const now = Date.now();
  for (let k = 0; k < payloads.length; k += ROWS) {
    const args: unknown[] = [];
    for (let j = k; j < k + ROWS; j++)
      args.push("bench", "noop", JSON.stringify(payloads[j]), 0, now, 3, null, null, now, null);
    many.run(args);
  }
});

/** CPU µs per job of `fn`, which handles `jobs` jobs. */
function cpu(jobs: number, fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / jobs;
}

let n = 0;
const payloads = (count: number) => Array.from({ length: count }, () => ({ i: n++ }));
const single = { queue: [] as number[], bare: [] as number[] };
const bulk = { queue: [] as number[], bare: [] as number[] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    const counted = r >= ROUNDS / 4;
    const a = payloads(BLOCK);
    const b = payloads(BLOCK);
    const q = cpu(BLOCK, () => {
      for (const p of a) queue.add("noop", p);
    });
    const s = cpu(BLOCK, () => {
      for (const p of b) {
        const now = Date.now();
        one.run("bench", "noop", JSON.stringify(p), 0, now, 3, null, null, null, now, null);
      }
    });
    const ca = Array.from({ length: CHUNKS }, () =>
      payloads(CHUNK).map((payload) => ({ type: "noop", payload })),
    );
    const cb = Array.from({ length: CHUNKS }, () => payloads(CHUNK));
    const qm = cpu(CHUNK * CHUNKS, () => {
      for (const c of ca) queue.addMany(c);
    });
    const sm = cpu(CHUNK * CHUNKS, () => {
      for (const c of cb) bareMany.immediate(c);
    });
    if (counted) {
      single.queue.push(q);
      single.bare.push(s);
      bulk.queue.push(qm);
      bulk.bare.push(sm);
    }
    // Keep the file's size steady across rounds.
    if (r % 10 === 9) store.db.exec("DELETE FROM tw_jobs");
  }
} finally {
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const row = (name: string, p: { queue: number[]; bare: number[] }) =>
  `| ${name} | ${median(p.queue).toFixed(2)} | ${median(p.bare).toFixed(2)} | ${median(p.queue.map((x, i) => x - p.bare[i]!)).toFixed(2)} |`;
console.log(`build ${resolve(values.build!)}, ${ROUNDS} rounds (the first quarter not counted), medians\n`);
console.log("| path | queue CPU µs/job | bare SQL CPU µs/job | queue's own µs/job (paired) |");
console.log("|---|---:|---:|---:|");
console.log(row(`add (blocks of ${BLOCK})`, single));
console.log(row(`addMany (${CHUNKS} x ${CHUNK})`, bulk));
