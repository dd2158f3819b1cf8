/**
 * `tidewire vacuum <db> [--full] [--step <pages>] [--json]`: give a database's
 * free pages back to the file system.
 *
 * Contract: on a file with incremental auto-vacuum (every file tidewire
 * created) it frees the pages in bounded steps, each a short write, so it can
 * run beside the daemon and applications (see src/storage.ts). On a file
 * without it (made by an older tidewire or another program) that is
 * impossible; it fails (exit 1) saying how much is free and what to run:
 * `--full`, which sets incremental auto-vacuum and rewrites the whole file
 * (VACUUM) — holding the write lock throughout and needing free disk as large
 * as the file, so for when nothing else is using it. A file that is not a
 * tidewire database is refused and left alone.
 */
import type { Command } from "commander";
import { TidewireError } from "../errors.js";
import { convertToIncremental, reclaimFreePages, type StorageStats, storageStats } from "../storage.js";
import { openDatabase, positiveInt, printJson, printText } from "./io.js";

interface VacuumFlags {
  full?: boolean;
  step?: number;
  json?: boolean;
}

export function registerVacuum(program: Command): void {
  program
    .command("vacuum")
    .description("return a database's free pages to the file system (the file shrinks)")
    .argument("<db>", "the database file (it must exist)")
    .option(
      "--full",
      "rewrite the whole file (VACUUM) and turn on incremental auto-vacuum; stop the daemon first",
    )
    .option("--step <pages>", "free at most this many pages per write (default 512)", positiveInt)
    .option("--json", "print one JSON document on stdout")
    .action(async (db: string, flags: VacuumFlags) => {
      const store = openDatabase(db, true);
      try {
        const stats = storageStats(store);
        if (flags.full) {
          const { before, after } = convertToIncremental(store);
          if (flags.json) printJson({ ok: true, mode: "full", before, after });
          else
            printText(
              `rewrote ${store.path}: ${size(before)} -> ${size(after)}; incremental auto-vacuum is on`,
            );
          return;
        }
        if (stats.autoVacuum === "none")
          throw new TidewireError(
            `${store.path} has no incremental auto-vacuum, so its ${stats.freePages} free pages (${mib(stats.freeBytes)}) can only be returned by rewriting it: stop the daemon and applications using it and run \`tidewire vacuum ${db} --full\` (it needs ${mib(stats.sizeBytes)} of free disk)`,
            "ERR_NO_AUTO_VACUUM",
          );
        const r = await reclaimFreePages(store, { pagesPerStep: flags.step });
        if (flags.json) printJson({ ok: true, mode: "incremental", ...r });
        else
          printText(
            stats.autoVacuum === "full"
              ? `${store.path} has full auto-vacuum: SQLite returns free pages at every commit; nothing to do (${size(stats)})`
              : `returned ${r.pagesFreed} free pages in ${r.steps} steps (longest ${r.longestStepMs.toFixed(1)} ms): ${size(r.before)} -> ${size(r.after)}${r.stoppedBy === "busy" ? "; stopped: another program holds the write lock, run it again" : ""}`,
          );
      } finally {
        store.close();
      }
    });
}

function size(s: StorageStats): string {
  return `${mib(s.sizeBytes)} (${s.freePages} pages free)`;
}

function mib(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(2)} MiB`;
}
