/**
 * Remote push to the real PostgreSQL (DATABASE_URL) with the types real ORMs
 * declare: one schema per ORM style (the DDL each writes in SQLite, the
 * values each stores), pushed and compared value by value; the data-driven
 * fallback; `pgTypes` overrides; untyped and STRICT ANY columns holding every
 * storage class; and a payload refused for its data rebuilt from the current
 * rows on the next cycle. Each test has its own schema.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError, type Replica } from "../src/index.js";
import { RemoteError, RemoteSync } from "../src/remote/index.js";
import { parseOverride } from "../src/remote/targets/postgres-types.js";
import { useTempDirs } from "./helpers.js";
import { DATABASE_URL, pgAndSqlite, pgColumnTypes, trackedReplica, usePostgres } from "./remote-helpers.js";

const tempDir = useTempDirs("tidewire-pgtypes-");

const { reachable, admin, newSchema } = usePostgres("tw_pgt_");
const replicaWith = (ddl: string, fill: string) => trackedReplica(tempDir(), ddl, fill);

async function pushAndCompare(
  ddl: string,
  fill: string,
  expected: Record<string, Record<string, string>>,
  options: { pgTypes?: Record<string, string> } = {},
) {
  const schema = newSchema();
  const replica = replicaWith(ddl, fill);
  const sync = new RemoteSync(replica, { target: `${DATABASE_URL}?schema=${schema}`, ...options });
  try {
    const r = await sync.push();
    expect(r.mode).toBe("full");
    for (const [table, types] of Object.entries(expected)) {
      expect(await pgColumnTypes(admin(), schema, table), table).toEqual(types);
      const key = Object.keys(types)[0]!;
      const both = await pgAndSqlite(admin(), schema, replica.store.db, table, key);
      expect(both.pg.length, table).toBeGreaterThan(0);
      expect(both.pg, table).toEqual(both.sqlite);
    }
    return { result: r, schema, replica, sync };
  } catch (err) {
    await sync.close();
    replica.close();
    throw err;
  }
}

async function done(x: { sync: RemoteSync; replica: Replica }) {
  await x.sync.close();
  x.replica.close();
}

/** A Django 5.2 schema and the rows Django stored (see the file's header). */
const DJANGO_SHOP = readFileSync(new URL("./fixtures/django-shop.sql", import.meta.url), "utf8");

