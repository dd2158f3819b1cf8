/**
 * Helpers for the real-application tests (issues 11 and 12), whatever the
 * app: a hub run as `tidewire serve`, replicas synced and inspected (dumps
 * compared table by table, foreign_key_check, `tidewire conflicts list`), and
 * a ledger of writes that must not be lost. The Django app's own helpers are
 * in realapp-django.ts.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { expect } from "vitest";
import { Replica } from "../src/replica/replica.js";
import { SyncManager } from "../src/sync/sync-manager.js";
import { HttpTransport } from "../src/sync/transports/http.js";
import { listeningUrl, type Run, runCommand, runNode } from "./helpers.js";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const CLI = join(ROOT, "dist/cli/main.js");
export const TOKEN = "realapp-token-0123456789abcdef";

/** Builds dist/ once when a CLI test finds it missing. */
export function ensureBuilt(): void {
  if (!existsSync(CLI)) execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
}

/** Every child a test starts, killed by `killChildren` in afterEach. */
const children: ChildProcess[] = [];
export function killChildren(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

export function tidewire(args: string[]): Promise<Run> & { child: ChildProcess } {
  const run = runNode([CLI, ...args]);
  children.push(run.child);
  return run;
}

/**
 * A relay hub (no copy of the app's schema) on loopback, one admin token: the
 * app's own replicas, trusted to bring the tables its migrations create
 * (a read-write token may only write tables the hub already has or declares).
 */
export async function startHub(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const tokens = join(dir, "tokens.json");
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: TOKEN, buckets: "*", access: "admin" }] }));
  const run = tidewire(["serve", "--db", join(dir, "hub.db"), "--port", "0", "--tokens-file", tokens]);
  return { url: await listeningUrl(run.child, 60_000), child: run.child };
}

/** Runs a child to its end; resolves with its status and output (never rejects on a non-zero exit). */
export function runProcess(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<Run> {
  const run = runCommand(cmd, args, cwd, env);
  children.push(run.child);
  return run;
}

/** The app's tables in a database (those whose name starts with `prefix`), sorted. */
export function appTables(db: string, prefix: string): string[] {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return (
      d
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ORDER BY name")
        .pluck()
        .all(`${prefix}%`) as string[]
    ).filter((n) => n.startsWith(prefix));
  } finally {
    d.close();
  }
}

/**
 * Every row of every given table, ordered by primary key, each value with its
 * storage class (so 1 and '1' differ): the form replicas are compared in.
 */
export function dumpTables(db: string, tables: string[]): Record<string, string[]> {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  d.pragma("busy_timeout = 20000");
  try {
    const out: Record<string, string[]> = {};
    for (const t of tables) {
      const cols = d.prepare(`SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`).all(t) as Array<{
        name: string;
        pk: number;
      }>;
      const key = cols
        .filter((c) => c.pk > 0)
        .sort((a, b) => a.pk - b.pk)
        .map((c) => `"${c.name}"`);
      const values = cols.map((c) => `typeof("${c.name}"), quote("${c.name}")`).join(", ");
      out[t] = d
        .prepare(`SELECT json_array(${values}) FROM "${t}" ORDER BY ${key.length ? key.join(", ") : "rowid"}`)
        .pluck()
        .all() as string[];
    }
    return out;
  } finally {
    d.close();
  }
}

/** `PRAGMA foreign_key_check` of the whole database: empty when every reference holds. */
export function foreignKeyViolations(db: string): unknown[] {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  d.pragma("busy_timeout = 20000");
  try {
    return d.pragma("foreign_key_check") as unknown[];
  } finally {
    d.close();
  }
}

/** One value read back, for the ledger checks. */
export function readOne(db: string, statement: string, ...params: unknown[]): unknown {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  d.pragma("busy_timeout = 20000");
  try {
    return d
      .prepare(statement)
      .pluck()
      .get(...params);
  } finally {
    d.close();
  }
}

export interface ConflictDoc {
  conflicts: Array<{ id: unknown; kind: string; table: string }>;
  quarantined: Array<{ table?: string }>;
}

/** `tidewire conflicts list <db> --json`; a run that fails or prints no document is reported as such. */
export async function conflictsOf(db: string): Promise<ConflictDoc | { error: string }> {
  const r = await tidewire(["conflicts", "list", db, "--json"]);
  if (r.code !== 0) return { error: `conflicts list exited ${r.code}: ${r.stderr.trim()}` };
  try {
    return JSON.parse(r.stdout) as ConflictDoc;
  } catch {
    return { error: `conflicts list printed no JSON document: ${r.stdout.slice(0, 200)}` };
  }
}

/** How many conflicts of `kind` a document lists for `table` (any table when omitted). */
export function countConflicts(
  doc: ConflictDoc | { error: string },
  kind: string,
  tables?: string[],
): number {
  if ("error" in doc) return Number.NaN;
  return doc.conflicts.filter((c) => c.kind === kind && (!tables || tables.includes(c.table))).length;
}

