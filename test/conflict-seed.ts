/**
 * A hub database with conflicts and quarantined changes made the way real
 * ones are: a replica "studio" writes artists and albums first, the hub
 * writes the same unique names under its own keys later, then applies
 * studio's changes, so the UNIQUE rule overrides the hub's rows and records
 * each (both versions kept). One winner is renamed afterwards, so its lost
 * rival can be restored without --replace. Two of studio's changes are
 * quarantined: one for a table the hub does not track ("later"), which a
 * relay (as `tidewire serve` opens it) keeps once retried, and an artist
 * without a country, which the hub's NOT NULL refuses however often it is tried. Shared by the
 * console's HTTP and browser tests and `npm run screenshots`.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { Replica } from "../src/replica/replica.js";

export const ARTISTS = ["Nina", "Omar", "Pia", "Quinn"];
/** The artist whose winner the hub renamed: its lost version restores as is. */
export const FREED = "Omar";
export const STUDIO = "studio";

export interface SeededConflicts {
  /** Conflict ids by the artist or album name that lost. */
  byName: Record<string, number>;
  /** The quarantined changes' ids: the one for table "later", and the one NOT NULL refuses. */
  later: number;
  refused: number;
}

/** The hub's artist needs a country; studio's does not. */
const schema = (country: string) => `
  CREATE TABLE artist (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, country TEXT ${country});
  CREATE TABLE album (id TEXT PRIMARY KEY, title TEXT NOT NULL UNIQUE, artist TEXT)`;

/** Seeds `db` (a new file) as the hub's replica; `dir` holds studio's file. */
export function seedConflicts(db: string, dir: string): SeededConflicts {
  const open = (path: string, nodeId: string, country: string) => {
    const r = Replica.open(path, { nodeId });
    r.store.db.exec(schema(country));
    r.track("artist");
    r.track("album");
    return r;
  };
  const studio = open(join(dir, "studio.db"), STUDIO, "");
  const hub = open(db, "hub", "NOT NULL");
  try {
    const insertArtist = (r: Replica, prefix: string, country: string) => {
      const put = r.store.db.prepare("INSERT INTO artist VALUES (?, ?, ?)");
      for (const [i, name] of ARTISTS.entries()) put.run(`${prefix}${i + 1}`, name, country);
      r.store.db.prepare("INSERT INTO album VALUES (?, ?, ?)").run(`${prefix}-al1`, "Blue", `${prefix}1`);
    };
    insertArtist(studio, "s", "US");
    // The hub's writes come later: the studio's, first by the clock, win the names.
    const later = Date.now() + 2;
    while (Date.now() < later) {}
    insertArtist(hub, "h", "FR");
    const changes = studio.changesSince(0).changes;
    hub.apply(changes, { from: STUDIO });
    hub.apply([{ ...changes[0]!, table: "later" }], { from: STUDIO });
    studio.store.db.exec("INSERT INTO artist VALUES ('s9', 'Wen', NULL)");
    hub.apply(studio.changesSince(changes.at(-1)!.seq).changes, { from: STUDIO });
    hub.store.db.prepare("UPDATE artist SET name = ? WHERE name = ?").run(`${FREED} (studio)`, FREED);
    hub.ingest();
    const byName: Record<string, number> = {};
    const { conflicts, quarantined } = hub.conflicts({ limit: 100 });
    for (const c of conflicts) {
      const cols = c.lost?.columns ?? {};
      byName[String(cols.name ?? cols.title)] = c.id;
    }
    const kept = quarantined.find((q) => q.table === "later")!.id;
    return { byName, later: kept, refused: quarantined.find((q) => q.id !== kept)!.id };
  } finally {
    studio.close();
    hub.close();
  }
}

/** Reads `db` with a connection of the caller's own: each row's values joined by "|". */
export function rowsIn(db: string): (query: string, ...args: unknown[]) => string[] {
  return (query, ...args) => {
    const conn = new Database(db, { readonly: true });
    try {
      return conn
        .prepare(query)
        .raw()
        .all(...args)
        .map((r) => (r as unknown[]).join("|"));
    } finally {
      conn.close();
    }
  };
}
