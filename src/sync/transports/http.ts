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
 * another program) is retried as often, after its Retry-After (10 s at most;
 * see call-policy.ts, shared with WebSocketTransport). An answer is parsed with the
 * protocol's schemas; a hub refusal becomes a HubRefusedError with the hub's
 * code and message. `subscribe` keeps a WebSocket open, reconnecting with
 * backoff, and reports a change notice (and every reconnection, since a
 * notice may have been missed while it was down).
 */
import type WebSocket from "ws";
import { exponentialDelay } from "../../backoff.js";
import type { TidewireError } from "../../errors.js";
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
import {
  bearer,
  type CallOptions,
  type CallSettings,
  callSettings,
  describe,
  errorCode,
  hubBase,
  isConnectionError,
  LIVE_RECONNECT,
  retryPauseMs,
  TransportError,
} from "./call-policy.js";

export type HttpTransportOptions = CallOptions;

export { TransportError };

export class HttpTransport implements Transport {
  readonly peer: string;
  private readonly base: URL;
  private readonly settings: CallSettings;
  private readonly sockets = new Set<{ close(): void }>();

  constructor(url: string | URL, options: HttpTransportOptions = {}) {
    this.base = hubBase(url);
    this.peer = this.base.origin;
    this.settings = callSettings(options);
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
        headers: bearer(this.settings.token),
        handshakeTimeout: this.settings.timeoutMs,
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
        timer = setTimeout(connect, exponentialDelay(failures++, LIVE_RECONNECT));
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
      ...bearer(this.settings.token),
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
          signal: AbortSignal.timeout(this.settings.timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        const code = errorCode(err);
        if (code === "TimeoutError") {
          throw new TransportError(
            `${url.pathname}: no answer from ${this.peer} in ${this.settings.timeoutMs} ms`,
            "ERR_TIMEOUT",
          );
        }
        if (attempt < this.settings.retries && isConnectionError(code)) {
          await new Promise((r) => setTimeout(r, retryPauseMs(this.settings, attempt)));
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
      if (res.status === 503 && attempt < this.settings.retries) {
        // The hub is up but cannot write now (another program holds its lock): wait as it asks, briefly.
        const asked = Number(res.headers.get("retry-after"));
        await new Promise((r) => setTimeout(r, retryPauseMs(this.settings, attempt, asked)));
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
