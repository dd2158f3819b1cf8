/**
 * DownloadPins: fetches the pins this database references and lacks from
 * the peers that have them, over HTTP (`GET {source}/v1/pins/{hash}`).
 *
 * Contract: every body is streamed through `putExpecting`, so bytes that do
 * not hash to the pin's hash are refused and nothing is stored. For each
 * wanted pin the sources are tried in order until one delivers it verified;
 * a 404 means "not there", anything else (a refused connection, a non-2xx
 * answer, a mismatch, no byte for `idleTimeoutMs`) is a failure that is
 * remembered. The job handler throws when any wanted pin is still missing at
 * the end, naming each with its sources' errors, so the queue retries the
 * job with backoff; pins stored meanwhile are not fetched again. A payload
 * that can never work (not `{ hashes?: string[] }` of pin hashes) fails the
 * job at once, without retries.
 */
import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import { InvalidArgumentError } from "../errors.js";
import { pinBytesDownloaded, pinMismatches, pinsDownloaded } from "../metrics.js";
import { type Handler, UnrecoverableError } from "../queue/worker.js";
import { checkInteger } from "../validate.js";
import { checkPinHash, PinMismatchError } from "./errors.js";
import type { Pins } from "./pins.js";

export const DOWNLOAD_PINS = "DownloadPins";

/** A peer that serves pins: its base URL (the daemon's) and the bearer token it wants. */
export interface PinSource {
  url: string;
  token?: string;
}

export interface DownloadPinsPayload {
  /** The pins to fetch; absent: every pin a declared column references and this store lacks. */
  hashes?: string[];
}

export interface DownloadOptions {
  /** Asked at each run, so the list can follow a peer registry. */
  sources: () => readonly PinSource[];
  /** A fetch that waits this long for headers or for the next chunk is abandoned (default 30 s). */
  idleTimeoutMs?: number;
}

export interface DownloadReport {
  /** Pins fetched and stored now. */
  downloaded: Array<{ hash: string; size: number; source: string }>;
  /** Pins wanted that were already here. */
  present: number;
  /** Pins wanted and still missing, with what each source said. */
  failed: Array<{ hash: string; errors: string[] }>;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** Fetches `hashes` (default: every missing pin) from `sources`; never throws for a failed fetch. */
export async function downloadPins(
  pins: Pins,
  sources: readonly PinSource[],
  options: { hashes?: string[]; idleTimeoutMs?: number } = {},
): Promise<DownloadReport> {
  const idleMs = checkInteger("idleTimeoutMs", options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 1);
  const checked = sources.map((s, i) => checkSource(`sources[${i}]`, s));
  const wanted = options.hashes
    ? [...new Set(options.hashes.map((h, i) => checkPinHash(`hashes[${i}]`, h)))]
    : pins.missing();
  const report: DownloadReport = { downloaded: [], present: 0, failed: [] };
  for (const hash of wanted) {
    if (pins.blobs.has(hash)) {
      report.present++;
      continue;
    }
    const errors: string[] = [];
    if (checked.length === 0) errors.push("no source to fetch it from");
    for (const source of checked) {
      try {
        const size = await fetchPin(pins, hash, source, idleMs);
        if (size === null) {
          errors.push(`${source.url}: not there (404)`);
          continue;
        }
        pinsDownloaded.inc();
        pinBytesDownloaded.inc(size);
        report.downloaded.push({ hash, size, source: source.url });
        errors.length = 0;
        break;
      } catch (err) {
        if (err instanceof PinMismatchError) pinMismatches.labels("download").inc();
        errors.push(`${source.url}: ${describe(err)}`);
      }
    }
    if (errors.length > 0) report.failed.push({ hash, errors });
  }
  return report;
}

/** The `DownloadPins` job handler: a run that leaves a wanted pin missing throws, so the job is retried. */
export function downloadPinsHandler(pins: Pins, options: DownloadOptions): Handler<DownloadPinsPayload> {
  if (typeof options?.sources !== "function") {
    throw new InvalidArgumentError("sources", "must be a function returning the sources to fetch pins from");
  }
  const idleTimeoutMs = checkInteger("idleTimeoutMs", options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 1);
  return async (job) => {
    let hashes: string[] | undefined;
    try {
      hashes = payloadHashes(job.payload);
    } catch (err) {
      throw new UnrecoverableError((err as Error).message);
    }
    const report = await downloadPins(pins, options.sources(), { hashes, idleTimeoutMs });
    if (report.failed.length > 0) {
      const first = report.failed[0]!;
      throw new Error(
        `${report.failed.length} pin${report.failed.length === 1 ? "" : "s"} still missing ` +
          `(${report.downloaded.length} downloaded); ${first.hash}: ${first.errors.join("; ")}`,
      );
    }
    return report;
  };
}

function payloadHashes(payload: unknown): string[] | undefined {
  if (payload === null || payload === undefined) return undefined;
  if (typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidArgumentError("payload", "must be an object { hashes?: string[] }");
  }
  const hashes = (payload as DownloadPinsPayload).hashes;
  if (hashes === undefined) return undefined;
  if (!Array.isArray(hashes))
    throw new InvalidArgumentError("payload.hashes", "must be an array of pin hashes");
  return hashes.map((h, i) => checkPinHash(`payload.hashes[${i}]`, h));
}

function checkSource(argument: string, source: PinSource): PinSource {
  let url: URL | undefined;
  try {
    url = new URL(source?.url);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new InvalidArgumentError(`${argument}.url`, `must be an http(s) URL, got ${String(source?.url)}`);
  }
  if (source.token !== undefined && typeof source.token !== "string") {
    throw new InvalidArgumentError(`${argument}.token`, "must be a string");
  }
  return source;
}

/** undici says "fetch failed" and keeps the reason (ECONNREFUSED …) in `cause`. */
function describe(err: unknown): string {
  const e = err as Error & { cause?: { message?: string; code?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause && !e.message.includes(cause) ? `${e.message} (${cause})` : e.message;
}

export function pinUrl(base: string, hash: string): string {
  return new URL(`v1/pins/${hash}`, base.endsWith("/") ? base : `${base}/`).toString();
}

/** Stores the pin from `source`, verified; null when the source does not have it. */
async function fetchPin(pins: Pins, hash: string, source: PinSource, idleMs: number): Promise<number | null> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const idle = () => {
    clearTimeout(timer);
    timer = setTimeout(() => abort.abort(new Error(`no data for ${idleMs} ms; abandoned`)), idleMs);
  };
  idle();
  try {
    const headers: Record<string, string> = {};
    if (source.token !== undefined) headers.authorization = `Bearer ${source.token}`;
    const res = await fetch(pinUrl(source.url, hash), { headers, signal: abort.signal });
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => "");
      throw new Error(`HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`);
    }
    const body = Readable.fromWeb(res.body as ReadableStream<Uint8Array>);
    async function* watched() {
      for await (const chunk of body) {
        idle();
        yield chunk as Uint8Array;
      }
    }
    return (await pins.blobs.putExpecting(hash, watched())).size;
  } catch (err) {
    // A timeout surfaces as an AbortError whose cause is the reason given above.
    const reason = abort.signal.aborted ? (abort.signal.reason as Error) : null;
    throw reason && !(err instanceof PinMismatchError) ? reason : err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}
