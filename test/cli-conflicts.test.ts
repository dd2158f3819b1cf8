/**
 * `tidewire conflicts list|show|restore` and the key warning of `tidewire
 * init`, run as the installed bin runs, on real files that met real
 * conflicts: text and --json, exit statuses 0/1/2, and a restore that puts
 * the lost row back as a local write.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { Replica } from "../src/index.js";
import { type Run, runNode, useTempDirs } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "dist/cli/main.js");
const tempDir = useTempDirs("tidewire-cli-conflicts-");

function tidewire(args: string[]): Promise<Run> {
  return runNode([CLI, ...args]);
}

beforeAll(() => {
  if (!existsSync(join(ROOT, "dist/cli/conflicts.js")))
    execFileSync("npm", ["run", "build"], { cwd: ROOT, stdio: "ignore" });
});

/** Two replicas that each created the artist "Nina"; b's lost. Returns b's path. */
function conflicted(): string {
  const dir = tempDir();
  const open = (id: string) => {
    const r = Replica.open(join(dir, `${id}.db`), { nodeId: id });
    r.store.db.exec("CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT)");
    r.track("artist");
    return r;
  };
  const [a, b] = [open("a"), open("b")];
  a.store.db.exec("INSERT INTO artist VALUES ('a1', 'Nina', 'US')");
  const later = Date.now() + 2;
  while (Date.now() < later) {}
  b.store.db.exec("INSERT INTO artist VALUES ('b1', 'Nina', 'FR')");
  b.apply(a.changesSince(0).changes, { from: "a" });
  // A change for a table b does not have: kept in quarantine.
  b.apply([{ ...a.changesSince(0).changes[0]!, table: "later" }], { from: "a" });
  a.close();
  b.close();
  return join(dir, "b.db");
}

describe("tidewire conflicts", () => {
  it("lists conflicts and quarantined changes, in text and as one JSON document", async () => {
    const db = conflicted();
    const text = await tidewire(["conflicts", "list", db]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/1 unique, 0 insert, 0 orphan; quarantined 0 held, 1 failed/);
    expect(text.stdout).toMatch(/unique\s+artist\s+\["b1"\]/);
    expect(text.stdout).toMatch(/failed\s+later/);
    const json = await tidewire(["conflicts", "list", db, "--json"]);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      ok: true,
      counts: { unique: 1, failed: 1 },
      conflicts: [
        { kind: "unique", table: "artist", pk: ["b1"], lost: { columns: { name: "Nina", country: "FR" } } },
      ],
      quarantined: [{ kind: "failed", table: "later", reason: /not tracked here/ }],
    });
    const status = JSON.parse((await tidewire(["status", db, "--json"])).stdout);
    expect(status.conflicts).toEqual({ unique: 1, insert: 0, orphan: 0, held: 0, failed: 1 });
  });

  it("shows one by id; an unknown id is a usage error", async () => {
    const db = conflicted();
    const id = JSON.parse((await tidewire(["conflicts", "list", db, "--json"])).stdout).conflicts[0].id;
    const shown = await tidewire(["conflicts", "show", db, String(id), "--json"]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ ok: true, id, kind: "unique", kept: { pk: ["a1"] } });
    const missing = await tidewire(["conflicts", "show", db, "999"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tidewire: id: there is no conflict 999/);
    expect((await tidewire(["conflicts", "show", db, "x"])).code).toBe(2);
  });

  it("restore is refused while the winner holds the value (exit 1, nothing written), and --replace swaps them", async () => {
    const db = conflicted();
    const id = JSON.parse((await tidewire(["conflicts", "list", db, "--json"])).stdout).conflicts[0].id;
    const refused = await tidewire(["conflicts", "restore", db, String(id)]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/UNIQUE constraint failed: artist\.name.*--replace; nothing was written/);
    const done = await tidewire(["conflicts", "restore", db, String(id), "--replace", "--json"]);
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ ok: true, restored: true });
    const b = Replica.open(db);
    try {
      expect(b.store.db.prepare("SELECT * FROM artist").all()).toEqual([
        { id: "b1", name: "Nina", country: "FR" },
      ]);
      // The restore is a local write: it syncs; and the row it displaced is recorded.
      expect(
        b
          .changesSince(0)
          .changes.map((c) => [c.op, c.pk[0]])
          .sort(),
      ).toEqual([
        ["delete", "a1"],
        ["insert", "b1"],
      ]);
      expect(
        b
          .conflicts()
          .conflicts.map((c) => c.pk[0])
          .sort(),
      ).toEqual(["a1", "b1"]);
    } finally {
      b.close();
    }
  });
});

describe("tidewire init's key warning", () => {
  it("warns of an INTEGER PRIMARY KEY that SQLite fills, and not of a text key", async () => {
    const dir = tempDir();
    const r = Replica.open(join(dir, "w.db"));
    r.store.db.exec(
      "CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT); CREATE TABLE ok (id TEXT PRIMARY KEY, v TEXT)",
    );
    r.close();
    const run = await tidewire(["init", join(dir, "w.db"), "--table", "seq", "--table", "ok", "--json"]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^tidewire: warning: table "seq" has an INTEGER PRIMARY KEY \("id"\)/);
    expect(run.stderr).not.toMatch(/"ok"/);
    expect(JSON.parse(run.stdout).warnings).toHaveLength(1);
  });
});
