/**
 * bench/mesh: replicated changes/s among three replicas through Redis
 * Streams, beside the HTTP hub path measured in the same run.
 *
 *   npm run bench:mesh -- [--n 30000] [--runs 3] [--redis redis://127.0.0.1:6379/0]
 *
 * Each of three replicas holds N/3 rows of its own (written before the
 * clock starts); the clock runs until all three hold all N rows, so 2N
 * changes were applied (every row reaches two others). Figures are changes
 * applied per second.
 *
 * - mesh: three MeshMembers (heartbeat 100 ms, so discovery adds
 *   at most that), started one after the other; the clock includes start;
 * - hub: `tidewire serve --insecure` as a separate process (relay only), and
 *   three SyncManagers over HttpTransport running cycles (push, then pull)
 *   side by side until every replica holds N.
 *
 * The three replicas live in this process in both paths. Rounds alternate
 * the two paths; each figure is the median of the rounds, and the ratio is
 * the median of each round's mesh / hub (a busy machine's load drifts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { MeshMember } from "../../src/mesh/mesh-member.js";
import { Replica } from "../../src/replica/replica.js";
import { SyncManager } from "../../src/sync/sync-manager.js";
import { HttpTransport } from "../../src/sync/transports/http.js";
import { startHub, stopHub } from "../common/hub.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "30000" },
    runs: { type: "string", default: "3" },
    redis: { type: "string", default: process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0" },
  },
});
const N = Math.floor(Number(args.n) / 3) * 3;
const RUNS = Number(args.runs);
const SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, t REAL)";
const dir = mkdtempSync(join(tmpdir(), "tidewire-bench-mesh-"));
const fmt = (x: number) => Math.round(x).toLocaleString("en");

/** Three replicas, the k-th holding rows k*N/3+1 … (k+1)*N/3. */
function trio(tag: string): Replica[] {
  return ["a", "b", "c"].map((name, k) => {
    const r = Replica.open(join(dir, `${tag}-${name}.db`), { nodeId: `${tag}-${name}` });
    r.store.db.exec(SCHEMA);
    r.track("items");
    const insert = r.store.db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
    const third = N / 3;
    for (let i = 0; i < third; i += 1000) {
      r.store.write(() => {
        for (let j = i; j < Math.min(third, i + 1000); j++)
          insert.run(k * third + j + 1, `item ${j}`, j, 0.5);
      });
    }
    return r;
  });
}

function count(r: Replica): number {
  return (r.store.db.prepare("SELECT count(*) AS n FROM items").get() as { n: number }).n;
}

async function untilAllHold(rs: Replica[]): Promise<void> {
  while (!rs.every((r) => count(r) === N)) await new Promise((r) => setTimeout(r, 5));
}

async function mesh(round: number): Promise<number> {
  const rs = trio(`mesh${round}`);
  const prefix = `twbench-${process.pid}-${round}`;
  const t0 = performance.now();
  const ts = [];
  for (const r of rs) {
    const t = new MeshMember(r, { redis: args.redis, prefix, heartbeatMs: 100 });
    await t.start();
    ts.push(t);
  }
  await untilAllHold(rs);
  const s = (performance.now() - t0) / 1000;
  for (const t of ts) await t.stop();
  for (const r of rs) r.close();
  const redis = new Redis(args.redis);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  return (2 * N) / s;
}

async function hub(round: number): Promise<number> {
  const h = await startHub(join(dir, `hub${round}.db`));
  const rs = trio(`hub${round}`);
  const ms = rs.map((r) => new SyncManager(r, new HttpTransport(h.url)));
  const t0 = performance.now();
  while (!rs.every((r) => count(r) === N)) await Promise.all(ms.map((m) => m.syncOnce()));
  const s = (performance.now() - t0) / 1000;
  for (const m of ms) await m.stop();
  for (const r of rs) r.close();
  await stopHub(h);
  return (2 * N) / s;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main() {
  console.log(
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model}), load ${loadavg()[0]!.toFixed(2)}; N=${fmt(N)}, ${RUNS} rounds`,
  );
  const m: number[] = [];
  const h: number[] = [];
  for (let round = 0; round < RUNS; round++) {
    // Alternate which path goes first, so a drift in the machine's load does not favour one.
    if (round % 2 === 0) {
      m.push(await mesh(round));
      h.push(await hub(round));
    } else {
      h.push(await hub(round));
      m.push(await mesh(round));
    }
    console.log(
      `round ${round + 1}: mesh ${fmt(m[round]!)} changes/s, hub ${fmt(h[round]!)} changes/s = ${(m[round]! / h[round]!).toFixed(2)} x hub`,
    );
  }
  // The ratio is taken per round (both paths ran minutes apart at most), then its median.
  const ratio = median(m.map((x, i) => x / h[i]!));
  console.log(
    `three replicas, N=${fmt(N)} rows (${fmt(2 * N)} changes applied): Redis Streams mesh ${fmt(median(m))} changes/s, ` +
      `HTTP hub ${fmt(median(h))} changes/s (medians of ${RUNS}); mesh / hub per round, median: ${ratio.toFixed(2)}`,
  );
  rmSync(dir, { recursive: true, force: true });
}

await main();
