/**
 * Issue 11, PostgreSQL: the Django app's database, received by sync, pushed
 * with `tidewire remote push` to PostgreSQL (a schema of its own) and
 * compared value by value with the SQLite file, each value in a form both
 * sides agree on by the column's declared type (datetimes to the microsecond
 * in UTC, booleans, decimals, JSON with sorted keys); and the PostgreSQL type
 * of every date, datetime, bool and decimal column is the one the ORM
 * declared.
 */
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sql, useTempDirs } from "./helpers.js";
import { type DjangoReplica, djangoPython, djangoReplicas } from "./realapp-django.js";
import {
  appTables,
  ensureBuilt,
  expectConverged,
  killChildren,
  startHub,
  syncAll,
  tidewire,
} from "./realapp-helpers.js";
import { DATABASE_URL, postgresReachable } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-django-");
let python: string | null = null;

beforeAll(() => {
  ensureBuilt();
  python = djangoPython();
});
afterEach(killChildren);

const replicas = (dir: string, names: string[], target?: string) =>
  djangoReplicas(python!, dir, names, target);

/** A datetime as UTC to the microsecond, from SQLite's text (naive: UTC, as Django stores it) or PostgreSQL's. */
function instant(text: string): string {
  const m = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d(?::?\d\d)?)?$/.exec(
    text,
  );
  if (!m) return `unparsed ${text}`;
  const [, y, mo, d, h, mi, s, frac = "", zone = "Z"] = m;
  const sign = zone.startsWith("-") ? -1 : 1;
  // "Z", "+02", "+02:00" or "+0200".
  const digits = zone === "Z" ? "0000" : zone.slice(1).replace(":", "").padEnd(4, "0");
  const [zh, zm] = [Number(digits.slice(0, 2)), Number(digits.slice(2))];
  const ms = Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!) - sign * (zh * 60 + zm) * 60_000;
  return `${new Date(ms).toISOString().slice(0, 19)}.${frac.padEnd(6, "0")}`;
}

/** JSON with object keys sorted: jsonb keeps keys in its own order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

/** One value in a form both sides agree on, by the column's declared SQLite type (Django's). */
function comparable(declared: string, column: string, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  const type = declared.toLowerCase();
  const s = String(v);
  if (type === "bool")
    return s === "t" || s === "true" || s === "1" ? 1 : s === "f" || s === "false" || s === "0" ? 0 : s;
  if (type === "datetime") return instant(s);
  if (type.startsWith("decimal")) return Number(s);
  if (column === "meta") {
    try {
      return canonicalJson(JSON.parse(s));
    } catch {
      return `not JSON: ${s}`;
    }
  }
  return s;
}

