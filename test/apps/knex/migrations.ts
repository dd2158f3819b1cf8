/**
 * The Knex app of the real-application tests: authors and their books, with
 * ULID keys (replicas insert at the same time), a declared ON DELETE CASCADE,
 * UNIQUE and NOT NULL columns, and three ordinary Knex migrations. 002 alters
 * a column, which Knex does on SQLite by rebuilding the table (create
 * `_knex_temp_alter…`, copy, drop, rename); 003 renames a column.
 *
 * Contract: `openKnex(path)` opens the file with better-sqlite3 through Knex;
 * `migrations` is a Knex migrationSource, run with `db.migrate.up({ migrationSource })`
 * one step at a time or `db.migrate.latest(...)`.
 */
import knex, { type Knex } from "knex";

export function openKnex(path: string): Knex {
  return knex({ client: "better-sqlite3", connection: { filename: path }, useNullAsDefault: true });
}

const steps: Record<string, { up: (db: Knex) => Promise<void>; down: (db: Knex) => Promise<void> }> = {
  "001_authors_books": {
    async up(db) {
      await db.schema.createTable("authors", (t) => {
        t.string("id", 26).primary();
        t.string("name", 100).notNullable().unique();
        t.date("born");
        t.timestamp("created_at").notNullable();
      });
      await db.schema.createTable("books", (t) => {
        t.string("id", 26).primary();
        t.string("author_id", 26).notNullable().references("id").inTable("authors").onDelete("CASCADE");
        t.string("title", 100).notNullable();
        t.string("isbn", 20).unique();
        t.decimal("price", 8, 2).notNullable();
        t.boolean("published").notNullable().defaultTo(false);
        t.json("meta");
      });
    },
    async down(db) {
      await db.schema.dropTable("books");
      await db.schema.dropTable("authors");
    },
  },
  "002_longer_titles_subtitle": {
    async up(db) {
      await db.schema.alterTable("books", (t) => {
        t.string("title", 300).notNullable().alter();
        t.text("subtitle");
      });
    },
    async down(db) {
      await db.schema.alterTable("books", (t) => {
        t.dropColumn("subtitle");
        t.string("title", 100).notNullable().alter();
      });
    },
  },
  "003_author_birth_date": {
    async up(db) {
      await db.schema.alterTable("authors", (t) => t.renameColumn("born", "birth_date"));
    },
    async down(db) {
      await db.schema.alterTable("authors", (t) => t.renameColumn("birth_date", "born"));
    },
  },
};

export const migrations: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(steps),
  getMigrationName: (name) => name,
  getMigration: async (name) => steps[name]!,
};
