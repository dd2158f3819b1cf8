/**
 * Issue 12 shown with a real application: the Django app's later migrations
 * (AddField, an AlterField that rebuilds the table, RenameField, RemoveField,
 * RenameModel, AddIndex) run on three tracked replicas at different times,
 * between writes from the ORM, the sqlite3 shell and Python's sqlite3, while
 * they sync through a hub. Every write goes into a ledger: right after each
 * sync it must still be there on the replica that made it (not reverted by a
 * pull), and once every replica has migrated it must be on all of them (not
 * lost), under the names the migrations gave. Soft assertions, as in
 * realapp.django.test.ts.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sql, useTempDirs } from "./helpers.js";
import { type DjangoReplica, djangoPython, djangoReplicas, NOW } from "./realapp-django.js";
import {
  appTables,
  conflictsOf,
  ensureBuilt,
  expectConverged,
  expectForeignKeysHold,
  GONE,
  killChildren,
  Ledger,
  startHub,
  syncAll,
  type Write,
} from "./realapp-helpers.js";

const tempDir = useTempDirs("tidewire-django-");
let python: string | null = null;

beforeAll(() => {
  ensureBuilt();
  python = djangoPython();
});
afterEach(killChildren);

const replicas = (dir: string, names: string[], target?: string) =>
  djangoReplicas(python!, dir, names, target);

/** Later migrations rename these: the ledger checks the final names once every replica has run them. */
const RENAMED_TABLES: Record<string, string> = { music_band: "music_group" };
const RENAMED_COLUMNS: Record<string, string> = { "music_artist.born": "birth_date" };

function finalName(w: Write): { table: string; col: string } {
  return { table: RENAMED_TABLES[w.table] ?? w.table, col: RENAMED_COLUMNS[`${w.table}.${w.col}`] ?? w.col };
}

