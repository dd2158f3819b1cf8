/**
 * Issues 11 and 12 shown with a Node ORM: the Knex app of test/apps/knex
 * (better-sqlite3 underneath) on three replicas and a hub run as `tidewire
 * serve`, each replica migrated by Knex's own migrator, tracked with
 * `tidewire init`; writes through Knex's query builder and the sqlite3 shell.
 *
 * As in realapp.django.test.ts the assertions state the required behaviour
 * and are soft, so one run reports every broken promise: convergence,
 * `PRAGMA foreign_key_check` empty, every overridden write recorded as a
 * conflict by the replica that made it, no write lost or reverted while the
 * replicas run Knex's table-rebuilding migration (and the raw rebuild
 * sequence from the sqlite3 shell) at different times.
 */
import { join } from "node:path";
import type { Knex } from "knex";
import { ulid } from "ulid";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { migrations, openKnex } from "./apps/knex/migrations.js";
import { sql, useTempDirs } from "./helpers.js";
import {
  type ConflictDoc,
  conflictsOf,
  countConflicts,
  ensureBuilt,
  expectConverged,
  expectForeignKeysHold,
  GONE,
  killChildren,
  Ledger,
  readOne,
  startHub,
  syncAll,
  syncOnce,
  tidewire,
} from "./realapp-helpers.js";

const tempDir = useTempDirs("tidewire-knex-");
const TABLES = ["authors", "books"];
const NOW = "2024-05-01 10:00:00";

beforeAll(ensureBuilt);

const opened: Knex[] = [];
afterEach(async () => {
  killChildren();
  for (const k of opened.splice(0)) await k.destroy();
});

interface KnexReplica {
  db: string;
  knex: Knex;
}

/** A replica file migrated by Knex `steps` migrations up, its tables tracked in the bucket "books". */
async function replica(dir: string, name: string, steps: number): Promise<KnexReplica> {
  const db = join(dir, `${name}.db`);
  const knex = openKnex(db);
  opened.push(knex);
  for (let i = 0; i < steps; i++) await knex.migrate.up({ migrationSource: migrations });
  const r = await tidewire(["init", db, ...TABLES.flatMap((t) => ["--table", `${t}=books`])]);
  expect(r.code, r.stderr).toBe(0);
  return { db, knex };
}

const upOne = (r: KnexReplica) => r.knex.migrate.up({ migrationSource: migrations });

