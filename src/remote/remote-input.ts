/**
 * The input of a remote target's registration, checked and brought to the
 * form the registry stores: its id (given or derived from the URL), its URL
 * with file paths resolved, D1's options, name lists.
 *
 * Contract: each check answers bad input with an InvalidArgumentError naming
 * the argument, and reads or writes nothing.
 */
import { basename, extname, resolve } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import { checkNodeId, toNodeId } from "../node-id.js";
import { checkBuckets } from "./push-options.js";
import type { Backend } from "./target.js";
import type { D1Options } from "./targets/d1.js";

/** A remote's id: a node id's characters (so never a "/"), 1 to 64 of them. */
export function checkRemoteId(id: unknown): string {
  return checkNodeId("id", id);
}

/** File paths resolved against this process's directory, which the daemon does not share. */
export function normalizeUrl(url: unknown): string {
  if (typeof url !== "string" || url.trim() === "")
    throw new InvalidArgumentError(
      "url",
      "must be a URL: sqlite:PATH, postgres://…, libsql://…, file:PATH or d1:NAME",
    );
  if (url.startsWith("sqlite:") && url.length > "sqlite:".length) return `sqlite:${resolve(url.slice(7))}`;
  if (url.startsWith("file:") && !url.startsWith("file://") && url.length > "file:".length) {
    const [path, query] = splitOnce(url.slice(5), "?");
    return `file:${resolve(path)}${query === undefined ? "" : `?${query}`}`;
  }
  return url;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const at = s.indexOf(sep);
  return at < 0 ? [s, undefined] : [s.slice(0, at), s.slice(at + 1)];
}

/** D1 runs wrangler in the configuration's folder: without d1.config the daemon would use its own. */
export function checkD1(url: unknown, d1: D1Options | undefined): D1Options | null {
  const isD1 = typeof url === "string" && url.startsWith("d1:");
  if (!isD1) {
    if (d1 !== undefined) throw new InvalidArgumentError("d1", "applies to d1:NAME targets only");
    return null;
  }
  if (d1 === null || typeof d1 !== "object" || typeof d1.config !== "string" || d1.config === "")
    throw new InvalidArgumentError(
      "config",
      "a registered d1:NAME target needs the wrangler configuration file (d1.config; --d1-config on the command line)",
    );
  if (d1.local && d1.remote) throw new InvalidArgumentError("d1", "local and remote exclude each other");
  return { ...(d1.remote ? { remote: true } : { local: true }), config: resolve(d1.config) };
}

export function checkNames(argument: string, names: unknown): string[] {
  return [...new Set(checkBuckets(names, argument))].sort();
}

/**
 * The id a target gets when none is given: its backend and the name that
 * tells it apart (file, database and schema, host, D1 database), in node-id
 * characters.
 */
export function deriveId(backend: Backend, target: string): string {
  let name: string;
  if (backend === "sqlite") name = stem(target.slice("sqlite:".length));
  else if (backend === "d1") name = target.slice("d1:".length).split("?")[0] ?? "";
  else if (target.startsWith("file:")) name = stem(target.slice("file:".length).split("?")[0] ?? "");
  else {
    const u = new URL(target);
    const schema = u.searchParams.get("schema");
    name =
      backend === "postgres"
        ? `${u.pathname.replace(/^\/+/, "") || u.hostname}${schema && schema !== "public" ? `.${schema}` : ""}`
        : (u.hostname.split(".")[0] ?? u.hostname);
  }
  // A name of no usable characters leaves the backend alone.
  const raw = `${backend === "postgres" ? "pg" : backend}-${name}`;
  return toNodeId("id", raw);
}

function stem(path: string): string {
  const b = basename(path);
  return b.slice(0, b.length - extname(b).length) || b;
}
