/**
 * WebSocketTransport: protocol v1 to a hub (`tidewire serve`) over one
 * WebSocket (GET /v1/ws), live notices included.
 *
 * Contract: the socket opens on the first call, with the bearer token at the
 * upgrade; an upgrade the hub refuses rejects the call with its refusal's
 * class (`hubRefusal`: HubAuthError for the token, ...). Each call is one
 * request frame with an id (sync/frames.ts) and resolves with the answer of
 * that id, parsed with the protocol's schemas, or rejects with the hub's
 * refusal as HTTP would (same status, code and class). A frame larger than
 * the hub takes closes the socket with 1009: the call is a 413
 * `ERR_BODY_TOO_LARGE`. A call not answered in `timeoutMs` is a
 * TransportError `ERR_TIMEOUT`. When the socket drops, the calls in flight
 * fail with `ERR_CONNECTION_CLOSED` and, like refused or reset connections
 * and 503s, are retried as HttpTransport retries (call-policy.ts) on a new
 * socket. `subscribe` sends "subscribe" on every socket it opens and reports
 * a notice for its buckets, and every reconnection (a notice may have been
 * missed); while a subscription is open a dropped socket is reopened with
 * backoff. The socket does not keep the process alive while no call waits.
 */
import type { Socket as NetSocket } from "node:net";
import type WebSocket from "ws";
import { exponentialDelay } from "../../backoff.js";
import { loadOptional } from "../../optional-deps.js";
import { type AnswerFrame, answerFrame, type FrameType } from "../frames.js";
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

export type WebSocketTransportOptions = CallOptions;

interface Subscription {
  buckets: string[];
  onChanges: (buckets: string[]) => void;
}

