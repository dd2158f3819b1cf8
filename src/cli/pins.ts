/**
 * `tidewire pins add|get|list|collect|declare <db>`: the pins beside a
 * database file (`<db>.pins`), from a shell.
 *
 * Contract: the database must already exist, as for `tidewire jobs`. `add`
 * prints the pin's hash alone (so `H=$(tidewire pins add app.db f)` works);
 * `get` writes the pin to --out, or to stdout when there is no --out (then
 * --json is a usage error: stdout carries the bytes). An absent pin or file
 * is a failure at run time (exit 1); a malformed hash or option a usage
 * error (exit 2).
 */
import { createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { type Command, Option } from "commander";
import ms from "ms";
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { DEFAULT_GRACE_MS, Pins } from "../pins/pins.js";
import { commandGroup, verb } from "./group.js";
import { duration, openDatabase, printJson, printText, table } from "./io.js";

interface Common {
  json?: boolean;
}

export function registerPins(program: Command): void {
  const pins = commandGroup(
    program,
    "pins",
    "content-addressed blobs kept beside a database file (<db>.pins)",
  );

  verb(pins, "add", "store a file as a pin and print its sha256")
    .argument("<file>", "the file to store")
    .action(async (db: string, file: string, flags: Common) => {
      const path = resolve(file);
      if (!existsSync(path) || !statSync(path).isFile()) {
        throw new TidewireError(`no file at ${path}`, "ERR_NO_FILE");
      }
      const put = await withPins(db, (p) => p.blobs.put(createReadStream(path)));
      if (flags.json) printJson({ ok: true, ...put });
      else printText(put.hash);
    });

  verb(pins, "get", "write a pin to --out, or to stdout")
    .argument("<hash>", "the pin's sha256 (64 lowercase hex digits)")
    .option("--out <file>", "write the pin to this file instead of stdout")
    .action(async (db: string, hash: string, flags: Common & { out?: string }) => {
      if (flags.json && flags.out === undefined) {
        throw new InvalidArgumentError("--json", "needs --out: without it stdout carries the pin's bytes");
      }
      const size = await withPins(db, async (p) => {
        const stream = p.blobs.open(hash);
        const bytes = p.blobs.size(hash);
        await pipeline(
          stream,
          flags.out === undefined ? process.stdout : createWriteStream(resolve(flags.out)),
          {
            end: flags.out !== undefined,
          },
        );
        return bytes;
      });
      if (flags.json) printJson({ ok: true, hash, size, out: resolve(flags.out!) });
    });

  verb(pins, "list", "list the pins, by hash").action(async (db: string, flags: Common) => {
    const list = await withPins(db, (p) => p.blobs.list());
    if (flags.json) {
      printJson({ ok: true, pins: list });
      return;
    }
    if (list.length === 0) printText("no pins");
    else
      printText(
        table(
          ["HASH", "SIZE", "MODIFIED"],
          list.map((p) => [p.hash, String(p.size), `${new Date(p.modifiedAt).toISOString().slice(0, 19)}Z`]),
        ),
      );
  });

  verb(pins, "collect", "delete pins no declared column references, once older than --grace")
    .addOption(
      new Option("--grace <duration>", "keep pins written more recently than this, e.g. 24h, 30m")
        .argParser(duration)
        .default(DEFAULT_GRACE_MS, ms(DEFAULT_GRACE_MS)),
    )
    .action(async (db: string, flags: Common & { grace: number }) => {
      const r = await withPins(db, (p) => p.collect({ graceMs: flags.grace }));
      if (flags.json) printJson({ ok: true, graceMs: flags.grace, ...r });
      else if (r.skipped) printText(`nothing collected: ${r.skipped}`);
      else
        printText(
          `deleted ${r.deleted.length} unreferenced pin${r.deleted.length === 1 ? "" : "s"} (${r.bytesFreed} bytes), kept ${r.kept}`,
        );
    });

  verb(pins, "declare", "declare that a column's cells may reference pins")
    .argument("<table>", "the table")
    .argument("<column>", "the column holding pin hashes")
    .option("--undo", "forget the declaration instead")
    .action(async (db: string, tbl: string, column: string, flags: Common & { undo?: boolean }) => {
      const changed = await withPins(db, (p) =>
        flags.undo ? p.undeclare(tbl, column) : p.declare(tbl, column),
      );
      if (flags.json) printJson({ ok: true, table: tbl, column, declared: !flags.undo, changed });
      else printText(`${tbl}.${column} ${flags.undo ? "no longer references" : "references"} pins`);
    });
}

/** Read-write: a database from before pins gets its table (migration 5), and most commands write. */
async function withPins<T>(db: string, fn: (pins: Pins) => T | Promise<T>): Promise<T> {
  const store = openDatabase(db, true);
  try {
    return await fn(new Pins(store));
  } finally {
    store.close();
  }
}