describe("the Django app's migrations run on tracked replicas at different times (issue 12)", {
  timeout: 180_000,
}, () => {
  it("AddField, a rebuilding AlterField, RenameField, RemoveField, RenameModel and AddIndex lose no write and converge", async () => {
    if (!python) return;
    const dir = tempDir();
    const hub = await startHub(dir);
    const [r1, r2, r3] = (await replicas(dir, ["r1", "r2", "r3"], "0001")) as [
      DjangoReplica,
      DjangoReplica,
      DjangoReplica,
    ];
    const dbs = [r1.db, r2.db, r3.db];
    const ledger = new Ledger();
    const wrote = (writer: DjangoReplica, table: string, id: unknown, col: string, value: unknown) =>
      ledger.wrote(writer.db, table, id, col, value);
    /** Syncs everyone, then checks that no write of this step was reverted on the replica that made it. */
    const settle = async (label: string) => {
      await syncAll(dbs, hub.url);
      ledger.checkStep(label);
    };

    const [, a, b, rock, al1, g, , ma] = await r1.orm([
      { op: "create", model: "Label", fields: { name: "Northern", country: "GB" } },
      { op: "create", model: "Artist", fields: { name: "Ada", born: "1970-01-02", created_at: NOW } },
      {
        op: "create",
        model: "Artist",
        fields: { name: "Bo", created_at: NOW, meta: { k: [1] }, label_id: "$0" },
      },
      { op: "create", model: "Tag", fields: { name: "rock" } },
      {
        op: "create",
        model: "Album",
        fields: { artist_id: "$1", title: "First", released: "1990-02-03", price: "12.50", rating: 2 },
      },
      { op: "create", model: "Band", fields: { name: "The Three" } },
      { op: "m2m_add", model: "Album", pk: "$4", field: "tags", pks: ["$3"] },
      { op: "create", model: "Membership", fields: { band_id: "$5", artist_id: "$1", role: "voice" } },
    ]);
    await settle("seed");
    expectConverged(dbs, appTables(r1.db, "music_"));

    // Step 1: r1 adds a column (0002, ALTER TABLE ADD COLUMN) and writes it; r2 and r3, still at 0001, write too.
    await r1.migrate("0002");
    await r1.orm([{ op: "update", model: "Album", pk: al1!, fields: { notes: "r1 notes" } }]);
    wrote(r1, "music_album", al1, "notes", "r1 notes");
    sql(r2.db, `UPDATE music_artist SET name = 'Bo Two' WHERE id = '${b}';`);
    wrote(r2, "music_artist", b, "name", "Bo Two");
    const [al3] = await r3.orm([
      {
        op: "create",
        model: "Album",
        fields: { artist_id: b, title: "Three", released: "2003-03-03", price: "3.00" },
      },
    ]);
    wrote(r3, "music_album", al3, "title", "Three");
    await settle("step 1 (r1 at 0002)");

    // Step 2: r2 migrates to 0002, writes, then runs 0003 (Django rebuilds music_album) and writes again.
    await r2.migrate("0002");
    const [al2, al2b] = await r2.orm([
      {
        op: "create",
        model: "Album",
        fields: { artist_id: a, title: "Two", released: "2002-02-02", price: "2.00", notes: "two" },
      },
      {
        op: "create",
        model: "Album",
        fields: { artist_id: a, title: "Two B", released: "2002-02-03", price: "2.50" },
      },
    ]);
    wrote(r2, "music_album", al2, "notes", "two");
    await r2.migrate("0003");
    // r3's album of step 1 must have reached r2 for this edit: a failure here is reported, and the test goes on.
    const edited = await r2
      .orm([{ op: "update", model: "Album", pk: al3!, fields: { title: "Three (remaster)" } }])
      .catch((err: Error) => {
        expect.soft(err.message, "r2 can edit the album r3 created in step 1").toBe("");
        return null;
      });
    if (edited) wrote(r2, "music_album", al3, "title", "Three (remaster)");
    await r2.pysql("UPDATE music_album SET price = ? WHERE id = ?", ["7.50", al1]);
    wrote(r2, "music_album", al1, "price", 7.5);
    await r2.orm([{ op: "delete", model: "Album", pk: al2b! }]);
    wrote(r2, "music_album", al2b, "title", GONE);
    await r1.orm([{ op: "update", model: "Artist", pk: a!, fields: { active: false } }]);
    wrote(r1, "music_artist", a, "active", 0);
    await settle("step 2 (r2 rebuilt music_album)");

    // Step 3: r3 runs 0002-0004 (the rebuild and RENAME COLUMN born -> birth_date); r1 writes born at 0002.
    await r3.migrate("0004");
    await r3.orm([{ op: "update", model: "Artist", pk: a!, fields: { birth_date: "1971-03-04" } }]);
    wrote(r3, "music_artist", a, "birth_date", "1971-03-04");
    sql(r1.db, `UPDATE music_artist SET born = '1980-12-12' WHERE id = '${b}';`);
    wrote(r1, "music_artist", b, "born", "1980-12-12");
    // r2, at 0003, writes the column 0005 drops on r1 in the next step.
    sql(r2.db, `UPDATE music_album SET rating = 3 WHERE id = '${al3}';`);
    await settle("step 3 (r3 renamed born)");

    // Step 4: r1 runs everything left: DROP COLUMN rating (0005), RenameModel Band -> Group with the rebuild
    // of music_membership (0006), CREATE INDEX (0007); r2 (0003) and r3 (0004) keep writing the old schema.
    await r1.migrate();
    const [mb] = await r1.orm([
      {
        op: "create",
        model: "Membership",
        fields: { band_id: g, artist_id: b, role: "keys", joined: "2010-10-10" },
      },
      { op: "update", model: "Group", pk: g!, fields: { name: "The Two" } },
    ]);
    wrote(r1, "music_membership", mb, "role", "keys");
    wrote(r1, "music_group", g, "name", "The Two");
    const [side] = await r2.orm([{ op: "create", model: "Band", fields: { name: "Side Project" } }]);
    wrote(r2, "music_band", side, "name", "Side Project");
    await r3.pysql("UPDATE music_album SET released = ? WHERE id = ?", ["1990-02-04", al1]);
    wrote(r3, "music_album", al1, "released", "1990-02-04");
    await settle("step 4 (r1 at 0007)");

    // Step 5: the others catch up, and everyone writes after the last migration.
    await r2.migrate();
    await r3.migrate();
    await r3.orm([{ op: "update", model: "Album", pk: al1!, fields: { notes: "r3 notes" } }]);
    wrote(r3, "music_album", al1, "notes", "r3 notes");
    await r2.orm([{ op: "delete", model: "Membership", pk: ma! }]);
    wrote(r2, "music_membership", ma, "role", GONE);
    const [al5] = await r1.orm([
      {
        op: "create",
        model: "Album",
        fields: { artist_id: b, title: "Five", released: "2005-05-05", price: "5.55" },
      },
      { op: "m2m_add", model: "Album", pk: "$0", field: "tags", pks: [rock!] },
    ]);
    wrote(r1, "music_album", al5, "title", "Five");
    await settle("step 5 (all at 0007)");

    // Every replica: the same rows, foreign keys holding, every write in its final state, nothing quarantined.
    const tables = appTables(r1.db, "music_");
    expect(tables).toContain("music_group");
    expectConverged(dbs, tables);
    expectForeignKeysHold(dbs);
    ledger.checkFinal(dbs, finalName);
    for (const db of dbs) {
      const doc = await conflictsOf(db);
      expect
        .soft("error" in doc ? doc.error : doc.quarantined, `quarantine of ${db} once all migrated`)
        .toEqual([]);
    }
    hub.child.kill("SIGTERM");
  });
});