interface Pending {
  resolve: (frame: AnswerFrame) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class WebSocketTransport implements Transport {
  readonly peer: string;
  private readonly url: URL;
  private readonly settings: CallSettings;
  private connecting: Promise<Connection> | null = null;
  /** The socket `connecting` resolved to, while it is open. */
  private current: Connection | null = null;
  private readonly subscriptions = new Set<Subscription>();
  private reconnect: NodeJS.Timeout | null = null;
  /** Reopens failed in a row, for the backoff (the same curve as the HTTP live reconnect). */
  private reconnects = 0;
  private closed = false;

  /** `url` is the hub's, as for HttpTransport (http: or https:); the socket goes to its /v1/ws. */
  constructor(url: string | URL, options: WebSocketTransportOptions = {}) {
    const base = hubBase(url);
    this.peer = base.origin;
    this.url = new URL("v1/ws", base);
    this.url.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    this.settings = callSettings(options);
  }

  handshake(request: HandshakeRequest): Promise<HandshakeResponse> {
    return this.call("handshake", request, handshakeResponse, "handshake answer");
  }

  pull(request: PullRequest): Promise<PullResponse> {
    return this.call("pull", request, pullResponse, "pull answer");
  }

  push(request: PushRequest): Promise<PushResponse> {
    return this.call("push", request, pushResponse, "push answer");
  }

  subscribe(buckets: string[], onChanges: (buckets: string[]) => void): () => void {
    const sub = { buckets: [...buckets], onChanges };
    this.subscriptions.add(sub);
    // An open socket subscribes now; one being opened subscribes every subscription once it is open.
    if (this.current) this.subscribeOn(this.current, sub);
    else if (!this.connecting) this.open().catch(() => {});
    return () => {
      this.subscriptions.delete(sub);
      if (this.subscriptions.size === 0 && this.reconnect) clearTimeout(this.reconnect);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscriptions.clear();
    if (this.reconnect) clearTimeout(this.reconnect);
    const c = this.connecting;
    this.connecting = null;
    this.current = null;
    (await c?.catch(() => null))?.close();
  }

  private async call<S extends Parameters<typeof parse>[0]>(
    type: FrameType,
    body: unknown,
    schema: S,
    what: string,
  ) {
    for (let attempt = 0; ; attempt++) {
      let frame: AnswerFrame;
      try {
        frame = await (await this.open()).request(type, body, this.settings.timeoutMs);
      } catch (err) {
        if (attempt < this.settings.retries && retryable(err)) {
          await pause(retryPauseMs(this.settings, attempt, (err as { retryAfter?: number }).retryAfter));
          continue;
        }
        throw err;
      }
      if ("error" in frame) {
        const e = frame.error;
        if (e.status === 503 && attempt < this.settings.retries) {
          // The hub is up but cannot write now (another program holds its lock): wait as it asks, briefly.
          await pause(retryPauseMs(this.settings, attempt, e.retryAfterSeconds));
          continue;
        }
        throw hubRefusal(e.status, e.code, e.message);
      }
      return parse(schema, frame.body, what);
    }
  }

  /** The open socket, or one being opened. */
  private open(): Promise<Connection> {
    if (this.closed) return Promise.reject(new TransportError("the transport is closed", "ERR_CLOSED"));
    if (this.connecting) return this.connecting;
    const connecting = loadOptional("ws", "The WebSocket transport", () => import("ws")).then(
      ({ default: Socket }) =>
        Connection.open(Socket, this.url, this.peer, this.settings, {
          onNotice: (buckets) => this.notify(buckets),
          onClose: () => this.dropped(connecting),
        }),
    );
    this.connecting = connecting;
    connecting.then(
      (c) => {
        if (this.connecting === connecting) this.current = c;
        this.reconnects = 0;
        for (const sub of this.subscriptions) this.subscribeOn(c, sub);
      },
      () => {
        if (this.connecting === connecting) this.connecting = null;
        this.dropped(connecting);
      },
    );
    return connecting;
  }

  /** The socket `which` is gone: the next call opens another; a subscription reopens it after a pause. */
  private dropped(which: Promise<Connection>): void {
    if (this.connecting === which) {
      this.connecting = null;
      this.current = null;
    }
    if (this.closed || this.subscriptions.size === 0 || this.reconnect) return;
    this.reconnect = setTimeout(
      () => {
        this.reconnect = null;
        if (!this.connecting && this.subscriptions.size > 0) this.open().catch(() => {});
      },
      exponentialDelay(this.reconnects++, LIVE_RECONNECT),
    );
    this.reconnect.unref();
  }

  private subscribeOn(c: Connection, sub: Subscription): void {
    // A refused subscription (a bucket the token may not read) leaves polling, which reports the refusal.
    c.request("subscribe", { buckets: sub.buckets }, this.settings.timeoutMs).then(
      (frame) => {
        if (!("error" in frame) && this.subscriptions.has(sub)) sub.onChanges(sub.buckets);
      },
      () => {},
    );
  }

  private notify(buckets: string[]): void {
    for (const sub of this.subscriptions) {
      const hit = buckets.filter((b) => sub.buckets.includes(b));
      if (hit.length) sub.onChanges(hit);
    }
  }
}

/** One open socket and the calls waiting on it. */
class Connection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private net: NetSocket | null = null;

  private constructor(
    private readonly ws: WebSocket,
    private readonly peer: string,
  ) {}

  static open(
    Socket: typeof WebSocket,
    url: URL,
    peer: string,
    settings: CallSettings,
    on: { onNotice: (buckets: string[]) => void; onClose: () => void },
  ): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const ws = new Socket(url, { headers: bearer(settings.token), handshakeTimeout: settings.timeoutMs });
      const c = new Connection(ws, peer);
      let opened = false;
      ws.on("upgrade", (res) => {
        c.net = res.socket as NetSocket;
      });
      ws.on("unexpected-response", (req, res) => {
        // The hub refused the upgrade with an HTTP answer: its refusal, as HttpTransport would report it.
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => {
          req.destroy();
          reject(upgradeRefusal(res.statusCode ?? 0, text, peer, Number(res.headers["retry-after"])));
        });
        res.on("error", () => {});
      });
      ws.on("open", () => {
        opened = true;
        c.idle();
        resolve(c);
      });
      ws.on("message", (data, isBinary) => c.received(isBinary ? "" : String(data), on.onNotice));
      ws.on("error", (err) => {
        if (opened) return;
        const code = errorCode(err);
        reject(
          code === "TimeoutError" || /timed out/i.test(err.message)
            ? new TransportError(
                `${url.pathname}: no answer from ${peer} in ${settings.timeoutMs} ms`,
                "ERR_TIMEOUT",
              )
            : new TransportError(
                `${url.pathname}: cannot reach ${peer}: ${describe(err)}`,
                code ?? "ERR_TRANSPORT",
              ),
        );
      });
      ws.on("close", (code) => {
        const err =
          code === 1009
            ? new HubRefusedError(
                413,
                "ERR_BODY_TOO_LARGE",
                "the request body is larger than the hub accepts",
              )
            : new TransportError(
                `${url.pathname}: the connection to ${peer} closed (code ${code})`,
                "ERR_CONNECTION_CLOSED",
              );
        for (const p of c.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        c.pending.clear();
        if (opened) on.onClose();
        else reject(err);
      });
    });
  }

  request(type: FrameType, body: unknown, timeoutMs: number): Promise<AnswerFrame> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.idle();
        reject(
          new TransportError(`/v1/ws ${type}: no answer from ${this.peer} in ${timeoutMs} ms`, "ERR_TIMEOUT"),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      // A call waiting for its answer keeps the process alive; an idle socket does not.
      this.net?.ref();
      this.ws.send(JSON.stringify({ id, type, body }), (err) => {
        if (err) this.fail(id, new TransportError(`/v1/ws ${type}: ${err.message}`, "ERR_CONNECTION_CLOSED"));
      });
    });
  }

  close(): void {
    this.ws.terminate();
  }

  received(text: string, onNotice: (buckets: string[]) => void): void {
    const doc = parseJson(text);
    if ((doc as { type?: unknown })?.type === "changes") {
      // A garbled notice costs only its own pull: the next poll catches up.
      const notice = liveMessage.safeParse(doc);
      if (notice.success) onNotice(notice.data.buckets);
      return;
    }
    const frame = answerFrame.safeParse(doc);
    if (frame.success && frame.data.id !== null) {
      const p = this.pending.get(frame.data.id);
      if (!p) return;
      this.pending.delete(frame.data.id);
      clearTimeout(p.timer);
      this.idle();
      p.resolve(frame.data);
      return;
    }
    // An answer that names no call (the hub could not read a frame's id, or sent garbage): a bug on
    // one side, not the network's, so every call in flight fails with what the hub said.
    const e = frame.success && "error" in frame.data ? frame.data.error : null;
    this.failAll(
      e
        ? hubRefusal(e.status, e.code, e.message)
        : new ProtocolError(`/v1/ws: ${this.peer} sent a malformed answer`),
    );
  }

  private fail(id: number, err: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    this.idle();
    p.reject(err);
  }

  private failAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.fail(id, err);
  }

  private idle(): void {
    if (this.pending.size === 0) this.net?.unref();
  }
}

/** A refused upgrade's answer as the refusal's class; a 503 carries its Retry-After for the retry. */
function upgradeRefusal(status: number, text: string, peer: string, retryAfter: number): Error {
  let parsed: ReturnType<typeof errorResponse.safeParse> | null = null;
  try {
    parsed = errorResponse.safeParse(JSON.parse(text));
  } catch {}
  const err =
    parsed?.success === true
      ? hubRefusal(status, parsed.data.error.code, parsed.data.error.message)
      : new HubRefusedError(status, "ERR_REMOTE", `/v1/ws: ${peer} answered ${status} to the upgrade`);
  return Object.assign(err, { retryAfter: Number.isFinite(retryAfter) ? retryAfter : undefined });
}

/** Worth another try: the connection failed or dropped, or the hub answered 503 at the upgrade. */
function retryable(err: unknown): boolean {
  if (err instanceof HubRefusedError) return err.status === 503;
  return err instanceof TransportError && err.code !== "ERR_TIMEOUT" && isConnectionError(err.code);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