describe("PostgreSQL types as ORMs declare them (skipped with a message when no server)", () => {
  it("Django 5.2: date, datetime, decimal, bool, JSONField (text + json_valid), UUIDField (char(32)), varchar(n), ForeignKey", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const x = await pushAndCompare(DJANGO_SHOP, "", {
      shop_author: { id: "bigint", name: "character varying(100)" },
      shop_book: {
        id: "bigint",
        title: "character varying(100)",
        published: "date",
        updated: "timestamp without time zone",
        price: "numeric",
        in_print: "boolean",
        meta: "json",
        ref: "character varying(32)",
        at: "time without time zone",
        author_id: "bigint",
      },
    });
    expect(x.result.fallbacks).toEqual([]);
    await done(x);
  });

  it("SQLAlchemy, Rails, Knex, Drizzle and Prisma DDL, each with the values it stores", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const ddl = `
      CREATE TABLE sa_event (id INTEGER NOT NULL, name VARCHAR(50), happened DATETIME, day DATE, at TIME,
        flag BOOLEAN, amount NUMERIC(10, 2), payload JSON, uid CHAR(32), ratio FLOAT, big BIGINT,
        small SMALLINT, raw BLOB, PRIMARY KEY (id), CHECK (flag IN (0, 1)));
      CREATE TABLE "posts" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "title" varchar, "body" text,
        "published_at" datetime(6), "rating" decimal(8,2), "draft" boolean DEFAULT 1, "meta" json,
        "created_at" datetime(6) NOT NULL);
      CREATE TABLE \`k_users\` (\`id\` integer not null primary key autoincrement, \`email\` varchar(255),
        \`born\` date, \`active\` boolean, \`score\` float, \`prefs\` json, \`uid\` char(36), \`ts\` timestamp);
      CREATE TABLE \`d_posts\` (\`id\` integer PRIMARY KEY NOT NULL, \`title\` text NOT NULL,
        \`created_at\` integer NOT NULL, \`done\` integer, \`meta\` text, \`price\` real);
      CREATE TABLE "Order" ("id" TEXT NOT NULL PRIMARY KEY, "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "total" DECIMAL NOT NULL, "paid" BOOLEAN NOT NULL DEFAULT false, "qty" INTEGER NOT NULL,
        "big" BIGINT, "ratio" REAL, "ref" UUID, "data" BLOB);`;
    const fill = `
      INSERT INTO sa_event VALUES
        (1, 'launch', '2024-05-01 12:30:00.000000', '2024-05-01', '12:30:00.000000', 1, '12.50', '{"k": "v"}',
         'a852714f82d84414ad5d129a2ec93546', 0.25, 4611686018427387904, 7, x'00ff'),
        (2, NULL, '2024-05-01 12:30:00.5', NULL, '00:00', 0, '99999999.99', '5', NULL, -1.5e300, -9223372036854775808, -32768, x'');
      INSERT INTO posts VALUES
        (1, 'Hello', 'Body', '2024-05-01 12:30:00.123456', 4.5, 1, '{"tags":["a"]}', '2024-05-01 12:30:00.000001'),
        (2, NULL, NULL, NULL, NULL, 0, '[]', '2024-05-01 00:00:00');
      INSERT INTO k_users VALUES
        (1, 'a@b.c', '1999-12-31', 1, 3.5, '{"dark":true}', '550e8400-e29b-41d4-a716-446655440000', '2024-05-01 12:30:00'),
        (2, 'x@y.z', NULL, 0, NULL, 'null', NULL, NULL);
      INSERT INTO d_posts VALUES (1, 'drizzle', 1714566600, 1, '{"a":1}', 0.1), (2, 'two', 0, 0, NULL, NULL);
      INSERT INTO "Order" VALUES
        ('ckx1', '2024-05-01T12:30:00.123+02:00', '12.50', 1, 3, 9007199254740993, 2.0, '550E8400-E29B-41D4-A716-446655440000', x'01'),
        ('ckx2', '2024-05-01T10:00:00Z', 7, 0, 0, NULL, NULL, NULL, NULL);`;
    const x = await pushAndCompare(ddl, fill, {
      sa_event: {
        id: "bigint",
        name: "character varying(50)",
        happened: "timestamp without time zone",
        day: "date",
        at: "time without time zone",
        flag: "boolean",
        amount: "numeric(10,2)",
        payload: "json",
        uid: "character varying(32)",
        ratio: "double precision",
        big: "bigint",
        small: "smallint",
        raw: "bytea",
      },
      posts: {
        id: "bigint",
        title: "text",
        body: "text",
        published_at: "timestamp without time zone",
        rating: "numeric(8,2)",
        draft: "boolean",
        meta: "json",
        created_at: "timestamp without time zone",
      },
      k_users: {
        id: "bigint",
        email: "character varying(255)",
        born: "date",
        active: "boolean",
        score: "double precision",
        prefs: "json",
        uid: "character varying(36)",
        ts: "timestamp without time zone",
      },
      d_posts: {
        id: "bigint",
        title: "text",
        created_at: "bigint",
        done: "bigint",
        meta: "text",
        price: "double precision",
      },
      Order: {
        id: "text",
        createdAt: "timestamp with time zone",
        total: "numeric",
        paid: "boolean",
        qty: "bigint",
        big: "bigint",
        ratio: "double precision",
        ref: "uuid",
        data: "bytea",
      },
    });
    // Every value above had its declared type but one: DATETIME values with a zone go in timestamptz, and say so.
    expect(x.result.fallbacks).toEqual([
      {
        table: "Order",
        column: "createdAt",
        declared: "DATETIME",
        mapped: "timestamp",
        type: "timestamptz",
        value: 'TEXT "2024-05-01T12:30:00.123+02:00"',
      },
    ]);
    // Incremental changes convert by the types the target has.
    x.replica.store.db.exec(`
      UPDATE sa_event SET happened = '2025-01-02 03:04:05.06', amount = 0.01, flag = 0 WHERE id = 1;
      INSERT INTO "Order" VALUES ('ckx3', '2024-06-01T00:00:00-05:00', '0.125', 1, 1, 1, 1.0, NULL, NULL);
      DELETE FROM posts WHERE id = 2;`);
    const r = await x.sync.push();
    expect(r.mode).toBe("incremental");
    for (const [t, k] of [
      ["sa_event", "id"],
      ["Order", "id"],
      ["posts", "id"],
    ] as const) {
      const both = await pgAndSqlite(admin(), x.schema, x.replica.store.db, t, k);
      expect(both.pg, t).toEqual(both.sqlite);
    }
    await done(x);
  });
});