describe("the Django database pushed to PostgreSQL (issue 11)", { timeout: 180_000 }, () => {
  it("equals the SQLite source value by value, with dates, datetimes, booleans and decimals typed as declared", async () => {
    if (!python) return;
    if (!(await postgresReachable())) return;
    const dir = tempDir();
    const hub = await startHub(dir);
    const [r1, r2] = (await replicas(dir, ["r1", "r2"])) as [DjangoReplica, DjangoReplica];
    // Values as Django stores them: aware datetimes as naive UTC text with microseconds, dates as text,
    // decimals in a NUMERIC column, booleans as 0/1, JSON as text; and nulls.
    await r1.orm([
      { op: "create", model: "Label", fields: { name: "Northern", country: "GB", founded: "1978-05-01" } },
      { op: "create", model: "Label", fields: { name: "Nul", country: "XX" } },
      {
        op: "create",
        model: "Artist",
        fields: {
          name: "Ada “quoted” Ünïcode",
          birth_date: "1970-01-02",
          created_at: "2024-05-01T12:34:56.123456+02:00",
          meta: { tags: ["x", "ü"], n: 1.5, nested: { ok: true, none: null } },
          label_id: "$0",
        },
      },
      {
        op: "create",
        model: "Artist",
        fields: { name: "Bo", active: false, created_at: "1999-12-31T23:59:59Z" },
      },
      { op: "create", model: "Tag", fields: { name: "rock" } },
      {
        op: "create",
        model: "Album",
        fields: { artist_id: "$2", title: "First", released: "1990-02-03", price: "12.50", notes: "n" },
      },
      {
        op: "create",
        model: "Album",
        fields: { artist_id: "$3", title: "Cheap", released: "2000-02-29", price: "0.10" },
      },
      {
        op: "create",
        model: "Album",
        fields: { artist_id: "$3", title: "Dear", released: "2024-12-31", price: "123456.78" },
      },
      { op: "m2m_add", model: "Album", pk: "$5", field: "tags", pks: ["$4"] },
      { op: "create", model: "Group", fields: { name: "The Two" } },
      {
        op: "create",
        model: "Membership",
        fields: { band_id: "$9", artist_id: "$2", role: "voice", joined: "2001-01-01" },
      },
    ]);
    sql(r1.db, "UPDATE music_album SET notes = 'it''s from the shell' WHERE title = 'Cheap';");
    await r1.pysql("UPDATE music_artist SET active = ? WHERE name = ?", [0, "Bo"]);
    // Through the hub to r2: the database pushed is one that received everything by sync.
    await syncAll([r1.db, r2.db], hub.url);
    const tables = appTables(r1.db, "music_");
    expectConverged([r1.db, r2.db], tables);

    const schema = `tw_django_${randomBytes(6).toString("hex")}`;
    const target = new URL(DATABASE_URL);
    target.searchParams.set("schema", schema);
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      const push = await tidewire([
        "remote",
        "push",
        r2.db,
        "--target",
        target.toString(),
        "--once",
        "--json",
      ]);
      expect.soft(push.code, `remote push: ${push.stderr.trim()}`).toBe(0);
      const src = new Database(r2.db, { readonly: true });
      try {
        for (const t of tables) {
          const cols = src
            .prepare("SELECT name, type FROM pragma_table_info(?) ORDER BY cid")
            .all(t) as Array<{
            name: string;
            type: string;
          }>;
          // PostgreSQL's types, as declared by the ORM: date, timestamp, boolean, numeric.
          const pgTypes = new Map(
            (
              await client.query(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                [schema, t],
              )
            ).rows.map((r: { column_name: string; data_type: string }) => [r.column_name, r.data_type]),
          );
          for (const c of cols) {
            const want =
              { date: /^date$/, datetime: /^timestamp/, bool: /^boolean$/ }[c.type.toLowerCase()] ??
              (c.type.toLowerCase().startsWith("decimal") ? /^numeric$/ : null);
            if (want)
              expect
                .soft(pgTypes.get(c.name) ?? "missing", `PostgreSQL type of ${t}.${c.name} (${c.type})`)
                .toMatch(want);
          }
          const list = cols.map((c) => `"${c.name}"`).join(", ");
          const key = cols[0]!.name === "id" ? '"id"' : list;
          const mine = (
            src.prepare(`SELECT ${list} FROM "${t}" ORDER BY ${key}`).raw(true).all() as unknown[][]
          ).map((r) => r.map((v, i) => comparable(cols[i]!.type, cols[i]!.name, v)));
          let theirs: unknown[][] = [];
          try {
            const rs = await client.query({
              text: `SELECT ${list} FROM "${schema}"."${t}" ORDER BY ${key}`,
              rowMode: "array",
              // Every value as PostgreSQL prints it: no driver conversion in between.
              types: { getTypeParser: () => (v: string) => v },
            });
            theirs = (rs.rows as unknown[][]).map((r) =>
              r.map((v, i) => comparable(cols[i]!.type, cols[i]!.name, v)),
            );
          } catch (err) {
            theirs = [[`cannot read ${schema}.${t}: ${(err as Error).message}`]];
          }
          // Sorted here, not by each database's collation, which may order text differently.
          const sorted = (rows: unknown[][]) => rows.map((r) => JSON.stringify(r)).sort();
          expect.soft(sorted(theirs), `${t} in PostgreSQL against ${r2.db}`).toEqual(sorted(mine));
        }
      } finally {
        src.close();
      }
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
    hub.child.kill("SIGTERM");
  });
});
