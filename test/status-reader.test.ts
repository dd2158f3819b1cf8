/**
 * StatusReader: one read at a time however many callers, none again within
 * its interval, and the same status as readStatus; from the built package
 * it reads in a worker thread on its own connection, which sees the hub's
 * committed writes.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { StatusReader } from "../src/hub/status-reader.js";
import { Replica } from "../src/replica/replica.js";
import { readStatus } from "../src/status.js";
import { sleep, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const tempDir = useTempDirs("tidewire-status-reader-");
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/hub/status-worker.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

function replicaWithItems(rows: number): Replica {
  const r = Replica.open(join(tempDir(), "hub.db"));
  cleanup.push(() => r.close());
  r.store.db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
  r.track("items");
  const insert = r.store.db.prepare("INSERT INTO items (id, name) VALUES (?, ?)");
  for (let i = 1; i <= rows; i++) insert.run(i, `item ${i}`);
  r.ingest();
  return r;
}

describe("StatusReader", () => {
  it("reads once for callers that ask together, and not again within its interval", async () => {
    const r = replicaWithItems(3);
    const reader = new StatusReader(r.store, { minIntervalMs: 60_000 });
    expect(reader.mode).toBe("inline"); // from sources: no built worker beside this module
    const [a, b] = await Promise.all([reader.get(), reader.get()]);
    expect(a).toBe(b);
    expect(a.status).toEqual(readStatus(r.store));
    expect(a.status.log).toMatchObject({ rows: 3 });

    r.store.db.prepare("INSERT INTO items (id, name) VALUES (4, 'item 4')").run();
    r.ingest();
    // Within the interval: the same read.
    expect(await reader.get()).toBe(a);

    const eager = new StatusReader(r.store, { minIntervalMs: 0, costFactor: 0 });
    expect((await eager.get()).status.log).toMatchObject({ rows: 4 });
  });

  it("from the built package, reads in a worker thread that sees what the hub committed", async () => {
    const built = (await import(join(ROOT, "dist/hub/status-reader.js"))) as {
      StatusReader: typeof StatusReader;
    };
    const r = replicaWithItems(5);
    const reader = new built.StatusReader(r.store, { minIntervalMs: 0, costFactor: 0 });
    cleanup.push(() => reader.close());
    expect(reader.mode).toBe("worker");
    const first = await reader.get();
    expect(first.status).toEqual(readStatus(r.store));

    r.store.db.prepare("DELETE FROM items WHERE id = 1").run();
    r.ingest();
    const second = await reader.get();
    expect(second.status.log).toMatchObject({ rows: 4, tombstones: 1 });
    expect(second.status.nodeId).toBe(r.nodeId);

    // Closed while a read is on its way: that read ends (answered or refused), it does not hang its
    // caller, which would hold the hub's server open at shutdown.
    const third = reader.get().then(
      () => "answered",
      (err: Error) => err.message,
    );
    await reader.close();
    const outcome = await Promise.race([third, sleep(5_000).then(() => "hung")]);
    expect(outcome).toMatch(/^answered$|the hub is closing/);
  });
});
