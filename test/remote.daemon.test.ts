/**
 * Remote targets run by a real `tidewire serve` process (the built CLI, real
 * SQLite files, real PostgreSQL): a target added with `tidewire remote add`
 * while the daemon runs is picked up without a restart and kept converged
 * with the local file while another connection writes it and PostgreSQL is
 * written directly (its edits are pulled back); the RemoteSync
 * jobs show in `tidewire jobs`, GET /v1/status (`remotes`) and /metrics
 * (labelled by backend and target id); `remote remove` stops them and drops
 * the labels. A SQLite file target survives a SIGKILL of the daemon in the
 * middle of a full push: after a restart the file matches the source and
 * every payload is in the target's history once. SIGTERM in the middle of a
 * cycle lets it finish, then exits 0.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { REMOTE_QUEUE, REMOTE_SYNC, SYNC_REMOTES } from "../src/daemon/remote-jobs.js";
import { Queue } from "../src/queue/queue.js";
import { openStore } from "../src/store.js";
import { runNode, sleep, useTempDirs, waitFor } from "./helpers.js";
import {
  DATABASE_URL,
  type Dump,
  dumpPostgres,
  dumpSqliteFile,
  type Op,
  runOps,
  sourceReplica,
  usePostgres,
} from "./remote-helpers.js";
import { ServeProcess } from "./serve-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN = "remote-daemon-token-0123456789abcdef";
const tempDir = useTempDirs("tidewire-remote-daemon-");
const pg = usePostgres("tw_rdaemon_");
const LONG = { timeoutMs: 60_000, intervalMs: 50 };

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/daemon/remote-jobs.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

function serve(db: string): ServeProcess {
  const child = spawn(
    process.execPath,
    [CLI, "serve", "--db", db, "--port", "0", "--token", TOKEN, "--remote-scan", "200ms"],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  children.push(child);
  return new ServeProcess(child);
}

async function cli(...args: string[]) {
  const r = await runNode([CLI, ...args]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout;
}

/** A source file with items and tags tracked, as `tidewire init` leaves it; the daemon opens it itself. */
function sourceDb(dir: string): string {
  const r = sourceReplica(dir);
  const path = r.store.path;
  r.close();
  return path;
}

/** Writes through a connection of its own, as any application would while the daemon runs. */
function write(path: string, ops: Op[]): void {
  const db = new Database(path);
  try {
    db.pragma("busy_timeout = 10000");
    runOps(db, ops);
  } finally {
    db.close();
  }
}

function round(n: number): Op[] {
  const base = n * 10;
  return [
    { kind: "put", id: base + 1, name: `r${n}`, qty: BigInt(n), price: n / 4, data: Buffer.from([n]) },
    { kind: "put", id: base + 2, name: "two", qty: null, price: null, data: null },
    { kind: "set", id: base - 9, name: `renamed in ${n}` },
    { kind: "del", id: base - 8 },
    { kind: "tag", item: base + 1, tag: "it's", note: `n${n}` },
  ];
}

/** Polls an async check until it holds. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const same = (a: Dump, b: Dump) => JSON.stringify(a) === JSON.stringify(b);

/** The remote queue's jobs of one type, read through a connection of the test's own. */
function jobs(db: string, type: string) {
  const store = openStore(db, { readonly: true });
  try {
    return new Queue(store, REMOTE_QUEUE).list({ type, limit: 10_000 });
  } finally {
    store.close();
  }
}

/** The target's history, or nothing before the first payload made it. */
function historyNames(path: string): string[] {
  if (!existsSync(path)) return [];
  const db = new Database(path, { readonly: true });
  try {
    if (!db.prepare("SELECT 1 FROM sqlite_schema WHERE name = '_tidewire_sync_history'").get()) return [];
    return db.prepare("SELECT sync_name FROM _tidewire_sync_history").pluck().all() as string[];
  } finally {
    db.close();
  }
}

