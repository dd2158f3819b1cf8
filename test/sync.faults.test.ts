/**
 * Faults: three `tidewire sync --watch` clients reach a `tidewire serve` hub
 * through a TCP proxy that, connection by connection at random (seeded),
 * delays, drops, truncates and resets traffic, while the sqlite3 shell keeps
 * writing on every client (new rows and conflicting updates of shared rows);
 * the hub and one client are SIGKILLed mid-sync and restarted. Once the
 * proxy turns clean, all four databases converge: every row written is
 * there, once, with the same values everywhere.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type Server, Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort, sql as shell, sleep, useTempDirs, waitFor } from "./helpers.js";
import { rng } from "./replica-helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const TOKEN = "fault-token-0123456789abcdef";
const tempDir = useTempDirs("tidewire-faults-");
const children: ChildProcess[] = [];
const servers: Server[] = [];

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/sync.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const s of servers.splice(0)) s.close();
});

/** The shell waits longer for locks here: the fault runs keep several writers busy. */
function sql(db: string, statements: string): string {
  return shell(db, statements, 20_000);
}

const stderr: string[] = [];
function node(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => stderr.push(`${args[0]} ${args[1]}: ${d}`));
  children.push(child);
  return child;
}

type Fault = "ok" | "delay" | "drop" | "truncate" | "reset";

/** A TCP proxy to `target` that applies a random fault to each connection while `faulty` is on. */
function proxy(target: number, seed: number) {
  const random = rng(seed);
  const counts: Record<Fault, number> = { ok: 0, delay: 0, drop: 0, truncate: 0, reset: 0 };
  const state = { faulty: true, counts };
  // Every kind once first, so a slow run that opens few connections still meets them all.
  const first: Fault[] = ["drop", "truncate", "reset", "delay", "drop", "reset", "truncate"];
  const pick = (): Fault => {
    const next = first.shift();
    if (next) return next;
    const x = random();
    return x < 0.35 ? "ok" : x < 0.55 ? "delay" : x < 0.7 ? "drop" : x < 0.85 ? "truncate" : "reset";
  };
  const server = createServer((client: Socket) => {
    const fault: Fault = state.faulty ? pick() : "ok";
    counts[fault]++;
    const hub = new Socket();
    hub.connect(target, "127.0.0.1");
    const kill = () => {
      client.destroy();
      hub.destroy();
    };
    client.on("error", kill);
    hub.on("error", kill);
    client.on("close", () => hub.destroy());
    hub.on("close", () => client.destroy());
    if (fault === "drop") {
      client.destroy();
      hub.destroy();
      return;
    }
    // Kept-alive connections would otherwise draw a fault once and then live for ever.
    if (state.faulty) setTimeout(kill, 50 + random() * 300).unref();
    let budget =
      fault === "truncate" || fault === "reset" ? Math.floor(random() * 4000) : Number.POSITIVE_INFINITY;
    const toClient = fault === "truncate" ? random() < 0.7 : random() < 0.5;
    const forward = (from: Socket, to: Socket, limited: boolean) => {
      from.on("data", (chunk: Buffer) => {
        let data = chunk;
        if (limited) {
          if (budget <= 0) return;
          if (data.length > budget) data = data.subarray(0, budget);
          budget -= data.length;
          if (budget <= 0) {
            to.write(data, () => {
              if (fault === "reset") client.resetAndDestroy();
              kill();
            });
            return;
          }
        }
        if (fault === "delay") {
          from.pause();
          setTimeout(() => {
            to.write(data);
            from.resume();
          }, random() * 150);
        } else to.write(data);
      });
    };
    forward(client, hub, !toClient);
    forward(hub, client, toClient);
  });
  servers.push(server);
  return { server, state };
}