describe("values that do not fit their declared type", () => {
  it("a full push creates such a column with the first fallback that holds every value, and reports the value that decided it", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const ddl = `CREATE TABLE f (id INTEGER PRIMARY KEY, d DATE, n NUMERIC(5,2), b BOOLEAN, u UUID,
      small SMALLINT, ts DATETIME, j JSON, v VARCHAR(3), blobby BLOB, mixed DATE);`;
    const fill = `INSERT INTO f VALUES
      (1, '2024-05-01', 1.25, 1, '550e8400-e29b-41d4-a716-446655440000', 1, '2024-05-01 12:00:00', '{}', 'abc', x'00', '2024-05-01'),
      (2, 'yesterday', 123.456, 2, 'not-a-uuid', 40000, 1714566600000, '{bad json', 'abcd', 'text in blob', 5),
      (3, '2024-02-30', NULL, 0, NULL, NULL, NULL, NULL, 'ü€😀', NULL, x'01');`;
    const x = await pushAndCompare(ddl, fill, {
      f: {
        id: "bigint",
        d: "text",
        n: "numeric",
        b: "bigint",
        u: "text",
        small: "bigint",
        ts: "any",
        j: "text",
        v: "text",
        blobby: "any",
        mixed: "any",
      },
    });
    expect(
      Object.fromEntries(x.result.fallbacks.map((f) => [f.column, [f.mapped, f.type, f.value]])),
    ).toEqual({
      d: ["date", "text", 'TEXT "yesterday"'],
      n: ["numeric(5,2)", "numeric", 'REAL "123.456"'],
      b: ["boolean", "bigint", 'INTEGER "2"'],
      u: ["uuid", "text", 'TEXT "not-a-uuid"'],
      small: ["smallint", "bigint", 'INTEGER "40000"'],
      ts: ["timestamp", "any", 'INTEGER "1714566600000"'],
      j: ["json", "text", 'TEXT "{bad json"'],
      v: ["varchar(3)", "text", 'TEXT "abcd"'],
      blobby: ["bytea", "any", 'TEXT "text in blob"'],
      mixed: ["date", "any", 'INTEGER "5"'],
    });
    await done(x);
  });

  it("a payload refused for its data is dropped, and the next cycle pushes the current rows in full instead of resending it", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const x = await pushAndCompare(
      "CREATE TABLE ev (id INTEGER PRIMARY KEY, day DATE, note TEXT);",
      "INSERT INTO ev VALUES (1, '2024-05-01', 'a'), (2, '2024-05-02', 'b');",
      { ev: { id: "bigint", day: "date", note: "text" } },
    );
    const db = x.replica.store.db;
    db.exec("UPDATE ev SET day = 'soon' WHERE id = 2; UPDATE ev SET note = 'c' WHERE id = 1;");
    const err = (await x.sync.push().catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.code).toBe("ERR_REMOTE_DATA");
    expect(err.message).toMatch(
      /^column "day" of table "ev" is date on PostgreSQL and cannot hold the TEXT value "soon"; the payload was dropped and the next cycle pushes every table again from the current rows/,
    );
    expect(x.sync.pending()).toBe(0);
    expect(x.sync.cursor()).toBeUndefined();
    // Nothing of the refused payload was applied.
    expect((await admin().query(`SELECT note FROM "${x.schema}".ev WHERE id = 1`)).rows).toEqual([
      { note: "a" },
    ]);
    // The row is fixed: a plain push goes through, in full, and the column keeps its type.
    db.exec("UPDATE ev SET day = '2024-06-01' WHERE id = 2;");
    const fixed = await x.sync.push();
    expect(fixed).toMatchObject({ mode: "full", retried: 0, fallbacks: [] });
    expect(await pgColumnTypes(admin(), x.schema, "ev")).toEqual({ id: "bigint", day: "date", note: "text" });
    let both = await pgAndSqlite(admin(), x.schema, db, "ev", "id");
    expect(both.pg).toEqual(both.sqlite);
    // Not fixed: the next full push creates the column as text, and says why.
    db.exec("UPDATE ev SET day = 'later' WHERE id = 1;");
    await expect(x.sync.push()).rejects.toThrow(/cannot hold the TEXT value "later"/);
    const demoted = await x.sync.push();
    expect(demoted.mode).toBe("full");
    expect(demoted.fallbacks).toMatchObject([{ column: "day", mapped: "date", type: "text" }]);
    both = await pgAndSqlite(admin(), x.schema, db, "ev", "id");
    expect(both.pg).toEqual(both.sqlite);
    expect((await x.sync.push()).mode).toBe("incremental");
    await done(x);
  });
});

