/**
 * openTarget: the factory that picks a RemoteTarget adapter from a target's URL.
 *
 * Contract: only validates and never does I/O (an adapter connects on first
 * use); a bad URL or option is an InvalidArgumentError. Kept apart from
 * target.ts, which every adapter imports, so that no adapter depends on the
 * others through the interface's module.
 */
import { InvalidArgumentError } from "../errors.js";
import { checkObject } from "../validate.js";
import type { RemoteTarget } from "./target.js";
import { type D1Options, D1Target } from "./targets/d1.js";
import { LibsqlTarget } from "./targets/libsql.js";
import { PostgresTarget } from "./targets/postgres.js";
import { SqliteTarget } from "./targets/sqlite.js";

export interface TargetOptions {
  /** For `d1:NAME`: wrangler's --local / --remote / --config. */
  d1?: D1Options;
}

export function openTarget(url: unknown, options: TargetOptions = {}): RemoteTarget {
  if (typeof url !== "string" || url.trim() === "") {
    throw new InvalidArgumentError(
      "target",
      "must be a URL: sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME",
    );
  }
  checkObject("options", options);
  if (options.d1 !== undefined && !url.startsWith("d1:")) {
    throw new InvalidArgumentError(
      "target",
      "its options (local, remote, config) apply to d1:NAME targets only",
    );
  }
  if (url.startsWith("sqlite:")) return new SqliteTarget(url.slice("sqlite:".length));
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) return new PostgresTarget(url);
  if (
    url.startsWith("libsql://") ||
    url.startsWith("file:") ||
    url.startsWith("https://") ||
    url.startsWith("http://")
  ) {
    return new LibsqlTarget(url);
  }
  if (url.startsWith("d1:")) return new D1Target(url.slice("d1:".length), options.d1 ?? {});
  throw new InvalidArgumentError(
    "target",
    `unknown kind of target ${JSON.stringify(url.split(":")[0])}; use sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME`,
  );
}