describe("tidewire serve with registered remote targets", () => {
  it("keeps PostgreSQL converged with the file while it is written; remove stops the jobs", async (ctx) => {
    if (!pg.reachable()) {
      ctx.skip();
      return;
    }
    const dir = tempDir();
    const db = sourceDb(dir);
    write(db, round(0));
    const daemon = serve(db);
    const base = await daemon.url();
    const schema = pg.newSchema();
    const url = new URL(DATABASE_URL);
    url.searchParams.set("schema", schema);
    // Added while the daemon runs: the next scan picks it up.
    await cli("remote", "add", db, url.toString(), "--id", "pg", "--interval", "300ms");
    await daemon.line(/remote target pg .* registered/);
    // Until the first push has made the tables there is nothing to compare.
    const converged = async () =>
      same(await dumpPostgres(pg.admin(), schema).catch(() => ({})), dumpSqliteFile(db));
    await eventually(converged, "the first (full) push to PostgreSQL");

    // Written on both sides while cycles run: each round lands between (or during) cycles.
    // On PostgreSQL, as psql or another app would: another column of the row the file
    // renames in round 1 (both edits survive), and rows of its own.
    const onPostgres = async (n: number) => {
      const items = `"${schema}"."items"`;
      await pg.admin().query(`UPDATE ${items} SET qty = $1 WHERE id = $2`, [100 + n, 1]);
      await pg.admin().query(`INSERT INTO ${items} (id, name) VALUES ($1, $2)`, [500 + n, `from pg ${n}`]);
    };
    for (let n = 1; n <= 6; n++) {
      write(db, round(n));
      await onPostgres(n);
      const cycles = daemon.lines.filter((l) => /pushed \d+ rows to remote pg/.test(l.msg)).length;
      if (n % 2 === 0)
        await waitFor(
          () => daemon.lines.filter((l) => /pushed \d+ rows to remote pg/.test(l.msg)).length > cycles,
          "a push cycle",
          LONG,
        );
    }
    await eventually(converged, "PostgreSQL and the file to converge, both written");
    const local = new Database(db, { readonly: true });
    try {
      expect(local.prepare("SELECT count(*) FROM items WHERE id > 500").pluck().get()).toBe(6);
      expect(local.prepare("SELECT name, qty FROM items WHERE id = 1").get()).toEqual({
        name: "renamed in 1",
        qty: 106,
      });
    } finally {
      local.close();
    }

    const listed = JSON.parse(await cli("jobs", "list", db, "--queue", REMOTE_QUEUE, "--json")) as {
      jobs: Array<{ type: string; state: string; payload: { remote: string } }>;
    };
    expect(
      listed.jobs.some((j) => j.type === REMOTE_SYNC && j.state === "completed" && j.payload.remote === "pg"),
    ).toBe(true);
    const status = await fetch(`${base}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const remotes = ((await status.json()) as { remotes: Array<Record<string, unknown>> }).remotes;
    expect(remotes).toHaveLength(1);
    expect(remotes[0]).toMatchObject({
      id: "pg",
      backend: "postgres",
      direction: "both",
      intervalMs: 300,
      tables: null,
      paused: false,
      pending: 0,
      lastError: null,
    });
    expect(remotes[0]!.lastSuccessAt).toEqual(expect.any(Number));
    expect(remotes[0]!.lastPushAt).toEqual(expect.any(Number));
    const metrics = async () => (await fetch(`${base}/metrics`)).text();
    expect(await metrics()).toMatch(
      /tidewire_remote_target_cycles_total\{backend="postgres",target="pg",result="ok"\} [1-9]/,
    );
    expect(await metrics()).toMatch(
      /tidewire_remote_target_rows_total\{backend="postgres",target="pg",direction="push"\} [1-9]/,
    );

    await cli("remote", "remove", db, "pg");
    await daemon.line(/remote target pg removed/);
    // Whatever was queued before the removal has run (as a no-op) once no RemoteSync is unfinished.
    await waitFor(
      () => jobs(db, REMOTE_SYNC).every((j) => j.state === "completed" || j.state === "failed"),
      "the RemoteSync jobs queued before the removal to finish",
      LONG,
    );
    const before = jobs(db, REMOTE_SYNC).length;
    const pgBefore = await dumpPostgres(pg.admin(), schema);
    write(db, round(7));
    const scans = jobs(db, SYNC_REMOTES).length;
    await waitFor(() => jobs(db, SYNC_REMOTES).length >= scans + 3, "three more scans", LONG);
    expect(jobs(db, REMOTE_SYNC)).toHaveLength(before);
    expect(await dumpPostgres(pg.admin(), schema)).toEqual(pgBefore);
    expect(await metrics()).not.toMatch(/target="pg"/);
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
  });

  it("pushes a SQLite file; a SIGKILL mid-push, then a restart: nothing lost, no payload applied twice", async () => {
    const dir = tempDir();
    const db = sourceDb(dir);
    const mirror = join(dir, "mirror.db");
    // Registered before the daemon starts, with the path relative to where the CLI runs.
    expect(
      (
        await runNode(
          [CLI, "remote", "add", db, "sqlite:mirror.db", "--interval", "200ms", "--direction", "push"],
          dir,
        )
      ).code,
    ).toBe(0);
    const filler = new Database(db);
    filler.pragma("busy_timeout = 10000");
    const ins = filler.prepare("INSERT INTO items (id, name, qty, price, data) VALUES (?, ?, ?, ?, NULL)");
    filler.transaction(() => {
      for (let i = 1; i <= 200_000; i++) ins.run(i, `item ${i}`, i, i / 4);
    })();
    filler.close();

    const first = serve(db);
    await first.url();
    // The full push is one transaction on the mirror: kill while it is open, that is once its
    // pages spill into the mirror's WAL and before any history row is committed.
    const copying = () => {
      const wal = `${mirror}-wal`;
      return existsSync(wal) && statSync(wal).size > 1 << 20 && historyNames(mirror).length === 0;
    };
    await waitFor(copying, "the full push to be under way", { ...LONG, intervalMs: 2 });
    first.child.kill("SIGKILL");
    expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
    // It died mid-push: the full push's cursor, saved with its last payload, is not there.
    const source = new Database(db, { readonly: true });
    expect(
      source.prepare("SELECT count(*) FROM tw_cursors WHERE peer = ?").pluck().get(`sqlite:${mirror}`),
    ).toBe(0);
    source.close();
    write(db, round(1));

    const second = serve(db);
    await second.url();
    // Until the copy commits, the mirror has no tables to compare.
    const matches = () => {
      try {
        return same(dumpSqliteFile(mirror), dumpSqliteFile(db));
      } catch {
        return false;
      }
    };
    await waitFor(matches, "the mirror to match after the restart", {
      ...LONG,
      timeoutMs: 90_000,
    });
    write(db, round(2));
    await waitFor(() => same(dumpSqliteFile(mirror), dumpSqliteFile(db)), "a later write to arrive", LONG);
    const names = historyNames(mirror);
    // One full push (the killed one left nothing), then the rounds' payloads, each once.
    expect(names.length).toBeGreaterThanOrEqual(3);
    expect(names.length).toBe(new Set(names).size);

    // SIGTERM while a cycle sends 200,000 changes in 200 payloads: the cycle finishes, then the daemon exits.
    const sent = names.length;
    const bulk = new Database(db);
    bulk.pragma("busy_timeout = 10000");
    bulk.exec("UPDATE items SET qty = qty + 1");
    bulk.close();
    await waitFor(() => historyNames(mirror).length > sent, "the cycle to start sending", {
      ...LONG,
      intervalMs: 5,
    });
    second.child.kill("SIGTERM");
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(second.lines.some((l) => l.msg === "stopped")).toBe(true);
    expect(same(dumpSqliteFile(mirror), dumpSqliteFile(db))).toBe(true);
  }, 180_000);
});
