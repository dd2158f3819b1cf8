/** Helpers for the replica tests: replicas on real files, delivery between them, row dumps. */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import type { Change } from "../src/replica/log.js";
import { Replica, type ReplicaOptions } from "../src/replica/replica.js";
import { type SqlValue, toWire } from "../src/replica/values.js";

/** Small, seedable PRNG (mulberry32): fast-check draws the seed, so failures shrink and replay. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

/** Splits into batches of 1..maxSize and applies each; returns how many changes won. */
export function deliver(
  to: Replica,
  changes: Change[],
  random: () => number,
  maxSize = 5,
  from?: string,
): number {
  let applied = 0;
  for (let i = 0; i < changes.length; ) {
    const size = 1 + Math.floor(random() * maxSize);
    applied += to.apply(changes.slice(i, i + size), from === undefined ? {} : { from }).applied;
    i += size;
  }
  return applied;
}

/** Every row of a table with each value's storage class, as comparable JSON. */
export function dump(db: Database.Database, table: string, orderBy: string): string {
  const rows = db.prepare(`SELECT * FROM "${table}" ORDER BY ${orderBy}`).safeIntegers(true).all() as Array<
    Record<string, SqlValue>
  >;
  return JSON.stringify(rows.map((r) => Object.entries(r).map(([k, v]) => [k, toWire(v)])));
}

/**
 * Makes (once) a replica file per node id with `setup` applied, then copies it
 * for each use: opening and migrating a fresh file hundreds of times is the
 * slow part of a property run.
 */
export function templated(
  dir: string,
  setup: (r: Replica) => void,
): (nodeId: string, target: string, options?: ReplicaOptions) => Replica {
  return (nodeId, target, options) => {
    const template = join(dir, `template-${nodeId}.db`);
    if (!existsSync(template)) {
      const r = Replica.open(template, { nodeId });
      setup(r);
      r.close();
    }
    copyFileSync(template, target);
    return Replica.open(target, { ...options, nodeId });
  };
}
