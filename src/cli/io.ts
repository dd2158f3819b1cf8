/**
 * The CLI's terminal input and output: parsers for option values (a bad value
 * is a usage error, exit 2, reported by commander) and the two ways a command
 * prints a result: one JSON document for --json, or text for people.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Option, InvalidArgumentError as UsageError } from "commander";
import ms from "ms";
import { StoreError } from "../errors.js";
import { hasTidewireSchema, SCHEMA_VERSION } from "../migrations.js";
import { openStore, type Store } from "../store.js";

/** The absolute path of a database a command reads; a command never creates one that is not there. */
export function existingDatabase(db: string): string {
  const path = resolve(db);
  if (!existsSync(path)) throw new StoreError(`no database at ${path}`, "ERR_NO_DATABASE");
  return path;
}

/**
 * Opens an existing tidewire database for a command. The file is first opened
 * read-only: one without tidewire's tables is refused, so a mistyped path to
 * another application's SQLite file is never given tidewire's schema or
 * switched to WAL. Only a command that writes (`write`) reopens it read-write.
 */
export function openDatabase(db: string, write: boolean): Store {
  const path = existingDatabase(db);
  const store = openStore(path, { readonly: true });
  if (!hasTidewireSchema(store.db)) {
    store.close();
    throw new StoreError(
      `${path} is not a tidewire database (it has no tw_jobs table); \`tidewire serve --db\` or \`tidewire init\` makes one`,
      "ERR_NOT_TIDEWIRE",
    );
  }
  if (!write) return upToDate(store);
  store.close();
  return openStore(path);
}

/**
 * A read-only store of a tidewire file an older tidewire wrote lacks columns
 * this one reads (its queue would not even prepare): reopen it read-write, which
 * migrates it. Any other store is returned as it is.
 */
export function upToDate(store: Store): Store {
  const behind = (store.db.pragma("user_version", { simple: true }) as number) < SCHEMA_VERSION;
  if (!store.readonly || !behind || !hasTidewireSchema(store.db)) return store;
  store.close();
  return openStore(store.path);
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError("Expected a positive integer.");
  }
  return n;
}

export function nonNegativeInt(value: string): number {
  return value === "0" ? 0 : positiveInt(value);
}

export function portNumber(value: string): number {
  const n = nonNegativeInt(value);
  if (n > 65_535) throw new UsageError("Expected a port number from 0 to 65535.");
  return n;
}

/** A number and its unit: what every duration flag takes, and nothing else. */
const DURATION = /^\d+(?:\.\d+)?(?:ms|s|m|h|d)$/;

/**
 * Every duration flag's parser: `500ms`, `30s`, `5m`, `12h`, `7d`, in whole
 * milliseconds. A bare number is refused rather than guessed at: `--interval
 * 60` meant seconds in one release and would be milliseconds to `ms`.
 */
export function duration(value: string): number {
  if (/^\d+(?:\.\d+)?$/.test(value))
    throw new UsageError(
      `Expected a duration with its unit, such as ${value}s or ${value}ms (units: ms, s, m, h, d).`,
    );
  if (!DURATION.test(value)) throw new UsageError("Expected a duration such as 500ms, 30s, 5m, 12h or 7d.");
  return Math.round(ms(value as ms.StringValue));
}

/** A duration of at least 1 ms (an interval: 0 would run without pause), rounded to whole ms. */
export function positiveDuration(value: string): number {
  const n = duration(value);
  if (n < 1) throw new UsageError("Expected a duration of at least 1ms, such as 30s or 5m.");
  return n;
}

/** A repeatable option's values, in the order given. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--max-drift <duration>` of serve, sync and clock reset: the Replica's maxDriftMs. */
export function maxDriftOption(): Option {
  return new Option(
    "--max-drift <duration>",
    "refuse changes stamped further ahead of this machine's time than this, e.g. 60s, 5m (default 60s)",
  ).argParser(duration);
}

export function nonEmpty(value: string): string {
  if (value.trim() === "") throw new UsageError("Expected a non-empty name.");
  return value;
}

export function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

export function printText(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Left-aligned columns two spaces apart; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