describe("pgTypes overrides", () => {
  it("creates the column with the type given, converts by it, and a change of override is a new full push", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const ddl = "CREATE TABLE o (id INTEGER PRIMARY KEY, price REAL, day TEXT, flag INTEGER, doc TEXT);";
    const fill = `INSERT INTO o VALUES (1, 12.5, '2024-05-01', 1, '{"b": 1, "a": [2]}'), (2, NULL, NULL, 0, NULL);`;
    const pgTypes = { "o.price": "numeric(8,2)", "o.day": "date", "o.flag": "bool", "o.doc": "jsonb" };
    const x = await pushAndCompare(
      ddl,
      fill,
      { o: { id: "bigint", price: "numeric(8,2)", day: "date", flag: "boolean", doc: "jsonb" } },
      { pgTypes },
    );
    const cursor = x.sync.cursor();
    await x.sync.close();
    // Another override: another shape, so a full push recreates the table.
    const again = new RemoteSync(x.replica, {
      target: `${DATABASE_URL}?schema=${x.schema}`,
      pgTypes: { ...pgTypes, "o.day": "text" },
    });
    try {
      const r = await again.push();
      expect(r.mode).toBe("full");
      expect(again.cursor()).not.toBe(cursor);
      expect((await pgColumnTypes(admin(), x.schema, "o")).day).toBe("text");
      // A value the chosen type cannot hold refuses the push, with what to do.
      x.replica.store.db.exec("UPDATE o SET price = 1234567.5 WHERE id = 2");
      await expect(again.push()).rejects.toThrow(/cannot hold the REAL value "1234567.5"/);
      await expect(again.push()).rejects.toThrow(
        /^column "price" of table "o" has the REAL value "1234567.5", which numeric\(8,2\) \(chosen with --pg-type o.price=numeric\(8,2\)\) cannot hold; fix the value or choose another type$/,
      );
      x.replica.store.db.exec("UPDATE o SET price = 1234.5 WHERE id = 2");
      expect((await again.push()).mode).toBe("full");
      const both = await pgAndSqlite(admin(), x.schema, x.replica.store.db, "o", "id");
      expect(both.pg).toEqual(both.sqlite);
    } finally {
      await again.close();
      x.replica.close();
    }
  });

  it("refuses a type outside the grammar, an unknown column, and a target that is not PostgreSQL, changing nothing", async () => {
    const replica = replicaWith("CREATE TABLE o (id INTEGER PRIMARY KEY, v TEXT);", "");
    try {
      const bad = [
        { "o.v": "text); DROP TABLE o; --" },
        { "o.v": "varchar" + "(0)" },
        { "o.v": "numeric(3,4)" },
        { "o.v": "inet" },
        { ov: "text" },
        { "o.v": 5 },
      ];
      for (const pgTypes of bad) {
        expect(
          () => new RemoteSync(replica, { target: `${DATABASE_URL}?schema=x`, pgTypes: pgTypes as never }),
          JSON.stringify(pgTypes),
        ).toThrow(InvalidArgumentError);
      }
      expect(
        () => new RemoteSync(replica, { target: "sqlite:/tmp/x.db", pgTypes: { "o.v": "text" } }),
      ).toThrow(/applies to postgres:\/\/ targets only/);
      const typo = new RemoteSync(replica, {
        target: "postgres://u@127.0.0.1:1/db",
        pgTypes: { "o.nope": "text" },
      });
      await expect(typo.push()).rejects.toThrow(/o\.nope is not a column of a pushed table/);
      expect(typo.pending()).toBe(0);
      await typo.close();
    } finally {
      replica.close();
    }
  });
});

