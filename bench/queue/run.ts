/**
 * bench/queue: enqueue and processing throughput of Tidewire, its peers and
 * the bare-SQL floor, all measured in one invocation on this machine.
 *
 *   npm run bench:queue -- [--n 20000] [--concurrency 32] [--runs 3] [--only tidewire,bullmq]
 *
 * Each system runs in a child process of its own, one at a time, round after
 * round (round 1: every system, then round 2, ...), so slow drift in the
 * machine's load spreads over all of them. Every figure is the median of the
 * rounds, and every ratio is taken between figures of this invocation.
 */
import { fork } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { BenchConfig } from "./common.js";
import type { ChildRequest, ChildResult, Figures } from "./protocol.js";
import { SYSTEMS, type SystemEntry } from "./systems/index.js";

const TARGETS = {
  processed: 45_000,
  bulk: 250_000,
  single: 25_000,
  /** floor processed / Tidewire processed at most this. */
  floorFactor: 1.5,
};
const MIN_FAIR_N = 20_000;
const CHILD_TIMEOUT_MS = 15 * 60_000;

const USAGE = `usage: npm run bench:queue -- [options]
  --n N               jobs per phase (default 20000; the fair minimum is 20000)
  --concurrency C     handlers in flight, the same for every system (default 32)
  --runs R            rounds; each figure is the median (default 3)
  --only a,b          systems to run: ${SYSTEMS.map((s) => s.name).join(", ")}
  --chunk K           jobs per bulk call (default 1000)
  --warmup W          jobs in each child's untimed warm-up pass (default 2000)
  --redis URL         default redis://127.0.0.1:6379
  --postgres URL      default postgres://postgres@127.0.0.1:5432/test
  --profile DIR       write a V8 CPU profile of each child into DIR
  --base DIR          a built checkout of Tidewire (e.g. main's) for tidewire-base, measured beside
                      this build in the same rounds: --only tidewire,tidewire-base --base DIR`;

interface Options {
  n: number;
  concurrency: number;
  runs: number;
  chunk: number;
  warmup: number;
  systems: SystemEntry[];
  redisUrl: string;
  postgresUrl: string;
  profileDir: string | undefined;
  base: string | undefined;
}

class UsageError extends Error {}

function positive(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const v = Number(raw.replaceAll("_", ""));
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`--${name} must be a positive integer, got ${raw}`);
  return v;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      n: { type: "string" },
      concurrency: { type: "string" },
      runs: { type: "string" },
      only: { type: "string" },
      chunk: { type: "string" },
      warmup: { type: "string" },
      redis: { type: "string" },
      postgres: { type: "string" },
      profile: { type: "string" },
      base: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  let systems = [...SYSTEMS];
  if (values.only !== undefined) {
    const names = values.only
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = names.filter((n) => !SYSTEMS.some((s) => s.name === n));
    if (unknown.length > 0 || names.length === 0) {
      throw new UsageError(
        `--only: unknown system ${unknown.join(", ") || "(none)"}; known: ${SYSTEMS.map((s) => s.name).join(", ")}`,
      );
    }
    systems = SYSTEMS.filter((s) => names.includes(s.name));
  }
  const warmup = values.warmup === "0" ? 0 : positive("warmup", values.warmup, 2000);
  return {
    n: positive("n", values.n, MIN_FAIR_N),
    concurrency: positive("concurrency", values.concurrency, 32),
    runs: positive("runs", values.runs, 3),
    chunk: positive("chunk", values.chunk, 1000),
    warmup,
    systems,
    redisUrl: values.redis ?? "redis://127.0.0.1:6379",
    postgresUrl: values.postgres ?? "postgres://postgres@127.0.0.1:5432/test",
    profileDir: values.profile,
    base: values.base === undefined ? undefined : resolve(values.base),
  };
}