describe("a Knex app kept in sync by three replicas and a hub (issue 11)", { timeout: 180_000 }, () => {
  it("concurrent Knex and shell writes converge, keep foreign keys and record every override", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const [k1, k2, k3] = [
      await replica(dir, "k1", 1),
      await replica(dir, "k2", 1),
      await replica(dir, "k3", 1),
    ] as const;
    const dbs = [k1.db, k2.db, k3.db];
    const [a, b, a1, b1] = [ulid(), ulid(), ulid(), ulid()];
    await k1.knex.transaction(async (t) => {
      await t("authors").insert([
        { id: a, name: "Ada", born: "1970-01-02", created_at: NOW },
        { id: b, name: "Bo", created_at: NOW },
      ]);
      await t("books").insert([
        { id: a1, author_id: a, title: "First", isbn: "111", price: 12.5, published: true, meta: '{"k":1}' },
        { id: b1, author_id: b, title: "Blue", price: 9.99, published: false },
      ]);
    });
    await syncAll(dbs, hub.url);
    expectConverged(dbs, TABLES);

    // Concurrent round, no sync in between.
    // One column of a NOT NULL table, from Knex (k1) and from the shell (k3).
    await k1.knex("books").where({ id: a1 }).update({ price: 20 });
    sql(k3.db, `UPDATE authors SET name = 'Ada Lovelace' WHERE id = '${a}';`);
    // One unique name and one unique ISBN created on two replicas.
    const [nova2, nova3, x2, x3] = [ulid(), ulid(), ulid(), ulid()];
    await k2.knex("authors").insert({ id: nova2, name: "Nova", created_at: NOW });
    await k3.knex("authors").insert({ id: nova3, name: "Nova", created_at: NOW });
    await k2.knex("books").insert({ id: x2, author_id: a, title: "X two", isbn: "999", price: 1 });
    await k3.knex("books").insert({ id: x3, author_id: a, title: "X three", isbn: "999", price: 2 });
    // A parent deleted on k1 (ON DELETE CASCADE takes b1) while k2 adds a book under it.
    await k1.knex("authors").where({ id: b }).delete();
    const b2 = ulid();
    await k2.knex("books").insert({ id: b2, author_id: b, title: "Late", price: 5 });
    // Rows created at once with ULID keys: both stay.
    const [y1, y3] = [ulid(), ulid()];
    await k1.knex("authors").insert({ id: y1, name: "Yan", created_at: NOW });
    await k3.knex("authors").insert({ id: y3, name: "Yul", created_at: NOW });

    await syncAll(dbs, hub.url, 3);
    const k4 = await replica(dir, "k4", 1);
    const joined = await syncOnce(k4.db, hub.url, { cli: true });
    expect.soft(joined.code, `initial sync of k4: ${joined.stderr}`).toBe(0);
    const every = [...dbs, k4.db];
    expectConverged(every, TABLES);
    expectForeignKeysHold(every);

    const docs = new Map<string, ConflictDoc | { error: string }>();
    for (const db of every) docs.set(db, await conflictsOf(db));
    for (const [db, doc] of docs)
      expect.soft("error" in doc ? doc.error : "", `conflicts list ${db}`).toBe("");
    const has = (table: string, id: string) =>
      readOne(k1.db, `SELECT count(*) FROM "${table}" WHERE id = ?`, id) === 1;
    expect.soft(readOne(k4.db, "SELECT price FROM books WHERE id = ?", a1), "Knex's price on k4").toBe(20);
    expect
      .soft(readOne(k4.db, "SELECT name FROM authors WHERE id = ?", a), "the shell's name on k4")
      .toBe("Ada Lovelace");
    // Unique name and ISBN: one row each survives; the other's writer records a unique conflict.
    for (const [table, pair] of [
      ["authors", [nova2, nova3]],
      ["books", [x2, x3]],
    ] as const) {
      const kept = pair.filter((id) => has(table, id));
      expect.soft(kept, `one of the two ${table} rows survives`).toHaveLength(1);
      const loser = kept[0] === pair[0] ? k3 : k2;
      expect
        .soft(countConflicts(docs.get(loser.db)!, "unique", [table]), `the ${table} unique conflict`)
        .toBeGreaterThanOrEqual(1);
    }
    // Whatever the rule for a child under a deleted parent (ON DELETE CASCADE declared), an overridden side
    // is recorded by its writer: k2's book removed, or k1's delete undone.
    if (!has("books", b2))
      expect
        .soft(countConflicts(docs.get(k2.db)!, "orphan", TABLES), "k2's book under a deleted author, removed")
        .toBeGreaterThanOrEqual(1);
    if (has("authors", b))
      expect
        .soft(countConflicts(docs.get(k1.db)!, "orphan", TABLES), "k1's delete of author b, undone")
        .toBeGreaterThanOrEqual(1);
    expect.soft(has("authors", y1) && has("authors", y3), "Yan and Yul both present").toBe(true);
    for (const [db, doc] of docs)
      if (!("error" in doc)) expect.soft(doc.quarantined, `quarantine of ${db}`).toEqual([]);
    hub.child.kill("SIGTERM");
  });
});

