/**
 * bench/sync: sync over HTTP on loopback, between two replicas and through a relay hub,
 * each figure beside the bare SQLite apply floor measured in the same run.
 *
 *   npm run build && node --import tsx bench/sync/run.ts [--n 100000] [--rows 1000000] [--writes 5000]
 *
 * - sustained replicated changes/s between two replicas: A's own database
 *   is served by `tidewire serve`, an application writes N rows into it, and
 *   replica B, in a child process of its own, pulls on every live notice
 *   until it holds all N: end to end is N / the time from the first write
 *   until B holds them all;
 * - the same through a relay hub that has no copy of the table (three
 *   databases): A pushes N inserted rows to the hub while B keeps pulling:
 *   push is N / A's time, end to end N / the time until B holds them all;
 *   then, for reference, pull alone (a fresh replica pulls the N from the hub);
 * - for each sustained run, the CPU each process spent per change (from
 *   process.cpuUsage and /proc), against the wall time per change;
 * - initial sync: B pulls ROWS rows from a hub that already holds them;
 * - write-to-visible latency: A writes one row per millisecond (1,000/s) and
 *   syncs each at once; B is woken by the hub's WebSocket notice and pulls;
 *   latency is from A's write to the row being in B's table, p50 and p99;
 * - floor: a bare batched INSERT of the same rows (1,000 per transaction)
 *   into an untracked table, and a one-row INSERT transaction for latency.
 *
 * Each hub is a separate process (`node dist/cli/main.js serve --insecure`);
 * A (or the application) is in this process, B in a child process, so each
 * has a thread of its own as separate machines would. `TW_BENCH_PROF=dir`
 * writes a CPU profile of every process there.
 */
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Replica } from "../../src/replica/replica.js";
import { openStore, type Store } from "../../src/store.js";
import { SyncManager } from "../../src/sync/sync-manager.js";
import { HttpTransport } from "../../src/sync/transports/http.js";
import { profileArgs, startHub, stopHub } from "../common/hub.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    rows: { type: "string", default: "1000000" },
    writes: { type: "string", default: "5000" },
    /** Internal: run as replica B of the sustained run (JSON options). */
    puller: { type: "string" },
  },
});
const N = Number(args.n);
const ROWS = Number(args.rows);
const WRITES = Number(args.writes);
const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, t REAL)";
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-sync-"));

function replica(name: string): Replica {
  const r = Replica.open(join(dir, `${name}.db`), { nodeId: name });
  r.store.db.exec(SCHEMA);
  r.track("items");
  return r;
}

function fill(store: Store, n: number) {
  const insert = store.db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
  for (let i = 0; i < n; i += 1000) {
    store.write(() => {
      for (let k = i; k < Math.min(n, i + 1000); k++) insert.run(k + 1, `item ${k + 1}`, k, 0.5);
    });
  }
}

/** Bare SQLite: rows/s of batched INSERTs into an untracked table, and ms of a one-row transaction. */
function floor(n: number): { rowsPerSecond: number; oneRowMs: number } {
  const store = openStore(join(dir, `floor-${n}.db`));
  store.db.exec(SCHEMA);
  const t0 = performance.now();
  fill(store, n);
  const rowsPerSecond = n / ((performance.now() - t0) / 1000);
  const insert = store.db.prepare("INSERT INTO items VALUES (?, 'x', 1, 0.5)");
  const times: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const s = performance.now();
    store.write(() => insert.run(n + i + 1));
    times.push(performance.now() - s);
  }
  store.close();
  return { rowsPerSecond, oneRowMs: pct(times, 0.5) };
}

/**
 * Replica B in a child process of its own: `go` starts its pulling (a cycle on
 * every live notice) and resolves when it holds N rows, with the time and
 * the CPU it used; `finish` lets it stop cleanly (so a profile, when asked
 * for, is written).
 */
async function startPuller(url: string, name: string) {
  const puller = fork(
    fileURLToPath(import.meta.url),
    [`--puller=${JSON.stringify({ url, dir, n: N, name })}`],
    {
      execArgv: ["--import", "tsx", ...profileArgs()],
    },
  );
  const exited = new Promise<never>((_, reject) =>
    puller.once("exit", (code) => reject(new Error(`the puller exited with code ${code}`))),
  );
  await Promise.race([new Promise((r) => puller.once("message", r)), exited]);
  return {
    go(): Promise<{ at: number; cpuMs: number }> {
      const done = Promise.race([
        new Promise<{ at: number; cpuMs: number }>((resolve) =>
          puller.once("message", (m: { cpuMs: number }) =>
            resolve({ at: performance.now(), cpuMs: m.cpuMs }),
          ),
        ),
        exited,
      ]);
      puller.send("go");
      return done;
    },
    async finish(): Promise<void> {
      await Promise.race([
        new Promise((r) => puller.once("exit", r)),
        new Promise((r) => setTimeout(r, 5000)),
      ]);
      puller.kill();
    },
  };
}

