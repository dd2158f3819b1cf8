/**
 * Logging: pino, one JSON object per line on stdout. Writes are synchronous
 * so a daemon that exits right after its last line (a forced stop, a failed
 * start) never loses it; the daemon logs a few lines per request at most.
 * pino is loaded on the first createLogger, not on import: the library and
 * the CLI's other commands import this module but never log.
 */
import { createRequire } from "node:module";
import type { DestinationStream, Level, Logger } from "pino";
import { InvalidArgumentError } from "./errors.js";

export type { Logger } from "pino";
export type LogLevel = Level | "silent";
export const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; defaults to stdout (fd 1). */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  if (!LOG_LEVELS.includes(level)) {
    throw new InvalidArgumentError("level", `must be one of ${LOG_LEVELS.join(", ")}, got ${String(level)}`);
  }
  const { pino } = createRequire(import.meta.url)("pino") as typeof import("pino");
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
