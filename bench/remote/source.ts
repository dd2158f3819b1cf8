/**
 * The source both remote benches push: `items (id INTEGER PRIMARY KEY, name
 * TEXT, qty INTEGER, price REAL)` with `rows` rows, written and then tracked
 * (so the writes cost no capture), and the machine's line for the output.
 *
 * Contract: a new replica at `path`, opened; the caller closes it.
 */
import { cpus, loadavg } from "node:os";
import { Replica } from "../../src/index.js";

export function itemsReplica(path: string, rows: number): Replica {
  const replica = Replica.open(path);
  const db = replica.store.db;
  db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL)");
  const insert = db.prepare("INSERT INTO items VALUES (?, ?, ?, ?)");
  db.transaction(() => {
    for (let i = 1; i <= rows; i++) insert.run(i, `item ${i}`, i % 1000, (i % 10000) / 4);
  })();
  replica.track("items");
  return replica;
}

export function machine(): string {
  return `machine: ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}
