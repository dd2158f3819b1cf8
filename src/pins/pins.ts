/**
 * Pins: the pins of one database — its blob files (PinStore) and the
 * declared columns that reference them (PinReferences) — and their garbage
 * collection.
 *
 * Contract: `collect({ graceMs })` deletes the pins that no declared column
 * references and whose file is older than the grace period (default 24 h),
 * and temp files older than it. The grace protects a pin written just before
 * the row that references it (and one downloaded for a row still in
 * flight). With no column declared, nothing is collected: the database then
 * cannot tell what is referenced, and deleting every pin would be a guess.
 * Files are listed before references are read, so a pin stored meanwhile is
 * young and kept; references are read and pins deleted in one write
 * transaction, so no reference to an old pin is committed in between.
 */

import type { Store } from "../store.js";
import { checkDuration } from "../validate.js";
import { PinStore, type PinStoreOptions } from "./pin-store.js";
import { PinReferences } from "./references.js";

export const DEFAULT_GRACE_MS = 24 * 3_600_000;

export interface CollectResult {
  /** Hashes of the pins deleted. */
  deleted: string[];
  bytesFreed: number;
  /** Pins left in place. */
  kept: number;
  tempFilesRemoved: number;
  /** Set when nothing was collected on purpose. */
  skipped?: string;
}

export class Pins {
  readonly blobs: PinStore;
  readonly references: PinReferences;

  constructor(
    readonly store: Store,
    options: PinStoreOptions & { blobs?: PinStore } = {},
  ) {
    this.blobs = options.blobs ?? PinStore.beside(store.path, options);
    this.references = new PinReferences(store);
  }

  declare(table: string, column: string): boolean {
    return this.references.declare(table, column);
  }

  undeclare(table: string, column: string): boolean {
    return this.references.undeclare(table, column);
  }

  referenced(): Set<string> {
    return this.references.referenced();
  }

  /** Hashes referenced by a declared column and not stored here, sorted. */
  missing(): string[] {
    return [...this.referenced()].filter((h) => !this.blobs.has(h)).sort();
  }

  async collect(options: { graceMs?: number; now?: number } = {}): Promise<CollectResult> {
    const graceMs = checkDuration("graceMs", options.graceMs ?? DEFAULT_GRACE_MS);
    const now = options.now ?? Date.now();
    const files = await this.blobs.list();
    const tempFilesRemoved = await this.blobs.sweepTemp(graceMs, now);
    if (this.references.columns().length === 0) {
      return {
        deleted: [],
        bytesFreed: 0,
        kept: files.length,
        tempFilesRemoved,
        skipped: "no column is declared to reference pins (pins.declare), so none is known to be unused",
      };
    }
    const deleted: string[] = [];
    let bytesFreed = 0;
    // References are read and the unreferenced deleted under the write lock: a row naming an
    // old pin cannot be committed between the read and the unlink (it waits, then sees it gone).
    this.store.write(() => {
      const referenced = this.referenced();
      for (const f of files) {
        if (referenced.has(f.hash) || now - f.modifiedAt < graceMs) continue;
        // Stored again since it was listed (a new reference on its way): young again, kept.
        const current = this.blobs.info(f.hash);
        if (!current || now - current.modifiedAt < graceMs) continue;
        if (this.blobs.delete(f.hash)) {
          deleted.push(f.hash);
          bytesFreed += f.size;
        }
      }
    }, "pins");
    return { deleted, bytesFreed, kept: files.length - deleted.length, tempFilesRemoved };
  }
}