/** Runs one system once in a child process of its own. */
function runChild(
  entry: SystemEntry,
  request: ChildRequest,
  profileDir: string | undefined,
): Promise<ChildResult> {
  const execArgv = [...process.execArgv, "--expose-gc"];
  if (profileDir)
    execArgv.push(
      "--cpu-prof",
      "--cpu-prof-dir",
      profileDir,
      "--cpu-prof-name",
      `${entry.name}-${Date.now()}.cpuprofile`,
    );
  const child = fork(new URL("./child.ts", import.meta.url), [JSON.stringify(request)], {
    execArgv,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  return new Promise((resolve) => {
    let result: ChildResult | undefined;
    const timer = setTimeout(() => {
      result = { kind: "error", message: `timed out after ${CHILD_TIMEOUT_MS / 60_000} min` };
      child.kill("SIGKILL");
    }, CHILD_TIMEOUT_MS);
    child.on("message", (m) => {
      result ??= m as ChildResult;
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(
        result ?? {
          kind: "error",
          message: `the child exited (${signal ?? `code ${code}`}) without a result:\n${output.trim()}`,
        },
      );
    });
  });
}

/** Load average and, where the kernel reports it, the share of time runnable tasks waited for a CPU. */
function machineLoad(): string {
  const avg = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  try {
    const some = /some avg10=([\d.]+) avg60=([\d.]+)/.exec(readFileSync("/proc/pressure/cpu", "utf8"));
    if (some) return `load ${avg}, CPU pressure ${some[1]}% (10 s) ${some[2]}% (60 s)`;
  } catch {
    /* no PSI on this kernel */
  }
  return `load ${avg}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const fmtRate = (x: number | undefined) => (x === undefined ? "–" : Math.round(x).toLocaleString("en-US"));
const fmtRatio = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? "–" : `${x.toFixed(2)}x`;

interface Outcome {
  entry: SystemEntry;
  runs: Figures[];
  skipped?: string;
  error?: string;
}

const METRICS = ["single", "bulk", "processed"] as const;

function medians(o: Outcome | undefined): Figures | undefined {
  if (!o || o.runs.length === 0) return undefined;
  return {
    single: median(o.runs.map((r) => r.single)),
    bulk: median(o.runs.map((r) => r.bulk)),
    processed: median(o.runs.map((r) => r.processed)),
  };
}

function report(options: Options, outcomes: Outcome[], started: Date, load: string): string {
  const lines: string[] = [];
  const tw = medians(outcomes.find((o) => o.entry.name === "tidewire"));
  lines.push(
    `N = ${options.n.toLocaleString("en-US")} no-op jobs per phase, concurrency ${options.concurrency}, ` +
      `bulk chunks of ${options.chunk}, ${options.runs} round(s), median of the rounds; ` +
      `ratios are Tidewire / system, so > 1 means Tidewire is faster.`,
  );
  lines.push("");
  lines.push(
    "| system | single add/s | bulk add/s | processed/s | Tidewire/it single | Tidewire/it bulk | Tidewire/it processed |",
  );
  lines.push("|---|---:|---:|---:|---:|---:|---:|");
  for (const o of outcomes) {
    const m = medians(o);
    if (!m) {
      const why = o.skipped ? `skipped: ${o.skipped}` : `failed: ${(o.error ?? "").split("\n")[0]}`;
      lines.push(`| ${o.entry.label} | ${why} | | | | | |`);
      continue;
    }
    const ratios =
      o.entry.name === "tidewire" || !tw ? ["–", "–", "–"] : METRICS.map((k) => fmtRatio(tw[k] / m[k]));
    lines.push(
      `| ${o.entry.label} | ${fmtRate(m.single)} | ${fmtRate(m.bulk)} | ${fmtRate(m.processed)} | ${ratios.join(" | ")} |`,
    );
  }

  lines.push("");
  lines.push("Each round (single / bulk / processed, jobs/s):");
  lines.push("");
  for (const o of outcomes) {
    if (o.runs.length === 0) continue;
    const rounds = o.runs.map((r) => METRICS.map((k) => fmtRate(r[k])).join(" / ")).join("; ");
    lines.push(`- ${o.entry.name}: ${rounds}`);
  }
  for (const o of outcomes) {
    if (o.error) lines.push(`- ${o.entry.name} failed: ${o.error.split("\n").slice(0, 3).join(" ")}`);
  }

  lines.push("");
  lines.push("Targets (issue 2):");
  lines.push("");
  if (!tw) {
    lines.push("- Tidewire was not measured in this invocation.");
  } else {
    const mark = (ok: boolean) => (ok ? "met" : "NOT met");
    lines.push(
      `- processed >= ${fmtRate(TARGETS.processed)} jobs/s: ${fmtRate(tw.processed)} — ${mark(tw.processed >= TARGETS.processed)}`,
    );
    lines.push(
      `- bulk enqueue >= ${fmtRate(TARGETS.bulk)} jobs/s: ${fmtRate(tw.bulk)} — ${mark(tw.bulk >= TARGETS.bulk)}`,
    );
    lines.push(
      `- single add >= ${fmtRate(TARGETS.single)} jobs/s: ${fmtRate(tw.single)} — ${mark(tw.single >= TARGETS.single)}`,
    );
    const fl = medians(outcomes.find((o) => o.entry.name === "floor"));
    if (fl) {
      const factor = fl.processed / tw.processed;
      lines.push(
        `- processing within ${TARGETS.floorFactor}x of the floor: floor ${fmtRate(fl.processed)} / Tidewire ` +
          `${fmtRate(tw.processed)} = ${factor.toFixed(2)}x — ${mark(factor <= TARGETS.floorFactor)}`,
      );
    } else {
      lines.push("- processing within 1.5x of the floor: the floor was not measured");
    }
    const peers = outcomes
      .filter((o) => !o.entry.name.startsWith("tidewire") && o.entry.name !== "floor")
      .map((o) => ({ o, m: medians(o) }))
      .filter((x): x is { o: Outcome; m: Figures } => x.m !== undefined);
    if (peers.length > 0) {
      const best = peers.reduce((a, b) => (b.m.processed > a.m.processed ? b : a));
      lines.push(
        `- processed >= 2x the best peer measured here (${best.o.entry.name}, ${fmtRate(best.m.processed)}/s): ` +
          `${fmtRatio(tw.processed / best.m.processed)} — ${mark(tw.processed >= 2 * best.m.processed)}`,
      );
    }
  }
  lines.push("");
  const cpu = cpus();
  lines.push(
    `Machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? "?"}), ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.version}; at start ${load}; at end ${machineLoad()}; started ${started.toISOString()}.`,
  );
  return lines.join("\n");
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (options.n < MIN_FAIR_N) {
    console.error(
      `note: --n ${options.n} is below ${MIN_FAIR_N}; these figures are not the fair comparison.`,
    );
  }
  const started = new Date();
  const load = machineLoad();
  const tmpRoot = mkdtempSync(join(tmpdir(), "tidewire-bench-"));
  const cleanup = () => rmSync(tmpRoot, { recursive: true, force: true });
  process.once("SIGINT", () => {
    cleanup();
    process.exit(130);
  });
  if (options.profileDir) mkdirSync(options.profileDir, { recursive: true });

  const outcomes: Outcome[] = options.systems.map((entry) => ({ entry, runs: [] }));
  try {
    for (let round = 1; round <= options.runs; round++) {
      for (const o of outcomes) {
        if (o.skipped || o.error) continue;
        const tmpDir = join(tmpRoot, `${o.entry.name}-${round}`);
        mkdirSync(tmpDir);
        const config: BenchConfig = {
          n: options.n,
          concurrency: options.concurrency,
          chunk: options.chunk,
          tmpDir,
          redisUrl: options.redisUrl,
          postgresUrl: options.postgresUrl,
          base: options.base,
        };
        const t0 = performance.now();
        const result = await runChild(
          o.entry,
          { system: o.entry.name, config, warmup: options.warmup },
          options.profileDir,
        );
        rmSync(tmpDir, { recursive: true, force: true });
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        const tag = `[round ${round}/${options.runs}] ${o.entry.name}`;
        if (result.kind === "result") {
          o.runs.push(result.figures);
          const f = result.figures;
          console.error(
            `${tag}: single ${fmtRate(f.single)}/s, bulk ${fmtRate(f.bulk)}/s, processed ${fmtRate(f.processed)}/s (${secs} s; ${machineLoad()})`,
          );
        } else if (result.kind === "skipped") {
          o.skipped = result.reason;
          console.error(`${tag}: skipped — ${result.reason}`);
        } else {
          o.error = result.message;
          console.error(`${tag}: FAILED — ${result.message}`);
        }
      }
    }
  } finally {
    cleanup();
  }
  console.log(report(options, outcomes, started, load));
  return outcomes.some((o) => o.error) ? 1 : 0;
}

process.exitCode = await main();