describe("sync under faults", () => {
  it("converges with nothing lost or duplicated through a faulty proxy and SIGKILLs of hub and client", async () => {
    const dir = tempDir();
    const hubDb = join(dir, "hub.db");
    sql(hubDb, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
    node(["init", hubDb, "--table", "items"]);
    await waitFor(() => children[0]!.exitCode !== null, "init", { timeoutMs: 10_000 });
    const hubPort = await freePort();
    const startHub = () =>
      node([
        "serve",
        "--db",
        hubDb,
        "--port",
        String(hubPort),
        "--token",
        TOKEN,
        "--rate-limit",
        "0",
        "--log-level",
        "warn",
      ]);
    let hub = startHub();
    const p = proxy(hubPort, 20_260_101);
    await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
    const remote = `http://127.0.0.1:${(p.server.address() as { port: number }).port}`;

    const clients = ["c1", "c2", "c3"].map((name) => {
      const db = join(dir, `${name}.db`);
      sql(db, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);");
      execFileSync(process.execPath, [CLI, "init", db, "--table", "items"]);
      return db;
    });
    const watch = (db: string) =>
      node([
        "sync",
        db,
        "--remote",
        remote,
        "--token",
        TOKEN,
        "--watch",
        "--interval",
        "200ms",
        "--max-backoff",
        "500ms",
      ]);
    const watchers = clients.map(watch);

    // Writes on every client while faults and kills happen.
    const written = new Set<number>();
    for (let round = 0; round < 12; round++) {
      clients.forEach((db, i) => {
        const ids = Array.from({ length: 25 }, (_, k) => 10_000 * (i + 1) + round * 100 + k);
        for (const id of ids) written.add(id);
        sql(
          db,
          `INSERT INTO items VALUES ${ids.map((id) => `(${id}, 'c${i + 1} r${round}', ${round})`).join(", ")};
           INSERT INTO items VALUES (${round % 5}, 'c${i + 1}', ${round}) ON CONFLICT (id) DO UPDATE SET name = excluded.name, qty = excluded.qty;`,
        );
      });
      if (round === 3) {
        hub.kill("SIGKILL");
        await sleep(300);
        hub = startHub();
      }
      if (round === 6) {
        watchers[1]!.kill("SIGKILL");
        await sleep(100);
        watchers[1] = watch(clients[1]!);
      }
      await sleep(150);
    }
    for (let k = 0; k < 5; k++) written.add(k);

    // Faults stay on until the proxy has inflicted every kind: a loaded machine may open too few
    // connections during the writes to reach them all, which says nothing about sync.
    const kinds = ["delay", "drop", "truncate", "reset"] as const;
    await waitFor(() => kinds.every((f) => p.state.counts[f] > 0), "every kind of fault", {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    p.state.faulty = false;
    const dumps = () =>
      [hubDb, ...clients].map((db) => sql(db, "SELECT id, name, qty FROM items ORDER BY id"));
    await waitFor(
      () => {
        const d = dumps();
        return d.every((x) => x === d[0]) && d[0]!.trim().split("\n").length === written.size;
      },
      "all four databases to converge",
      // 56 s for the whole test beside two busy loops on 2 cores: room for a slower CI run.
      { timeoutMs: 150_000, intervalMs: 500 },
    ).catch((err: Error) => {
      const counts = dumps().map((d) => d.trim().split("\n").length);
      for (const db of [hubDb, ...clients]) {
        stderr.push(
          `${db}: ${sql(db, "SELECT count(*), min(id), max(id) FROM items WHERE id >= 10000;").trim()} | log ${sql(db, "SELECT count(*), sum(col = '' AND val = 1), sum(col = '' AND val = 0) FROM tw_log;").trim()} | 10500: ${sql(db, "SELECT col, val, hex(hlc), origin, seq FROM tw_log WHERE pk = 10500;").trim().replace(/\n/g, "; ")}\n`,
        );
      }
      throw new Error(
        `${err.message}: rows ${counts.join(", ")} of ${written.size}; stderr:\n${stderr.slice(-25).join("")}`,
      );
    });
    const ids = dumps()[0]!
      .trim()
      .split("\n")
      .map((l) => Number(l.split("|")[0]));
    expect(new Set(ids)).toEqual(written);
    expect(ids).toHaveLength(written.size);
    // The proxy did inflict every kind of fault.
    for (const f of kinds) expect(p.state.counts[f]).toBeGreaterThan(0);
    for (const w of watchers) w.kill("SIGTERM");
    hub.kill("SIGTERM");
  }, 240_000);
});
