/**
 * Pulling from remote targets (RemoteSync.sync/pull, src/remote/pull.ts),
 * the cases beyond the conformance suite (test/remote.conformance.test.ts,
 * where every pullable backend shows an edit made on it coming back merged
 * per column): a batch read again after a crash before the cursor moved
 * applies nothing, a refused batch waits, a resync pulls first, bad options.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CursorStore } from "../src/cursor-store.js";
import { registry } from "../src/metrics.js";
import { CHANGES_TABLE, remoteOrigin } from "../src/remote/capture.js";
import { openTarget } from "../src/remote/open-target.js";
import { RemoteSync } from "../src/remote/remote-sync.js";
import type { RemoteTarget } from "../src/remote/target.js";
import { invalidArgument, sql, useTempDirs } from "./helpers.js";
import { dumpSqlite, dumpSqliteFile, runOps, sourceReplica } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-pull-");

describe("pull from a SQLite file", () => {
  it("reads a batch again after a crash before the cursor moved, and applies nothing twice", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    // A target whose capture never prunes, so the entries stay to be read again.
    const inner = openTarget(`sqlite:${path}`);
    const keep: RemoteTarget = {
      backend: inner.backend,
      id: inner.id,
      apply: (p, k) => inner.apply(p, k),
      copy: (j, k) => inner.copy(j, k),
      close: () => inner.close(),
      capture: () => {
        const c = inner.capture!();
        return {
          install: (t) => c.install(t),
          read: (a, n) => c.read(a, n),
          rows: (t, cols, keys) => c.rows(t, cols, keys),
          prune: async () => {},
        };
      },
    };
    let sync = new RemoteSync(replica, { target: keep });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'remote' WHERE id = 1; INSERT INTO items (id, qty) VALUES (2, 5)");
      const pulled = async () =>
        (await registry.getSingleMetric("tidewire_remote_pull_changes_total")!.get()).values.find(
          (v) => v.labels.backend === "sqlite",
        )?.value ?? 0;
      const before = await pulled();
      const once = await sync.pull();
      expect(once).toMatchObject({ entries: 2, applied: 2 });
      expect(await pulled()).toBe(before + 2);
      const rows = dumpSqlite(replica.store.db);
      const log = replica.stats();
      // The crash: the apply committed, the cursor never did; then a new process.
      await sync.close();
      const cursors = new CursorStore(replica.store, { flushIntervalMs: 0 });
      cursors.delete({ peer: keep.id, bucket: "*", direction: "pull" });
      sync = new RemoteSync(replica, { target: keep });
      const again = await sync.pull();
      expect(again).toMatchObject({ entries: 2, changes: 2, applied: 0 });
      expect(dumpSqlite(replica.store.db)).toEqual(rows);
      expect(replica.stats().lastSeq).toBe(log.lastSeq);
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("a batch the replica refuses (a clock far ahead) leaves the cursor and the entries for the next pull", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    const sync = new RemoteSync(replica, { target: `sqlite:${path}`, batchSize: 10 });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'now' WHERE id = 1");
      const ahead = Date.now() + 86_400_000;
      sql(
        path,
        `INSERT INTO ${CHANGES_TABLE} (tbl, pk, op, cols, at) VALUES ('items', '["1"]', 'update', '["name"]', ${ahead})`,
      );
      await expect(sync.pull()).rejects.toThrow(/ahead/);
      expect(sync.cursor()).toBeDefined(); // the push cursor; the pull's has not moved:
      expect(Number(sql(path, `SELECT count(*) FROM ${CHANGES_TABLE}`).trim())).toBe(2);
      await expect(sync.pull()).rejects.toThrow(/ahead/);
      sql(path, `DELETE FROM ${CHANGES_TABLE} WHERE at = ${ahead}`);
      expect(await sync.pull()).toMatchObject({ entries: 1, applied: 1 });
      expect(replica.store.db.prepare("SELECT name FROM items").pluck().get()).toBe("now");
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("pulls before a full push (--resync), which is not captured, and captures again after it", async () => {
    const dir = tempDir();
    const path = join(dir, "mirror.db");
    const replica = sourceReplica(dir);
    runOps(replica.store.db, [{ kind: "put", id: 1, name: "pen", qty: 1n, price: null, data: null }]);
    const sync = new RemoteSync(replica, { target: `sqlite:${path}` });
    try {
      await sync.sync();
      sql(path, "UPDATE items SET name = 'edited there' WHERE id = 1");
      const r = await sync.sync({ resync: true });
      expect(r.pull?.applied).toBe(1);
      expect(r.push?.mode).toBe("full");
      expect(dumpSqliteFile(path)).toEqual(dumpSqlite(replica.store.db));
      expect(replica.store.db.prepare("SELECT name FROM items").pluck().get()).toBe("edited there");
      expect(Number(sql(path, `SELECT count(*) FROM ${CHANGES_TABLE}`).trim())).toBe(0);
      sql(path, "DELETE FROM items WHERE id = 1");
      expect((await sync.sync()).pull?.applied).toBe(1);
      expect(replica.store.db.prepare("SELECT count(*) FROM items").pluck().get()).toBe(0);
    } finally {
      await sync.close();
      replica.close();
    }
  });

  it("marks pulled changes with the target's own node id, and refuses bad options", async () => {
    const dir = tempDir();
    const replica = sourceReplica(dir);
    try {
      invalidArgument(
        () => new RemoteSync(replica, { target: `sqlite:${dir}/m.db`, direction: "sideways" as "both" }),
      );
      const bare: RemoteTarget = {
        backend: "sqlite",
        id: "bare",
        apply: async () => "applied",
        copy: async () => "applied",
        close: async () => {},
      };
      invalidArgument(() => new RemoteSync(replica, { target: bare, direction: "pull" }));
      const pushOnly = new RemoteSync(replica, { target: bare });
      expect(pushOnly.direction).toBe("push");
      await expect(pushOnly.pull()).rejects.toThrow(/bare cannot be pulled from/);
      invalidArgument(() => pushOnly.sync({ resync: "yes" as unknown as boolean }));
      // A tracked table cannot take the name of the pull's own tables on the target.
      replica.store.db.exec(`CREATE TABLE ${CHANGES_TABLE} (id INTEGER PRIMARY KEY, v TEXT)`);
      replica.track(CHANGES_TABLE);
      const clash = new RemoteSync(replica, { target: `sqlite:${dir}/clash.db` });
      await expect(clash.sync()).rejects.toThrow(/the name is reserved on targets/);
      await clash.close();
      expect(remoteOrigin(`sqlite:${dir}/m.db`)).toMatch(/^remote:[0-9a-f]{24}$/);
      expect(remoteOrigin("a")).not.toBe(remoteOrigin("b"));
    } finally {
      replica.close();
    }
  });
});
