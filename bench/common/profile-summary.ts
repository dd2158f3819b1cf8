/**
 * Summarises V8 CPU profiles (`node --cpu-prof`, or `TW_BENCH_PROF=dir` for the
 * benchmarks): self time per group of the change path (SQLite, JSON, HTTP,
 * validation, fingerprints, GC, a tidewire module…) and the top functions, so
 * "where each microsecond goes" is read the same way in every run.
 *
 *   node --import tsx bench/common/profile-summary.ts [--per N] [--top 25] file.cpuprofile…
 *
 * `--per N`: also print each group's µs per change, N changes having gone
 * through the profiled process.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { per: { type: "string" }, top: { type: "string", default: "25" } },
});
const per = values.per ? Number(values.per) : 0;

/** better-sqlite3's native calls: the statement and transaction work inside SQLite. */
const SQLITE_NATIVE = new Set(["run", "all", "get", "iterate", "exec", "prepare", "pluck", "raw", "bind"]);

/** The group a frame's self time is counted in: why it is spent, not where it is written. */
function group(f: Node["callFrame"]): string {
  const { functionName: fn, url } = f;
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(idle)" || fn === "(program)") return fn;
  if (url.includes("better-sqlite3")) return "SQLite (better-sqlite3 wrappers, transactions)";
  if (url === "" && SQLITE_NATIVE.has(fn)) return "SQLite (statements)";
  if (
    fn === "parse" ||
    fn === "stringify" ||
    url.includes("fast-json-stringify") ||
    url.includes("secure-json")
  )
    return "JSON";
  if (url.includes("/zod/")) return "zod";
  if (url.includes("fastify") || url.includes("find-my-way") || url.includes("avvio") || url.includes("pino"))
    return "fastify, pino";
  if (url.includes("undici") || url.startsWith("node:internal/deps/undici")) return "HTTP client (undici)";
  if (url.startsWith("node:") || url === "") return `node: ${fn || "(anonymous)"}`;
  const m = /\/(?:src|dist)\/(.+?)\.[jt]s$/.exec(url);
  if (m) return `tidewire ${m[1]}`;
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return `dep ${dep[1]}`;
  return basename(url);
}

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i] as number, (self.get(p.samples[i] as number) ?? 0) + (p.timeDeltas[i] ?? 0));
  const groups = new Map<string, number>();
  const fns = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const f = (byId.get(id) as Node).callFrame;
    const g = group(f);
    if (g === "(idle)") continue;
    busy += us;
    groups.set(g, (groups.get(g) ?? 0) + us);
    const name = `${f.functionName || "(anonymous)"} ${f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : ""}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
  }
  const line = (name: string, us: number) =>
    `| ${name} | ${(us / 1000).toFixed(0)} | ${((100 * us) / busy).toFixed(1)}% |${per ? ` ${(us / per).toFixed(2)} |` : ""}`;
  console.log(
    `\n### ${basename(file)}: ${(busy / 1000).toFixed(0)} ms busy${per ? `, ${(busy / per).toFixed(2)} µs per change` : ""}\n`,
  );
  console.log(`| group | ms | share |${per ? " µs/change |" : ""}\n|---|---:|---:|${per ? "---:|" : ""}`);
  for (const [g, us] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 18)) console.log(line(g, us));
  console.log(
    `\n| function (self time) | ms | share |${per ? " µs/change |" : ""}\n|---|---:|---:|${per ? "---:|" : ""}`,
  );
  for (const [g, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
    console.log(line(g, us));
}
