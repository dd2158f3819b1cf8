/** Helpers for the replica tests: replicas on real files, delivery between them, row dumps. */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import type { Change } from "../src/replica/change.js";
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

/** A random subset of the sender's whole log, shuffled, some changes twice, in random batches. */
export function gossip(from: Replica, to: Replica, seed: number): void {
  const random = rng(seed);
  const all = from.changesSince("0", { limit: 100_000 }).changes;
  const picked = all.filter(() => random() < 0.7);
  for (let i = Math.floor(random() * 3); i > 0 && all.length > 0; i--) {
    picked.push(all[Math.floor(random() * all.length)] as Change);
  }
  deliver(to, shuffle(picked, random), random);
}

/**
 * Paged, origin-filtered pulls between every pair until a round moves nothing.
 * With `bySource`, each batch is applied as coming from its sender and each
 * pull leaves out what the puller sent (as SyncManager and the hub do).
 */
export function syncToQuiescence(replicas: Replica[], seed: number, bySource: boolean): void {
  const random = rng(seed);
  const cursors = new Map<string, string>();
  for (let round = 0; round < 50; round++) {
    let moved = 0;
    for (const to of shuffle(replicas, random)) {
      for (const from of replicas) {
        if (from === to) continue;
        const id = `${from.nodeId}>${to.nodeId}`;
        let cursor = cursors.get(id) ?? "0";
        const pages: Change[] = [];
        for (;;) {
          const page = from.changesSince(cursor, {
            limit: 1 + Math.floor(random() * 7),
            excludeOrigin: to.nodeId,
            ...(bySource ? { excludeSource: to.nodeId } : {}),
          });
          pages.push(...page.changes);
          cursor = page.cursor;
          if (!page.hasMore) break;
        }
        cursors.set(id, cursor);
        moved += pages.length;
        const batch = random() < 0.5 ? shuffle(pages, random) : pages;
        deliver(to, batch, random, 8, bySource ? from.nodeId : undefined);
      }
    }
    if (moved === 0) return;
  }
  throw new Error("no quiescence after 50 rounds");
}
