/**
 * bench/queue/paired: what tracing costs the queue, paired in one process —
 * this build beside another build (`--base <dir>`, a checkout of an earlier
 * commit built with `npm run build`, node_modules linked), round after round,
 * in alternating order, so the machine's drift falls on every arm alike.
 *
 *   npm run build && node --import tsx bench/queue/paired.ts --base /path/to/base [--n 20000] [--runs 7]
 *
 * Arms: `base`; `this` (tracing never enabled: the default, what a user without
 * an SDK gets); `this+api` (enableTracing() with no SDK registered: the api's
 * no-op tracer). Each arm: N single adds, N adds in addMany chunks of 1,000, and a
 * Worker (concurrency 32, no-op handler) on those N until the last completion
 * is written. Per phase it records jobs/s of wall time and µs of this process's
 * CPU time (user + system) per job; CPU time is the steadier figure on a
 * loaded machine, where wall time mostly measures the other processes. Prints
 * the median of the rounds and, for each arm against base, the median of the
 * per-round ratios with their range: jobs/s arm / base (> 1: faster) and CPU
 * µs/job arm / base (> 1: costlier).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

type Tidewire = typeof import("../../src/index.js");

const { values } = parseArgs({
  options: {
    base: { type: "string" },
    n: { type: "string", default: "20000" },
    runs: { type: "string", default: "7" },
  },
});
if (!values.base) throw new Error("--base <dir> (another checkout of tidewire, built) is required");
const N = Number(values.n);
const RUNS = Number(values.runs);
const CHUNK = 1000;
const CONCURRENCY = 32;

const load = (dir: string) =>
  import(pathToFileURL(join(resolve(dir), "dist/index.js")).href) as Promise<Tidewire>;
const here = await load(".");
const base = await load(values.base);
// A base with tracing too is an A/A run: its ratios show what the method itself reads as a difference.
if (base.enableTracing !== undefined) console.error("note: --base has tracing too: an A/A run");

const PHASES = ["single", "bulk", "processed"] as const;
type Phase = (typeof PHASES)[number];
interface Figure {
  rate: number;
  cpuUs: number;
}
type Round = Record<Phase, Figure>;
const ARMS = ["base", "this", "this+api"] as const;
type Arm = (typeof ARMS)[number];

const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-queue-paired-"));
let fileNo = 0;

function clock(): () => Figure {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { rate: N / ((performance.now() - wall) / 1000), cpuUs: (used.user + used.system) / N };
  };
}

async function measure(tw: Tidewire): Promise<Round> {
  const path = join(dir, `q-${fileNo++}.db`);
  const store = tw.openStore(path);
  const queue = new tw.Queue(store, "bench");
  (globalThis as { gc?: () => void }).gc?.();
  let stop = clock();
  for (let i = 0; i < N; i++) queue.add("noop", { i });
  const single = stop();
  store.db.exec("DELETE FROM tw_jobs");

  const chunks = Array.from({ length: N / CHUNK }, (_, c) =>
    Array.from({ length: CHUNK }, (_, k) => ({ type: "noop", payload: { i: c * CHUNK + k } })),
  );
  (globalThis as { gc?: () => void }).gc?.();
  stop = clock();
  for (const c of chunks) queue.addMany(c);
  const bulk = stop();

  (globalThis as { gc?: () => void }).gc?.();
  stop = clock();
  const worker = new tw.Worker(queue, { noop: () => {} }, { concurrency: CONCURRENCY });
  let done = 0;
  await new Promise<void>((res, rej) => {
    worker.on("completed", () => {
      if (++done === N) res();
    });
    worker.on("error", rej);
    worker.start();
  });
  const processed = stop();
  await worker.stop();
  store.close();
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  return { single, bulk, processed };
}

async function arm(name: Arm): Promise<Round> {
  if (name === "base") return measure(base);
  if (name === "this+api") {
    if (!(await here.enableTracing())) throw new Error("@opentelemetry/api is not installed");
  } else here.disableTracing();
  try {
    return await measure(here);
  } finally {
    here.disableTracing();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const rounds: Record<Arm, Round[]> = { base: [], this: [], "this+api": [] };
try {
  // Untimed warm-up of every arm, then rounds in a rotating order.
  for (const a of ARMS) await arm(a);
  for (let r = 0; r < RUNS; r++) {
    const order = ARMS.map((_, i) => ARMS[(i + r) % ARMS.length]!);
    for (const a of order) rounds[a].push(await arm(a));
    console.error(
      `round ${r + 1}/${RUNS}: ` +
        ARMS.map((a) => `${a} ${PHASES.map((p) => Math.round(rounds[a][r]![p].rate)).join("/")}`).join(", "),
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
console.log(
  `N = ${fmt(N)} no-op jobs per phase, ${RUNS} rounds, one process, arms alternating; median of the rounds.\n`,
);
console.log(
  "| arm | phase | jobs/s (wall) | CPU µs/job | wall ratio to base [range] | CPU ratio to base [range] |",
);
console.log("|---|---|---:|---:|---:|---:|");
for (const a of ARMS) {
  for (const p of PHASES) {
    const rate = median(rounds[a].map((r) => r[p].rate));
    const cpu = median(rounds[a].map((r) => r[p].cpuUs));
    let wall = "–";
    let cpuRatio = "–";
    if (a !== "base") {
      // Per-round ratios: both figures of a round were taken minutes apart at most.
      const w = rounds[a].map((r, i) => r[p].rate / rounds.base[i]![p].rate);
      const c = rounds[a].map((r, i) => r[p].cpuUs / rounds.base[i]![p].cpuUs);
      const range = (xs: number[]) =>
        `${median(xs).toFixed(3)} [${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}]`;
      wall = range(w);
      cpuRatio = range(c);
    }
    console.log(`| ${a} | ${p} | ${fmt(rate)} | ${cpu.toFixed(1)} | ${wall} | ${cpuRatio} |`);
  }
}