/** CPU ms (user + system) a process has used so far, from /proc (Linux). */
function processCpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] as number;
}

const fmt = (x: number) => Math.round(x).toLocaleString("en");

async function main() {
  const out: string[] = [];
  const log = (line: string) => {
    out.push(line);
    console.log(line);
  };
  log(
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model}), load ${loadavg()[0]!.toFixed(2)}`,
  );

  // 1. Replicated changes/s, sustained.
  const fl = floor(N);
  log(
    `floor: bare batched INSERT ${fmt(fl.rowsPerSecond)} rows/s; one-row transaction ${fl.oneRowMs.toFixed(3)} ms`,
  );
  const us = (ms: number) => ((ms * 1000) / N).toFixed(1);
  // 1a. Two replicas: A's own database is served by `tidewire serve`, and an
  // application writes N rows into it (transactions of 1,000, as fast as it
  // can) while B, a process of its own, pulls on every live notice (the hub
  // watches its file for other programs' writes) until it holds them all.
  {
    replica("a2").close();
    const ha = await startHub(join(dir, "a2.db"));
    const b = await startPuller(ha.url, "b2x");
    const app = openStore(join(dir, "a2.db"));
    const insert = app.db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
    const hubCpu0 = processCpuMs(ha.child.pid);
    const appCpu0 = process.cpuUsage();
    const t = performance.now();
    const done = b.go();
    for (let i = 0; i < N; i += 1000) {
      app.write(() => {
        for (let k = i; k < Math.min(N, i + 1000); k++) insert.run(k + 1, `item ${k + 1}`, k, 0.5);
      });
      await new Promise((r) => setImmediate(r));
    }
    const writeMs = performance.now() - t;
    const appCpu = process.cpuUsage(appCpu0);
    const { at, cpuMs: bCpuMs } = await done;
    const hubCpuMs = processCpuMs(ha.child.pid) - hubCpu0;
    const e2e = N / ((at - t) / 1000);
    log(
      `two replicas (N=${fmt(N)}, an app writes A's file, served by A's hub, while B pulls): ` +
        `written at ${fmt(N / (writeMs / 1000))}/s; end to end ${fmt(e2e)} changes/s = ${(e2e / fl.rowsPerSecond).toFixed(3)} x floor`,
    );
    log(
      `  CPU per change: app ${us((appCpu.user + appCpu.system) / 1000)} µs, A's hub ${us(hubCpuMs)} µs, B ${us(bCpuMs)} µs; ` +
        `wall ${us(at - t)} µs per change on ${cpus().length} cores`,
    );
    app.close();
    await b.finish();
    await stopHub(ha);
  }

  // 1b. Through a relay hub that has no copy of the table: A pushes while B pulls.
  let h = await startHub(join(dir, "hub1.db"));
  {
    const a = replica("a");
    fill(a.store, N);
    const ma = new SyncManager(a, new HttpTransport(h.url), { direction: "push" });
    const b = await startPuller(h.url, "b");
    const hubCpu0 = processCpuMs(h.child.pid);
    const aCpu0 = process.cpuUsage();
    const t = performance.now();
    const done = b.go();
    const pushed = await ma.syncOnce();
    const pushMs = performance.now() - t;
    const { at, cpuMs: bCpuMs } = await done;
    const e2eMs = at - t;
    const aCpu = process.cpuUsage(aCpu0);
    const hubCpuMs = processCpuMs(h.child.pid) - hubCpu0;
    await b.finish();
    const push = pushed.pushed / (pushMs / 1000);
    const e2e = N / (e2eMs / 1000);
    log(
      `through a relay hub (N=${fmt(N)}, A pushes while B pulls): push ${fmt(push)}/s = ${(push / fl.rowsPerSecond).toFixed(3)} x floor; ` +
        `end to end ${fmt(e2e)} changes/s = ${(e2e / fl.rowsPerSecond).toFixed(3)} x floor`,
    );
    // Where the CPU went: µs of CPU per change in each process, against the wall time per change.
    log(
      `  CPU per change: A ${us((aCpu.user + aCpu.system) / 1000)} µs, hub ${us(hubCpuMs)} µs, B ${us(bCpuMs)} µs; ` +
        `wall ${us(e2eMs)} µs per change on ${cpus().length} cores`,
    );
    // Pull alone, for reference: a fresh replica drains the hub.
    const c = replica("b2");
    const mc = new SyncManager(c, new HttpTransport(h.url), { direction: "pull" });
    const t2 = performance.now();
    const pulled = await mc.initialSync();
    const pull = pulled.pulled / ((performance.now() - t2) / 1000);
    log(`pull alone ${fmt(pull)}/s = ${(pull / fl.rowsPerSecond).toFixed(3)} x floor`);
    await ma.stop();
    await mc.stop();
    a.close();
    c.close();
  }
  await stopHub(h);

  // 2. Initial sync of ROWS rows from a hub that holds them.
  {
    const hubDb = join(dir, "hub2.db");
    const t0 = performance.now();
    const seed = Replica.open(hubDb, { nodeId: "hub2" });
    seed.store.db.exec(SCHEMA);
    fill(seed.store, ROWS);
    seed.track("items");
    seed.close();
    log(`(seeding the hub with ${fmt(ROWS)} rows took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    h = await startHub(hubDb);
    const c = replica("c");
    const m = new SyncManager(c, new HttpTransport(h.url), { direction: "pull" });
    const t = performance.now();
    const r = await m.initialSync();
    const s = (performance.now() - t) / 1000;
    const fl2 = floor(ROWS);
    log(
      `initial sync of ${fmt(r.pulled)} rows: ${s.toFixed(1)} s, ${fmt(r.pulled / s)} rows/s; ` +
        `floor ${fmt(fl2.rowsPerSecond)} rows/s (${(ROWS / fl2.rowsPerSecond).toFixed(1)} s) = ${(r.pulled / s / fl2.rowsPerSecond).toFixed(3)} x floor`,
    );
    await m.stop();
    c.close();
    await stopHub(h);
  }

  // 3. Write-to-visible latency at 1,000 writes/s over the live notice.
  {
    h = await startHub(join(dir, "hub3.db"));
    const a = replica("la");
    const b = replica("lb");
    const ma = new SyncManager(a, new HttpTransport(h.url), { direction: "push", intervalMs: 60_000 });
    const mb = new SyncManager(b, new HttpTransport(h.url), { direction: "pull", intervalMs: 60_000 });
    await ma.syncOnce();
    mb.start();
    await new Promise((r) => setTimeout(r, 300));
    const latencies: number[] = [];
    const seen = b.store.db.prepare("SELECT id, t FROM items WHERE id > ? ORDER BY id");
    let last = 0;
    mb.on("synced", () => {
      const now = performance.timeOrigin + performance.now();
      for (const row of seen.all(last) as Array<{ id: number; t: number }>) {
        latencies.push(now - row.t);
        last = row.id;
      }
    });
    const insert = a.store.db.prepare("INSERT INTO items VALUES (?, 'live', 1, ?)");
    const start = performance.now();
    for (let i = 1; i <= WRITES; i++) {
      const due = start + i;
      while (performance.now() < due) await new Promise((r) => setImmediate(r));
      insert.run(i, performance.timeOrigin + performance.now());
      ma.syncOnce().catch(() => {});
    }
    const deadline = Date.now() + 10_000;
    while (latencies.length < WRITES && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const rate = WRITES / ((performance.now() - start) / 1000);
    log(
      `write-to-visible over WebSocket, ${fmt(WRITES)} writes at ${fmt(Math.min(rate, 1000))}/s target 1,000/s: ` +
        `p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms (${latencies.length} seen); ` +
        `floor (one-row transaction) ${fl.oneRowMs.toFixed(3)} ms = p50 ${(pct(latencies, 0.5) / fl.oneRowMs).toFixed(0)} x floor`,
    );
    await ma.stop();
    await mb.stop();
    a.close();
    b.close();
    await stopHub(h);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Replica B of the sustained run, a child process: pulls on every live notice until it holds n rows. */
async function puller(options: { url: string; dir: string; n: number; name: string }) {
  const b = Replica.open(join(options.dir, `${options.name}.db`), { nodeId: options.name });
  b.store.db.exec(SCHEMA);
  b.track("items");
  const mb = new SyncManager(b, new HttpTransport(options.url), { direction: "pull", intervalMs: 60_000 });
  const count = b.store.db.prepare("SELECT count(*) FROM items").pluck();
  await new Promise<void>((r) => {
    process.once("message", () => r());
    process.send!("ready");
  });
  // B pulls whenever the hub's WebSocket notice says A's push landed, as a --watch client does.
  const cpu0 = process.cpuUsage();
  // Counted from the cycles' results, not by polling count(*), a scan that would
  // cost B more CPU the more rows it holds.
  let pulled = 0;
  const enough = new Promise<void>((r) =>
    mb.on("synced", (result: { pulled: number }) => {
      pulled += result.pulled;
      if (pulled >= options.n) r();
    }),
  );
  mb.start();
  await enough;
  while ((count.get() as number) < options.n) await new Promise((r) => setTimeout(r, 5));
  const cpu = process.cpuUsage(cpu0);
  process.send!({ cpuMs: (cpu.user + cpu.system) / 1000 });
  await mb.stop();
  b.close();
  process.disconnect();
}

if (args.puller === undefined) await main();
else {
  rmSync(dir, { recursive: true, force: true });
  await puller(JSON.parse(args.puller) as { url: string; dir: string; n: number; name: string });
}