describe("columns that hold any SQLite value", () => {
  it("untyped and STRICT ANY columns are jsonb of the wire form: every storage class comes back exactly", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const ddl = `CREATE TABLE loose (id INTEGER PRIMARY KEY, v);
      CREATE TABLE strict_any (id INTEGER PRIMARY KEY, v ANY, n INT) STRICT;`;
    const values = `(1, 9007199254740993), (2, -9223372036854775808), (3, 1.0), (4, 0.1), (5, -0.0), (6, 1e300),
      (7, 9e999), (8, -9e999), (9, 'text'), (10, ''), (11, '{"json": "looking"}'), (12, x'00ff10'), (13, x''),
      (14, NULL), (15, '12'), (16, 5e-324), (17, 'ü€😀'), (18, 9223372036854775807)`;
    const fill = `INSERT INTO loose VALUES ${values};
      INSERT INTO strict_any (id, v) VALUES ${values};`;
    const x = await pushAndCompare(ddl, fill, {
      loose: { id: "bigint", v: "any" },
      strict_any: { id: "bigint", v: "any", n: "bigint" },
    });
    const classes = x.replica.store.db
      .prepare("SELECT DISTINCT typeof(v) FROM strict_any ORDER BY 1")
      .pluck()
      .all();
    expect(classes).toEqual(["blob", "integer", "null", "real", "text"]);
    // Incremental pushes into an any column, by the catalog's type.
    x.replica.store.db.exec(
      "UPDATE strict_any SET v = 2.5 WHERE id = 9; UPDATE loose SET v = 'now text' WHERE id = 3;",
    );
    expect((await x.sync.push()).mode).toBe("incremental");
    for (const t of ["loose", "strict_any"]) {
      const both = await pgAndSqlite(admin(), x.schema, x.replica.store.db, t, "id");
      expect(both.pg, t).toEqual(both.sqlite);
    }
    await done(x);
  });
});

describe("the --pg-type grammar", () => {
  it("reads table.column=TYPE, splitting at the last dot, and refuses anything else", () => {
    expect(parseOverride("shop_book.price=NUMERIC( 8 , 2 )")).toEqual({
      table: "shop_book",
      column: "price",
      type: { kind: "numeric", precision: 8, scale: 2 },
    });
    expect(parseOverride("a.b.c=timestamp with time zone")).toMatchObject({ table: "a.b", column: "c" });
    for (const bad of [
      "price=text",
      ".c=text",
      "t.=text",
      "t.c",
      "t.c=text;",
      "t.c=varchar(0)",
      "t.c=date(3)",
      't.c="text"',
    ]) {
      expect(() => parseOverride(bad), bad).toThrow();
    }
  });
});

describe("key columns", () => {
  it("a key declared with a type that would make distinct SQLite keys equal is created as text: no row overwrites another", async (ctx) => {
    if (!reachable()) return ctx.skip();
    const x = await pushAndCompare(
      `CREATE TABLE k1 (at DATETIME PRIMARY KEY, v TEXT);
       CREATE TABLE k2 (price DECIMAL(8,2) PRIMARY KEY, v TEXT);
       CREATE TABLE k3 (id UUID PRIMARY KEY, doc JSON, v TEXT);
       CREATE TABLE k4 (day DATE, n INTEGER, flag BOOLEAN, v TEXT, PRIMARY KEY (day, n, flag));`,
      `INSERT INTO k1 VALUES ('2024-05-01 12:00', 'a'), ('2024-05-01 12:00:00', 'b'), ('2024-05-01T12:00:00.000', 'c');
       INSERT INTO k2 VALUES ('12.50', 'a'), ('12.5x', 'b'), (7, 'c');
       INSERT INTO k3 VALUES ('550e8400-e29b-41d4-a716-446655440000', '{}', 'a'), ('550E8400E29B41D4A716446655440000', '[]', 'b');
       INSERT INTO k4 VALUES ('2024-05-01', 1, 1, 'a'), ('2024-05-01', 1, 0, 'b');`,
      {
        k1: { at: "text", v: "text" },
        k2: { price: "any", v: "text" },
        k3: { id: "text", doc: "json", v: "text" },
        k4: { day: "date", n: "bigint", flag: "boolean", v: "text" },
      },
    );
    for (const t of ["k1", "k2", "k3"]) {
      const n = await admin().query(`SELECT count(*)::int AS n FROM "${x.schema}"."${t}"`);
      expect(n.rows[0].n, t).toBe(x.replica.store.db.prepare(`SELECT count(*) FROM ${t}`).pluck().get());
    }
    expect(x.result.fallbacks.map((f) => `${f.table}.${f.column}:${f.type}`)).toEqual(["k2.price:any"]);
    await done(x);
  });
});
