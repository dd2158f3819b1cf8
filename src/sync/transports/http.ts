/**
 * HttpTransport: protocol v1 over HTTP to a hub (`tidewire serve`), and live
 * notification over a WebSocket (GET /v1/live).
 *
 * Contract: each call is one POST with a JSON body and a bearer token, sent
 * with Node's fetch, whose pool keeps connections alive between calls. A call
 * that gets no answer in `timeoutMs` is aborted. A call that fails to connect
 * or loses its connection (refused, reset, closed early) is retried up to
 * `retries` times with a doubling pause: every call is safe to repeat, since
 * applying a batch twice changes nothing. A 503 (the hub's database locked by
 * another program) is retried as often, after its Retry-After (10 s at most). An answer is parsed with the
 * protocol's schemas; a hub refusal becomes a HubRefusedError with the hub's
 * code and message. `subscribe` keeps a WebSocket open, reconnecting with
 * backoff, and reports a change notice (and every reconnection, since a
 * notice may have been missed while it was down).
 */
import type WebSocket from "ws";
import { exponentialDelay } from "../../backoff.js";
import { InvalidArgumentError, TidewireError } from "../../errors.js";
import { loadOptional } from "../../optional-deps.js";
import { injectHeaders } from "../../trace.js";
import { checkNumber } from "../../validate.js";
import {
  errorResponse,
  type HandshakeRequest,
  type HandshakeResponse,
  handshakeResponse,
  liveMessage,
  ProtocolError,
  type PullRequest,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  parse,
  pullResponse,
  pushResponse,
} from "../protocol.js";
import { HubRefusedError, hubRefusal, type Transport } from "../transport.js";

export interface HttpTransportOptions {
  /** Bearer token for the hub. */
  token?: string;
  /** Abort a call that has not been answered after this long, ms (default 30 000). */
  timeoutMs?: number;
  /** Retries after a connection error (default 3). */
  retries?: number;
  /** Pause before the first retry, ms, doubled each time (default 100). */
  retryDelayMs?: number;
}

/** A call could not be carried to the hub and back. */
export class TransportError extends TidewireError {
  constructor(message: string, code = "ERR_TRANSPORT") {
    super(message, code);
    this.name = "TransportError";
  }
}

const CONNECTION_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
]);

export class HttpTransport implements Transport {
  readonly peer: string;
  private readonly base: URL;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly sockets = new Set<{ close(): void }>();