describe("Knex migrations and a raw rebuild on tracked replicas at different times (issue 12)", {
  timeout: 180_000,
}, () => {
  it("an altered (rebuilt) table, an added and a renamed column lose no write and converge", async () => {
    const dir = tempDir();
    const hub = await startHub(dir);
    const [k1, k2, k3] = [
      await replica(dir, "k1", 1),
      await replica(dir, "k2", 1),
      await replica(dir, "k3", 1),
    ] as const;
    const dbs = [k1.db, k2.db, k3.db];
    const ledger = new Ledger();
    const settle = async (label: string) => {
      await syncAll(dbs, hub.url);
      ledger.checkStep(label);
    };
    const [a, b, a1, b1] = [ulid(), ulid(), ulid(), ulid()];
    await k1.knex("authors").insert([
      { id: a, name: "Ada", born: "1970-01-02", created_at: NOW },
      { id: b, name: "Bo", created_at: NOW },
    ]);
    await k1.knex("books").insert([
      { id: a1, author_id: a, title: "First", isbn: "111", price: 12.5, published: false },
      { id: b1, author_id: b, title: "Blue", price: 9.99, published: false },
    ]);
    await settle("seed");
    expectConverged(dbs, TABLES);

    // Step 1: k2 runs 002 (Knex rebuilds books and adds subtitle), then writes; k1, at 001, writes too.
    await upOne(k2);
    const [c2, d2] = [ulid(), ulid()];
    await k2.knex("books").where({ id: a1 }).update({ title: "First, longer title", subtitle: "sub" });
    ledger.wrote(k2.db, "books", a1, "title", "First, longer title");
    ledger.wrote(k2.db, "books", a1, "subtitle", "sub");
    await k2.knex("books").insert([
      { id: c2, author_id: a, title: "Made after the rebuild", price: 3 },
      { id: d2, author_id: a, title: "Deleted after the rebuild", price: 4 },
    ]);
    await k2.knex("books").where({ id: d2 }).delete();
    ledger.wrote(k2.db, "books", c2, "title", "Made after the rebuild");
    ledger.wrote(k2.db, "books", d2, "title", GONE);
    await k1.knex("books").where({ id: b1 }).update({ price: 7.5 });
    ledger.wrote(k1.db, "books", b1, "price", 7.5);
    await settle("step 1 (k2 rebuilt books)");

    // Step 2: k3 rebuilds authors by hand from the sqlite3 shell (the sequence sqlite-utils and Django use),
    // then runs 002 and 003 (RENAME COLUMN born -> birth_date) and writes; k1, still at 001, writes born.
    sql(
      k3.db,
      `BEGIN;
       CREATE TABLE new_authors (id varchar(26), name varchar(100) NOT NULL, born date, created_at datetime NOT NULL,
         PRIMARY KEY (id));
       INSERT INTO new_authors (id, name, born, created_at) SELECT id, name, born, created_at FROM authors;
       DROP TABLE authors;
       ALTER TABLE new_authors RENAME TO authors;
       CREATE UNIQUE INDEX authors_name_unique ON authors (name);
       COMMIT;`,
    );
    sql(k3.db, `UPDATE authors SET name = 'Ada after a raw rebuild' WHERE id = '${a}';`);
    ledger.wrote(k3.db, "authors", a, "name", "Ada after a raw rebuild");
    await upOne(k3);
    await upOne(k3);
    await k3.knex("authors").where({ id: b }).update({ birth_date: "1980-12-12" });
    ledger.wrote(k3.db, "authors", b, "birth_date", "1980-12-12");
    await k1.knex("authors").where({ id: a }).update({ born: "1971-03-04" });
    ledger.wrote(k1.db, "authors", a, "born", "1971-03-04");
    await settle("step 2 (k3 at 003)");

    // Step 3: k1 runs 002 and 003; k2 (002) writes; then k2 catches up and everyone writes once more.
    await upOne(k1);
    await upOne(k1);
    await k1.knex("books").where({ id: b1 }).update({ subtitle: "from k1" });
    ledger.wrote(k1.db, "books", b1, "subtitle", "from k1");
    const e2 = ulid();
    await k2.knex("books").insert({ id: e2, author_id: b, title: "k2 at 002", price: 6, published: true });
    ledger.wrote(k2.db, "books", e2, "published", 1);
    await settle("step 3 (k1 at 003)");
    await upOne(k2);
    await k2.knex("authors").where({ id: b }).update({ birth_date: "1981-01-01" });
    ledger.wrote(k2.db, "authors", b, "birth_date", "1981-01-01");
    await k3.knex("books").where({ id: c2 }).delete();
    ledger.wrote(k3.db, "books", c2, "title", GONE);
    await settle("step 4 (all at 003)");

    expectConverged(dbs, TABLES);
    expectForeignKeysHold(dbs);
    ledger.checkFinal(dbs, (w) => ({
      table: w.table,
      col: w.table === "authors" && w.col === "born" ? "birth_date" : w.col,
    }));
    for (const db of dbs) {
      const doc = await conflictsOf(db);
      expect
        .soft("error" in doc ? doc.error : doc.quarantined, `quarantine of ${db} once all migrated`)
        .toEqual([]);
    }
    hub.child.kill("SIGTERM");
  });
});
