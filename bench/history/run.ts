/**
 * bench/history: what the daemon's history costs on the job hot path.
 *
 *   node --import tsx bench/history/run.ts [--n 20000] [--concurrency 32] [--runs 5]
 *
 * - worker runs: N no-op jobs added in bulk to a fresh durable file, then a
 *   Worker (the given concurrency) runs them until the last outcome is
 *   written, in three modes (see Mode), rotated within each round; each
 *   figure is the median of its runs, wall clock and this process's CPU
 *   time (on a shared, loaded machine the CPU time is the steadier);
 * - the recorder's own cost per job: "completed" events emitted to
 *   startHistory's listener (one count and two durations into Rollups),
 *   less the same events to a no-op listener, in ns of CPU per job; and one
 *   flush of those jobs over 20 job types, in ms.
 */
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startHistory } from "../../src/history/recorder.js";
import { createLogger } from "../../src/log.js";
import { Queue } from "../../src/queue/queue.js";
import type { Job } from "../../src/queue/types.js";
import { Worker } from "../../src/queue/worker.js";
import { openStore } from "../../src/store.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "32" },
    runs: { type: "string", default: "5" },
  },
});
const N = Number(values.n);
const CONCURRENCY = Number(values.concurrency);
const RUNS = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-history-"));
const logger = createLogger({ level: "silent" });

/** CPU time this process spent, µs: on a shared, loaded machine it tells more than the wall clock. */
function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * bare: no listener on the worker (it then skips emitting); logged: no-op listeners on "completed"
 * and "failed", as the daemon's log has; history: those and the recorder, as the daemon now runs.
 */
type Mode = "bare" | "logged" | "history";
const MODES: Mode[] = ["bare", "logged", "history"];

async function workerRun(mode: Mode, i: number): Promise<{ ms: number; cpu: number }> {
  const store = openStore(join(dir, `run-${i}-${mode}.db`));
  const queue = new Queue(store);
  for (let k = 0; k < N; k += 1000)
    queue.addMany(Array.from({ length: Math.min(1000, N - k) }, () => ({ type: "noop", payload: {} })));
  const worker = new Worker(queue, { noop: () => {} }, { concurrency: CONCURRENCY, pollIntervalMs: 5 });
  if (mode !== "bare") worker.on("completed", () => {}).on("failed", () => {});
  const recorder = mode === "history" ? startHistory({ store, worker, logger }) : undefined;
  let done = 0;
  const finished = new Promise<void>((resolve) => {
    // Counted by polling the file, not by a listener, so "off" really has none.
    const check = setInterval(() => {
      done = queue.count({ state: "completed" });
      if (done === N) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  const started = performance.now();
  const cpu0 = cpuMicros();
  worker.start();
  await finished;
  await worker.stop();
  recorder?.stop();
  const ms = performance.now() - started;
  const cpu = cpuMicros() - cpu0;
  store.close();
  return { ms, cpu };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const runs = new Map<Mode, Array<{ ms: number; cpu: number }>>(MODES.map((m) => [m, []]));
await workerRun("history", -1); // warm-up
for (let r = 0; r < RUNS; r++) {
  // Each round starts with another mode, so drift on a shared machine falls on all three.
  for (let k = 0; k < MODES.length; k++) {
    const mode = MODES[(r + k) % MODES.length]!;
    runs.get(mode)!.push(await workerRun(mode, r));
  }
}

// The recorder's own work per job, alone: "completed" events as the Worker emits them, through
// startHistory's listener, against the same events to a listener that does nothing.
const store = openStore(join(dir, "micro.db"));
const M = 1_000_000;
const jobs = Array.from(
  { length: 20 },
  (_, i) => ({ type: `type-${i}`, runAt: 1, startedAt: 5 }) as unknown as Job,
);
const emitLoop = (emitter: EventEmitter) => {
  const t = cpuMicros();
  const base = Date.now();
  for (let k = 0; k < M; k++) {
    const job = jobs[k % 20]!;
    job.startedAt = base + (k >> 10);
    emitter.emit("completed", job, (k % 97) + 0.5);
  }
  return ((cpuMicros() - t) * 1e3) / M;
};
const idle = new EventEmitter().on("completed", () => {});
const fake = new EventEmitter();
const recorder = startHistory({ store, worker: fake as unknown as Worker, logger });
emitLoop(idle);
emitLoop(fake);
const idleNs = emitLoop(idle);
const recordedNs = emitLoop(fake);
const nsPerJob = recordedNs - idleNs;
const f0 = performance.now();
recorder.rollups.flush();
const flushMs = performance.now() - f0;
recorder.stop();
store.close();
rmSync(dir, { recursive: true, force: true });

const rate = (ms: number) => Math.round(N / (ms / 1000));
const cpuPerJob = (cpu: number) => cpu / N;
const cpuMedian = (mode: Mode) => median(runs.get(mode)!.map((r) => r.cpu));
console.log(
  `N=${N} concurrency=${CONCURRENCY} runs=${RUNS} (medians; the clock stops when the last outcome is written)`,
);
for (const mode of MODES) {
  const rs = runs.get(mode)!;
  console.log(
    `worker, ${mode.padEnd(7)}: ${rate(median(rs.map((r) => r.ms)))} jobs/s wall, ${cpuPerJob(cpuMedian(mode)).toFixed(1)} µs CPU per job  (µs CPU per job: ${rs.map((r) => cpuPerJob(r.cpu).toFixed(1)).join(", ")})`,
  );
}
console.log(
  `CPU per job: logged / bare ${(cpuMedian("logged") / cpuMedian("bare")).toFixed(3)}, history / logged ${(cpuMedian("history") / cpuMedian("logged")).toFixed(3)} (the daemon's cost)`,
);
console.log(
  `recorder alone: ${nsPerJob.toFixed(0)} ns CPU per "completed" event beyond a no-op listener's (one count, two durations); one flush of ${M} jobs over 20 types: ${flushMs.toFixed(1)} ms`,
);
