/**
 * Convergence with the application's own constraints in force: a parent
 * table with a UNIQUE name, children with a NOT NULL foreign key (cascading
 * in one table, NO ACTION in another, SET NULL in a third), written on 3 or 4
 * replicas — writes the local schema refuses are refused, as they would be to
 * the app — exchanged as random subsets with duplicates, reordering and
 * random batching, through a relay too, then synced to quiescence. Every
 * replica must hold identical rows, `PRAGMA foreign_key_check` must be empty
 * everywhere, and nothing may be left waiting in quarantine.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { Replica } from "../src/replica/replica.js";
import { dump, gossip, syncToQuiescence, templated } from "./replica-helpers.js";

const RUNS = 150;
const root = mkdtempSync(join(tmpdir(), "tidewire-constraints-prop-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const TABLES = ["p", "kid", "note", "pin"] as const;
const replicaFor = templated(root, (r) => {
  r.store.db.exec(`
    CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER NOT NULL);
    CREATE TABLE kid (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL REFERENCES p (id) ON DELETE CASCADE, label TEXT NOT NULL);
    CREATE TABLE note (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL REFERENCES p (id), body TEXT NOT NULL);
    CREATE TABLE pin (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p (id) ON DELETE SET NULL, tag TEXT NOT NULL, UNIQUE (pid, tag));
  `);
  for (const t of TABLES) r.track(t);
});
const relayFor = templated(root, () => {});

type Step =
  | { kind: "parent"; r: number; key: number; name: number; n: number }
  | { kind: "rename"; r: number; key: number; name: number }
  | { kind: "renum"; r: number; key: number; n: number }
  | { kind: "drop"; r: number; table: (typeof TABLES)[number]; key: number }
  | { kind: "child"; r: number; table: "kid" | "note" | "pin"; key: number; pid: number; text: number }
  | { kind: "move"; r: number; table: "kid" | "note" | "pin"; key: number; pid: number }
  | { kind: "sync"; from: number; to: number; seed: number };

const r = fc.nat(3);
const key = fc.nat(2);
const small = fc.nat(2);
const child = fc.constantFrom<"kid" | "note" | "pin">("kid", "note", "pin");
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("parent" as const), r, key, name: small, n: small }),
  fc.record({ kind: fc.constant("rename" as const), r, key, name: small }),
  fc.record({ kind: fc.constant("renum" as const), r, key, n: small }),
  fc.record({ kind: fc.constant("drop" as const), r, table: fc.constantFrom(...TABLES), key }),
  fc.record({ kind: fc.constant("child" as const), r, table: child, key, pid: key, text: small }),
  fc.record({ kind: fc.constant("move" as const), r, table: child, key, pid: key }),
  fc.record({ kind: fc.constant("sync" as const), from: fc.nat(4), to: fc.nat(4), seed: fc.integer() }),
);

const TEXT_COL = { kid: "label", note: "body", pin: "tag" } as const;

/** A write as the app would make it; one the local schema refuses is refused, as for the app. */
function write(replica: Replica, s: Exclude<Step, { kind: "sync" }>): void {
  const db = replica.store.db;
  const id = s.key + 1;
  try {
    switch (s.kind) {
      case "parent":
        // An upsert, as ORMs write one: INSERT OR REPLACE would delete the row
        // holding the name without telling any trigger (see docs, Capture).
        db.prepare(
          "INSERT INTO p VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, n = excluded.n",
        ).run(id, `name${s.name}`, s.n);
        break;
      case "rename":
        db.prepare("UPDATE p SET name = ? WHERE id = ?").run(`name${s.name}`, id);
        break;
      case "renum":
        db.prepare("UPDATE p SET n = ? WHERE id = ?").run(s.n, id);
        break;
      case "drop":
        db.prepare(`DELETE FROM ${s.table} WHERE id = ?`).run(id);
        break;
      case "child":
        db.prepare(
          `INSERT INTO ${s.table} VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, ${TEXT_COL[s.table]} = excluded.${TEXT_COL[s.table]}`,
        ).run(id, s.pid + 1, `t${s.text}`);
        break;
      case "move":
        db.prepare(`UPDATE ${s.table} SET pid = ? WHERE id = ?`).run(s.pid + 1, id);
        break;
    }
  } catch (err) {
    if (!String((err as { code?: string }).code).startsWith("SQLITE_CONSTRAINT")) throw err;
  }
}

function snapshot(replica: Replica): string[] {
  return TABLES.map((t) => dump(replica.store.db, t, "id"));
}

let runId = 0;

describe("convergence with UNIQUE, FOREIGN KEY and NOT NULL in force", () => {
  it(`holds for ${RUNS} random histories of 3 or 4 replicas and a relay`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 4 }),
        fc.array(step, { maxLength: 30 }),
        fc.integer(),
        (n, steps, seed) => {
          const dir = join(root, `run-${runId++}`);
          mkdirSync(dir);
          const replicas = Array.from({ length: n }, (_, i) =>
            replicaFor(`n${i}`, join(dir, `r${i}.db`), { ingestIntervalMs: 0 }),
          );
          const nodes = [
            ...replicas,
            relayFor("hub", join(dir, "hub.db"), { relay: true, ingestIntervalMs: 0 }),
          ];
          try {
            for (const s of steps) {
              if (s.kind === "sync") {
                const from = nodes[s.from % nodes.length] as Replica;
                const to = nodes[s.to % nodes.length] as Replica;
                if (from !== to) gossip(from, to, s.seed);
              } else write(replicas[s.r % n] as Replica, s);
            }
            syncToQuiescence(nodes, seed, true);
            const want = snapshot(replicas[0] as Replica);
            for (const replica of replicas) {
              expect(snapshot(replica), replica.nodeId).toEqual(want);
              expect(replica.store.db.prepare("PRAGMA foreign_key_check").all(), replica.nodeId).toEqual([]);
              expect(replica.conflicts().quarantined, replica.nodeId).toEqual([]);
            }
          } finally {
            for (const node of nodes) node.close();
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: RUNS },
    );
  }, 300_000);
});
