/**
 * Properties of the push to the real PostgreSQL (DATABASE_URL): the value
 * conversion agrees with PostgreSQL's own input and output for every type it
 * writes, and random workloads on ORM-typed columns — values that do not fit
 * included — leave PostgreSQL equal to SQLite value by value after every
 * cycle. Each run has its own schema.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type RemoteError, RemoteSync } from "../src/remote/index.js";
import { MISFIT, parsePgType, renderPgType, toPgValue } from "../src/remote/targets/postgres-types.js";
import { useTempDirs } from "./helpers.js";
import {
  DATABASE_URL,
  pgAndSqlite,
  pgForm,
  sqliteForm,
  trackedReplica,
  usePostgres,
} from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-pgprop-");
const { reachable, admin, newSchema } = usePostgres("tw_pgp_");
const replicaWith = (ddl: string, fill: string) => trackedReplica(tempDir(), ddl, fill);

describe("the conversion agrees with PostgreSQL", () => {
  const pad = (n: number, w: number) => String(n).padStart(w, "0");
  const date = fc
    .tuple(
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 13 }),
      fc.integer({ min: 0, max: 32 }),
    )
    .map(([y, m, d]) => `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}`);
  const time = fc
    .tuple(
      fc.integer({ min: 0, max: 25 }),
      fc.integer({ min: 0, max: 61 }),
      fc.option(fc.integer({ min: 0, max: 61 })),
      fc.option(fc.stringMatching(/^[0-9]{1,8}$/)),
    )
    .map(
      ([h, m, s, f]) =>
        `${pad(h, 2)}:${pad(m, 2)}${s === null ? "" : `:${pad(s, 2)}${f === null ? "" : `.${f}`}`}`,
    );
  const zone = fc.constantFrom("", "", "Z", "+02:00", "-0530", "+16:00", "+02", "-14:45");
  const stamp = fc.tuple(date, fc.constantFrom(" ", "T", "x"), time, zone).map((p) => p.join(""));
  const decimalText = fc
    .tuple(
      fc.stringMatching(/^-?[0-9]{0,9}$/),
      fc.option(fc.stringMatching(/^[0-9]{0,5}$/)),
      fc.option(fc.integer({ min: -9, max: 9 })),
    )
    .map(([i, f, e]) => `${i}${f === null ? "" : `.${f}`}${e === null ? "" : `e${e}`}`);
  const value = (text: fc.Arbitrary<string>) =>
    fc.oneof(
      text,
      fc.string({ maxLength: 12 }),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.integer({ min: -3, max: 3 }).map(BigInt),
      fc.double({ noNaN: true }), // SQLite stores NaN as NULL
      fc.uint8Array({ maxLength: 4 }),
    );
  const cases: Array<[string, fc.Arbitrary<unknown>]> = [
    ["date", value(date)],
    ["time", value(time)],
    ["timestamp", value(stamp)],
    ["timestamptz", value(stamp)],
    ["numeric(5,2)", value(decimalText)],
    ["numeric", value(decimalText)],
    ["boolean", value(fc.constantFrom("t", "true", "1"))],
    ["smallint", value(fc.constant("1"))],
    ["uuid", value(fc.uuid().map((u) => (u.length % 2 ? u.toUpperCase() : u.replaceAll("-", ""))))],
    ["json", value(fc.oneof(fc.json(), fc.string({ maxLength: 6 })))],
    ["jsonb", value(fc.oneof(fc.json(), fc.constant('"\\u0000"'), fc.constant('"\\ud800"')))],
    ["varchar(3)", value(fc.string({ maxLength: 5, unit: "binary" }))],
    ["any", value(fc.string({ maxLength: 5, unit: "binary" }))],
  ];

  it("every value it accepts for a type, PostgreSQL accepts and prints back as the same value", async (ctx) => {
    if (!reachable()) return ctx.skip();
    await admin().query("SET TimeZone = 'UTC'");
    for (const [name, arb] of cases) {
      const type = parsePgType(name)!;
      await fc.assert(
        fc.asyncProperty(arb, async (raw) => {
          const v = raw as Parameters<typeof toPgValue>[0];
          const out = toPgValue(v, type);
          if (out === MISFIT) return;
          const rs = await admin().query({
            text: `SELECT $1::${renderPgType(type)}::text AS t`,
            values: [out],
          });
          const shown = name === "any" ? "any" : await pgColumnTypeName(name);
          expect(pgForm(rs.rows[0].t, shown), `${name} ${String(raw)}`).toBe(sqliteForm(v, shown));
        }),
        { numRuns: 150 },
      );
    }
  });
});

/** format_type()'s name for a type of the grammar. */
async function pgColumnTypeName(name: string): Promise<string> {
  const rs = await admin().query(`SELECT format_type($1::regtype, NULL) AS t`, [name.replace(/\(.*$/, "")]);
  return rs.rows[0].t;
}

describe("random workloads on ORM-typed columns", () => {
  const day = fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .date({ min: new Date("1900-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
        .map((d) => d.toISOString().slice(0, 10)),
    },
    { weight: 2, arbitrary: fc.constantFrom("soon", "2024-02-30", "") },
  );
  const stamp = fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .date({ min: new Date("1900-01-01"), max: new Date("2100-01-01"), noInvalidDate: true })
        .map((d) => d.toISOString().replace("T", " ").slice(0, 23)),
    },
    { weight: 1, arbitrary: fc.constantFrom("2024-05-01T12:30:00+02:00", "never") },
  );
  const price = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.integer({ min: -99_999_999, max: 99_999_999 }).map((n) => (n / 100).toFixed(2)),
    },
    { weight: 1, arbitrary: fc.constantFrom("1e3", "12.345", "abc") },
  );
  const flag = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(0, 1) },
    { weight: 1, arbitrary: fc.constant(2) },
  );
  const doc = fc.oneof({ weight: 8, arbitrary: fc.json() }, { weight: 1, arbitrary: fc.constant("{oops") });
  const op = fc.oneof(
    fc.record({
      kind: fc.constant("put" as const),
      id: fc.integer({ min: 1, max: 12 }),
      day: fc.option(day),
      stamp,
      price,
      flag,
      doc: fc.option(doc),
    }),
    fc.record({
      kind: fc.constant("day" as const),
      id: fc.integer({ min: 1, max: 12 }),
      day: fc.option(day),
    }),
    fc.record({ kind: fc.constant("del" as const), id: fc.integer({ min: 1, max: 12 }) }),
  );

  it("after every cycle (and the rebuild a refusal asks for), PostgreSQL holds the SQLite rows value by value", async (ctx) => {
    if (!reachable()) return ctx.skip();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        async (rounds) => {
          const schema = newSchema();
          const replica = replicaWith(
            `CREATE TABLE "shop_book" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "published" date NULL,
            "updated" datetime NOT NULL, "price" decimal(10,2) NOT NULL, "in_print" bool NOT NULL,
            "meta" text NULL CHECK ((JSON_VALID("meta") OR "meta" IS NULL)));`,
            "",
          );
          const db = replica.store.db;
          const put = db.prepare(
            `INSERT INTO shop_book VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET published = excluded.published,
            updated = excluded.updated, price = excluded.price, in_print = excluded.in_print, meta = excluded.meta`,
          );
          const sync = new RemoteSync(replica, {
            target: `${DATABASE_URL}?schema=${schema}`,
            batchSize: 5,
            chunkRows: 4,
          });
          try {
            for (const ops of rounds) {
              for (const o of ops) {
                // A JSON CHECK refuses bad JSON in SQLite too: such an op is skipped, as the app would see it fail.
                try {
                  if (o.kind === "put") put.run(o.id, o.day, o.stamp, o.price, o.flag, o.doc);
                  else if (o.kind === "day")
                    db.prepare("UPDATE shop_book SET published = ? WHERE id = ?").run(o.day, o.id);
                  else db.prepare("DELETE FROM shop_book WHERE id = ?").run(o.id);
                } catch {}
              }
              const first = await sync.push().catch((e: RemoteError) => e);
              if (first instanceof Error) {
                expect((first as RemoteError).code, first.message).toBe("ERR_REMOTE_DATA");
                expect(sync.pending()).toBe(0);
                expect((await sync.push()).mode).toBe("full");
              }
              if (db.prepare("SELECT count(*) FROM shop_book").pluck().get() === 0) continue;
              const both = await pgAndSqlite(admin(), schema, db, "shop_book", "id");
              expect(both.pg).toEqual(both.sqlite);
            }
          } finally {
            await sync.close();
            replica.close();
            await admin().query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          }
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);
});
