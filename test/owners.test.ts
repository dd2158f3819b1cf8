/**
 * One owner per table (issue 16): each `tw_*` table is read and written by one
 * module (or one folder), and every other module asks that owner through its
 * API. This scans src/**\/*.ts for SQL naming a `tw_*` table — after FROM,
 * INTO, UPDATE, JOIN or TABLE, or checked by name (`hasTable("tw_x")`,
 * `name = 'tw_x'`) — comments left out, and fails on any file outside the
 * table's owner. migrations.ts creates every table and may name them all.
 * A new table needs a line in OWNERS, or the first test fails.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Table -> its owner: a file, or a folder (ending in "/") whose every file may touch it. */
const OWNERS: Record<string, string> = {
  tw_clock: "src/replica/",
  tw_tracked: "src/replica/",
  tw_log: "src/replica/",
  tw_pending: "src/replica/",
  tw_conflicts: "src/replica/",
  tw_renames: "src/replica/",
  tw_jobs: "src/queue/",
  tw_periodic: "src/queue/",
  tw_outbox: "src/outbox/",
  tw_cursors: "src/cursor-store.ts",
  tw_peers: "src/peers/peers.ts",
  tw_remotes: "src/remote/registry.ts",
  tw_pin_columns: "src/pins/references.ts",
  tw_rollups: "src/history/rollups.ts",
};

/** Creates every table; the schema's own file. */
const EVERY_TABLE = "src/migrations.ts";

const TOUCH = [
  /\b(?:FROM|INTO|UPDATE|JOIN|TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+["'`]?(tw_[a-z_]+)\b/gi,
  /\bhasTable\(\s*["'`](tw_[a-z_]+)["'`]\s*\)/g,
  /\bname\s*=\s*'(tw_[a-z_]+)'/gi,
];

/** Block comments, and line comments that do not follow a ':' (an address like http://). */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:])\/\/.*$/gm, "$1");
}

/** The tw_* tables `source` runs SQL on or checks by name, each once. */
function tablesTouched(source: string): string[] {
  const code = withoutComments(source);
  const found = new Set<string>();
  for (const pattern of TOUCH) for (const m of code.matchAll(pattern)) found.add(m[1]!.toLowerCase());
  return [...found].sort();
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

function owns(owner: string, file: string): boolean {
  return owner.endsWith("/") ? file.startsWith(owner) : file === owner;
}

const files = sourceFiles(join(ROOT, "src")).map((path) => ({
  file: relative(ROOT, path).split("\\").join("/"),
  tables: tablesTouched(readFileSync(path, "utf8")),
}));

describe("one owner per table", () => {
  it("every table the migrations create has an owner, and every owner's table exists", () => {
    const created = tablesTouched(readFileSync(join(ROOT, EVERY_TABLE), "utf8"));
    expect(created).toEqual(Object.keys(OWNERS).sort());
  });

  it("no module runs SQL on, or checks for, a table another module owns", () => {
    const trespass = files.flatMap(({ file, tables }) =>
      file === EVERY_TABLE
        ? []
        : tables
            .filter((t) => !owns(OWNERS[t] ?? "(no owner)", file))
            .map((t) => `${file} touches ${t}, owned by ${OWNERS[t] ?? "nobody"}`),
    );
    expect(trespass).toEqual([]);
  });

  it("each owner touches its tables (so the scan finds what it looks for)", () => {
    for (const [table, owner] of Object.entries(OWNERS)) {
      const byOwner = files.filter((f) => owns(owner, f.file) && f.tables.includes(table));
      expect(byOwner.length, `${owner} should touch ${table}`).toBeGreaterThan(0);
    }
  });

  it("the scan sees SQL however it is written, and not a table named in a comment", () => {
    expect(tablesTouched('db.prepare("SELECT seq FROM tw_clock WHERE id = 0")')).toEqual(["tw_clock"]);
    expect(tablesTouched("`SELECT l.seq\n   FROM\n     tw_log l JOIN tw_tracked t ON t.id = l.tbl`")).toEqual(
      ["tw_log", "tw_tracked"],
    );
    expect(tablesTouched('`INSERT INTO "tw_jobs" (queue) VALUES (?)`')).toEqual(["tw_jobs"]);
    expect(tablesTouched('"update tw_peers set x = 1"; "delete from tw_cursors"')).toEqual([
      "tw_cursors",
      "tw_peers",
    ]);
    expect(tablesTouched('"CREATE TABLE IF NOT EXISTS tw_rollups (x)"; "DROP TABLE tw_outbox"')).toEqual([
      "tw_outbox",
      "tw_rollups",
    ]);
    expect(tablesTouched('store.hasTable("tw_remotes")')).toEqual(["tw_remotes"]);
    expect(tablesTouched("\"SELECT 1 FROM sqlite_schema WHERE name = 'tw_pending'\"")).toEqual([
      "tw_pending",
    ]);
    expect(tablesTouched("// reads from tw_conflicts\n/* INTO tw_jobs */ const url = 'http://x';")).toEqual(
      [],
    );
  });
});