export interface SyncRun {
  db: string;
  code: number | null;
  stderr: string;
}

/**
 * One sync of a replica with the hub, every bucket, both directions: what
 * `tidewire sync --once` runs (a fresh Replica.open, SyncManager.initialSync,
 * close), in this process because a CLI process costs seconds on the loaded
 * CI machine; `cli: true` runs the real command instead, `batchSize` pages
 * the exchange finely (an initial sync over many pages).
 */
export async function syncOnce(
  db: string,
  url: string,
  { cli = false, batchSize }: { cli?: boolean; batchSize?: number } = {},
): Promise<SyncRun> {
  if (cli) {
    const r = await tidewire(["sync", db, "--remote", url, "--token", TOKEN, "--once", "--json"]);
    return { db, code: r.code, stderr: r.stderr.trim() };
  }
  const transport = new HttpTransport(url, { token: TOKEN });
  let replica: Replica | null = null;
  try {
    replica = Replica.open(db);
    const manager = new SyncManager(replica, transport, { batchSize });
    try {
      await manager.initialSync();
    } finally {
      await manager.stop();
    }
    return { db, code: 0, stderr: "" };
  } catch (err) {
    return { db, code: 1, stderr: `tidewire: ${(err as Error).message}` };
  } finally {
    await transport.close();
    replica?.close();
  }
}

/**
 * Syncs the replicas one after another, `passes` times over, so that each
 * has seen every other's changes (two passes suffice through a relay hub),
 * and soft-asserts that every run succeeded: a run that fails is reported
 * with its error, and the test goes on to report the state it left.
 */
export async function syncAll(dbs: string[], url: string, passes = 2): Promise<SyncRun[]> {
  const runs: SyncRun[] = [];
  for (let p = 0; p < passes; p++) {
    for (const db of dbs) {
      const r = await syncOnce(db, url);
      runs.push(r);
      expect.soft(r.code, `tidewire sync ${db}: ${r.stderr}`).toBe(0);
    }
  }
  return runs;
}

/** Soft-asserts that every replica holds the same rows as the first, table by table. */
export function expectConverged(dbs: string[], tables: string[]): void {
  const first = dumpTables(dbs[0]!, tables);
  for (const db of dbs.slice(1)) {
    const other = dumpTables(db, tables);
    for (const t of tables) expect.soft(other[t], `${t} on ${db} against ${dbs[0]}`).toEqual(first[t]);
  }
}

/** Soft-asserts that `PRAGMA foreign_key_check` is empty on every replica. */
export function expectForeignKeysHold(dbs: string[]): void {
  for (const db of dbs) expect.soft(foreignKeyViolations(db), `foreign_key_check on ${db}`).toEqual([]);
}

/** A row the test expects deleted, in a Ledger. */
export const GONE = Symbol("gone");

/** One write a test made (names as at the time of the write) and the state it must leave. */
export interface Write {
  db: string;
  table: string;
  id: unknown;
  col: string;
  value: unknown;
}

/**
 * The writes a schema-evolution test made, to show that none was lost or
 * reverted: `checkStep` right after a sync (on the replica that wrote, under
 * the names it wrote with), `checkFinal` at the end (on every replica, under
 * the names the migrations gave; the latest write per row and column wins).
 */
export class Ledger {
  private readonly all: Write[] = [];
  private step: Write[] = [];

  wrote(db: string, table: string, id: unknown, col: string, value: unknown): void {
    const w = { db, table, id, col, value };
    this.all.push(w);
    this.step.push(w);
  }

  checkStep(label: string): void {
    for (const w of this.step.splice(0)) expectHeld(w.db, w, w.table, w.col, `${label}, not reverted`);
  }

  checkFinal(dbs: string[], rename: (w: Write) => { table: string; col: string }): void {
    const seen = new Set<string>();
    for (const w of [...this.all].reverse()) {
      const { table, col } = rename(w);
      const slot = `${table}.${col}.${String(w.id)}`;
      if (seen.has(slot)) continue;
      seen.add(slot);
      for (const db of dbs) expectHeld(db, w, table, col, "after every migration");
    }
  }
}

/** Soft-asserts that `db` holds the write: its value, or no row for GONE. */
function expectHeld(db: string, w: Write, table: string, col: string, why: string): void {
  if (w.value === GONE) {
    const n = readOne(db, `SELECT count(*) FROM "${table}" WHERE id = ?`, w.id);
    expect.soft(n, `${why}: ${table} ${w.id} stays deleted on ${db}`).toBe(0);
    return;
  }
  let got: unknown;
  try {
    got = readOne(db, `SELECT "${col}" FROM "${table}" WHERE id = ?`, w.id);
  } catch (err) {
    got = `read failed: ${(err as Error).message}`;
  }
  expect.soft(got, `${why}: ${table}.${col} of ${w.id} on ${db}`).toEqual(w.value);
}
