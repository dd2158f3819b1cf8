/** Small helpers shared by the test files: temp folders, waiting, manual clocks. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, expect } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";

/**
 * Registers an afterEach that removes every folder handed out during the test.
 * Call at the top of a describe block (or file); the returned function makes a new folder.
 */
export function useTempDirs(prefix = "tidewire-test-"): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `predicate` (which may ask over the network) until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 5_000, intervalMs = 2 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A clock the test moves by hand; pass `clock.now` as a queue's `clock` option. */
export class ManualClock {
  constructor(public t = Date.UTC(2025, 0, 1, 12, 0, 0)) {}
  readonly now = (): number => this.t;
  advance(ms: number): number {
    this.t += ms;
    return this.t;
  }
}

/** Runs `fn`, expects it to throw an InvalidArgumentError, and returns that error. */
export function invalidArgument(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error("expected an InvalidArgumentError, nothing was thrown");
}

/** How a child process ended and what it printed. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node …args` (stdin closed, `env` added to this process's) and resolves
 * once it has exited and its output is read; `.child` is the process, for a
 * test that signals it.
 */
export function runNode(
  args: string[],
  cwd?: string,
  env?: NodeJS.ProcessEnv,
): Promise<Run> & { child: ChildProcess } {
  return runCommand(process.execPath, args, cwd, env);
}

/** As `runNode`, for any program. */
export function runCommand(
  cmd: string,
  args: string[],
  cwd?: string,
  env?: NodeJS.ProcessEnv,
): Promise<Run> & { child: ChildProcess } {
  const child = spawn(cmd, args, {
    cwd,
    env: env ? { ...process.env, ...env } : undefined,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const done = new Promise<Run>((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  return Object.assign(done, { child });
}

/**
 * Whether a service the test needs answers `probe`: a skip with a visible
 * message when it does not, but a failure under CI=true, where it must be there.
 */
export async function serviceReachable(
  name: string,
  url: string,
  probe: () => Promise<unknown>,
): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (err) {
    if (process.env.CI === "true")
      throw new Error(`${name} at ${url} is unreachable under CI: ${(err as Error).message}`);
    console.warn(`SKIPPED: ${name} tests, no server at ${url} (${(err as Error).message})`);
    return false;
  }
}

/** Runs statements with Debian's `sqlite3` shell (a client other than ours), waiting up to `timeoutMs` for locks. */
export function sql(db: string, statements: string, timeoutMs = 10_000): string {
  return execFileSync("sqlite3", ["-cmd", `.timeout ${timeoutMs}`, db, statements], { encoding: "utf8" });
}

/** A loopback port nothing listens on (yet): bound, read and released. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The URL a `tidewire serve` child logs once it listens (it logs to stdout). */
export async function listeningUrl(child: ChildProcess, timeoutMs = 15_000): Promise<string> {
  let url = "";
  child.stdout!.on("data", (d: Buffer) => {
    const m = /listening on (http:\/\/[^,\s"]+)/.exec(String(d));
    if (m) url = m[1]!;
  });
  await waitFor(() => url !== "", "the hub to listen", { timeoutMs, intervalMs: 20 });
  return url;
}

/**
 * A SQLite file as an older tidewire or another program made it: auto_vacuum
 * NONE, which no Store can change without rewriting the file (src/storage.ts).
 */
export function fileWithoutAutoVacuum(path: string): string {
  const raw = new Database(path);
  try {
    raw.pragma("auto_vacuum = NONE");
    raw.exec("CREATE TABLE app (v TEXT)");
  } finally {
    raw.close();
  }
  return path;
}

/** What a hub answered: its status and its JSON body (`error` when refused). */
export interface HubAnswer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: the tests read whatever JSON the hub answered
  body: Record<string, any>;
}

/** One JSON request to the hub at `base` with a bearer token, and any other headers (an Origin). */
export function hubCaller(base: string) {
  return async (
    method: string,
    path: string,
    token: string,
    body?: unknown,
    headers = {},
  ): Promise<HubAnswer> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as HubAnswer["body"] };
  };
}

/** A tokens file (mode 0600, as `tidewire serve` wants it) in `dir` holding `tokens`; returns its path. */
export function tokensFile(dir: string, tokens: Array<Record<string, unknown>>): string {
  const path = join(dir, "tokens.json");
  writeFileSync(path, JSON.stringify({ tokens }), { mode: 0o600 });
  return path;
}