  constructor(url: string | URL, options: HttpTransportOptions = {}) {
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new InvalidArgumentError("url", `is not a URL: ${JSON.stringify(String(url))}`);
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new InvalidArgumentError("url", `must be http: or https:, got ${base.protocol}`);
    }
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.base = base;
    this.peer = base.origin;
    if (options.token !== undefined && (typeof options.token !== "string" || options.token === "")) {
      throw new InvalidArgumentError("token", "must be a non-empty string");
    }
    this.token = options.token;
    this.timeoutMs = checkNumber("timeoutMs", options.timeoutMs ?? 30_000, 1);
    this.retries = checkNumber("retries", options.retries ?? 3, 0);
    this.retryDelayMs = checkNumber("retryDelayMs", options.retryDelayMs ?? 100, 0);
  }

  handshake(request: HandshakeRequest): Promise<HandshakeResponse> {
    return this.post("v1/handshake", request, handshakeResponse, "handshake answer");
  }

  pull(request: PullRequest): Promise<PullResponse> {
    return this.post("v1/pull", request, pullResponse, "pull answer");
  }

  push(request: PushRequest): Promise<PushResponse> {
    return this.post("v1/push", request, pushResponse, "push answer");
  }

  subscribe(buckets: string[], onChanges: (buckets: string[]) => void): () => void {
    const url = new URL("v1/live", this.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("buckets", buckets.join(","));
    let closed = false;
    let socket: WebSocket | null = null;
    let timer: NodeJS.Timeout | null = null;
    // Reconnections since the socket was last open: 250 ms, doubling to 10 s.
    let failures = 0;
    const connect = () => {
      if (closed) return;
      // ws is imported on the first subscribe, not when tidewire loads. Without it the live
      // socket is only a speed-up lost: polling still syncs, so a warning says what to install.
      loadOptional("ws", "Live notification from a hub", () => import("ws")).then(
        ({ default: Socket }) => open(Socket),
        (err: Error) => process.emitWarning(err.message, { code: (err as TidewireError).code }),
      );
    };
    const open = (Socket: typeof WebSocket) => {
      if (closed) return;
      const ws = new Socket(url, {
        headers: this.token ? { authorization: `Bearer ${this.token}` } : {},
        handshakeTimeout: this.timeoutMs,
      });
      socket = ws;
      ws.on("open", () => {
        failures = 0;
        onChanges(buckets);
      });
      ws.on("message", (data) => {
        try {
          const msg = parse(liveMessage, JSON.parse(String(data)), "live notice");
          onChanges(msg.buckets);
        } catch {
          // A garbled notice costs only its own pull: the next poll catches up.
        }
      });
      ws.on("error", () => {});
      ws.on("close", () => {
        if (closed) return;
        timer = setTimeout(connect, exponentialDelay(failures++, { baseMs: 250, maxMs: 10_000 }));
        timer.unref();
      });
    };
    const handle = {
      close: () => {
        closed = true;
        if (timer) clearTimeout(timer);
        socket?.terminate();
        this.sockets.delete(handle);
      },
    };
    this.sockets.add(handle);
    connect();
    return handle.close;
  }

  async close(): Promise<void> {
    for (const s of [...this.sockets]) s.close();
  }

  private async post<T>(path: string, body: unknown, schema: Parameters<typeof parse>[0], what: string) {
    const url = new URL(path, this.base);
    const payload = JSON.stringify(body);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
    };
    // The hub's request span joins this cycle's trace (a no-op while tracing is off).
    injectHeaders(headers);
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      let text: string;
      try {
        res = await fetch(url, {
          method: "POST",
          headers,
          body: payload,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        const code = errorCode(err);
        if (code === "TimeoutError") {
          throw new TransportError(
            `${url.pathname}: no answer from ${this.peer} in ${this.timeoutMs} ms`,
            "ERR_TIMEOUT",
          );
        }
        if (attempt < this.retries && code !== null && CONNECTION_ERRORS.has(code)) {
          await new Promise((r) => setTimeout(r, exponentialDelay(attempt, { baseMs: this.retryDelayMs })));
          continue;
        }
        throw new TransportError(
          `${url.pathname}: cannot reach ${this.peer}: ${describe(err)}`,
          code ?? "ERR_TRANSPORT",
        );
      }
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new ProtocolError(
          `${url.pathname}: ${this.peer} answered ${res.status} with a body that is not JSON`,
        );
      }
      if (res.status === 503 && attempt < this.retries) {
        // The hub is up but cannot write now (another program holds its lock): wait as it asks, briefly.
        await new Promise((r) =>
          setTimeout(r, retryAfterMs(res, exponentialDelay(attempt, { baseMs: this.retryDelayMs }))),
        );
        continue;
      }
      if (!res.ok) {
        const e = errorResponse.safeParse(doc);
        throw e.success
          ? hubRefusal(res.status, e.data.error.code, e.data.error.message)
          : new HubRefusedError(
              res.status,
              "ERR_REMOTE",
              `${url.pathname}: ${this.peer} answered ${res.status}`,
            );
      }
      return parse(schema, doc, what) as T;
    }
  }
}

/** A 503's Retry-After in ms (seconds form only), at least `floorMs`, at most 10 s so a call never stalls long. */
function retryAfterMs(res: Response, floorMs: number): number {
  const seconds = Number(res.headers.get("retry-after"));
  const asked = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
  return Math.min(10_000, Math.max(floorMs, asked));
}

function errorCode(err: unknown): string | null {
  const e = err as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  if (e?.name === "TimeoutError") return "TimeoutError";
  return e?.cause?.code ?? e?.code ?? null;
}

function describe(err: unknown): string {
  const e = err as Error & { cause?: Error };
  return e.cause?.message ? `${e.message} (${e.cause.message})` : e.message;
}
