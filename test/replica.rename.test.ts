/**
 * A tracked table renamed (ALTER TABLE … RENAME TO, Django's RenameModel) on
 * replicas that migrate at different times: changes a peer sends under the
 * old name apply to the table under its new name, a replica that renames
 * sends its table again under the new name, and nothing is left waiting in
 * quarantine once every replica has migrated.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import type { Change } from "../src/replica/change.js";
import { useTempDirs } from "./helpers.js";
import { dump } from "./replica-helpers.js";

const tempDir = useTempDirs("tidewire-rename-");
const opened: Replica[] = [];
afterEach(() => {
  for (const r of opened.splice(0)) r.close();
});

function open(dir: string, nodeId: string): Replica {
  const r = Replica.open(join(dir, `${nodeId}.db`), { nodeId, ingestIntervalMs: 0 });
  r.store.db.exec("CREATE TABLE band (id TEXT PRIMARY KEY, name TEXT NOT NULL)");
  r.track("band");
  opened.push(r);
  return r;
}

const cursors = new Map<string, string>();
function pull(to: Replica, from: Replica): void {
  const id = `${from.nodeId}>${to.nodeId}`;
  const page = from.changesSince(cursors.get(id) ?? "0", { excludeOrigin: to.nodeId, limit: 10_000 });
  cursors.set(id, page.cursor);
  to.apply(page.changes as Change[], { from: from.nodeId });
}

describe("a renamed table", () => {
  it("takes changes sent under its old name, is sent again under its new one, and leaves nothing in quarantine", () => {
    const dir = tempDir();
    const [a, b, c] = [open(dir, "a"), open(dir, "b"), open(dir, "c")];
    a.store.db.exec("INSERT INTO band VALUES ('1', 'Early')");
    for (const r of [b, c]) pull(r, a);
    // a migrates first; b, a migration behind, writes under the old name.
    a.store.db.exec("ALTER TABLE band RENAME TO grp");
    b.store.db.exec("INSERT INTO band VALUES ('2', 'Side Project')");
    a.ingest();
    pull(a, b);
    expect(a.store.db.prepare("SELECT name FROM grp ORDER BY id").pluck().all()).toEqual([
      "Early",
      "Side Project",
    ]);
    expect(a.conflicts().quarantined).toEqual([]);
    // c, not migrated, gets a's table under the new name (all of it: a sent it again at its
    // rename) and its new write: kept until c's migration runs.
    a.store.db.exec("INSERT INTO grp VALUES ('3', 'After')");
    pull(c, a);
    pull(c, b);
    expect(
      c
        .conflicts()
        .quarantined.map((q) => [q.table, q.pk[0]])
        .sort(),
    ).toEqual([
      ["grp", "1"],
      ["grp", "2"],
      ["grp", "3"],
    ]);
    for (const r of [b, c]) {
      r.store.db.exec("ALTER TABLE band RENAME TO grp");
      r.ingest();
    }
    expect(c.retryQuarantined()).toBe(3);
    for (let round = 0; round < 2; round++)
      for (const to of [a, b, c]) for (const from of [a, b, c]) if (to !== from) pull(to, from);
    const want = dump(a.store.db, "grp", "id");
    expect(JSON.parse(want)).toHaveLength(3);
    for (const r of [b, c]) {
      expect(dump(r.store.db, "grp", "id"), r.nodeId).toBe(want);
      expect(r.conflicts().quarantined, r.nodeId).toEqual([]);
    }
  });
});
