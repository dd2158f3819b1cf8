/**
 * Socket calls: GET /v1/ws, the protocol's calls over one WebSocket (see
 * sync/frames.ts), served by the same handlers as the HTTP routes.
 *
 * Contract: each request frame is one call: it runs through `callHub` and
 * the write gate, and is answered with its id, the same body or refusal
 * HTTP would have sent (`refusal`: status, code, message). A call counts
 * against its token's rate limit (`perSecond` calls per second, sockets
 * together; 429 past it, the socket stays open). A frame over `maxPayload`
 * closes the socket with 1009 (the client reports it as HTTP's 413); a frame
 * that is not JSON or not a request is answered 400, with its id when one
 * could be read. "subscribe" adds the socket to the live notices of buckets
 * the token may read. Calls on one socket may be answered in any order.
 */
import type { FastifyBaseLogger } from "fastify";
import type { WebSocket } from "ws";
import type { Scope } from "../scope.js";
import { type AnswerFrame, type ErrorBody, requestFrame } from "../sync/frames.js";
import { ProtocolError, parse, subscribeRequest } from "../sync/protocol.js";
import type { Hub } from "./hub.js";
import { WindowCounter } from "./limits.js";
import type { LiveNotices } from "./live.js";
import type { SocketEndpoint } from "./sockets.js";
import { callHub, refusal } from "./sync-calls.js";
import type { WriteGate } from "./write-gate.js";

export interface SocketCallsOptions {
  hub: Hub;
  gate: WriteGate;
  notices: LiveNotices;
  /** Calls per token per second (0: no limit), the HTTP routes' budget. */
  perSecond: number;
  /** Largest frame, bytes: the HTTP routes' body limit. */
  maxPayload: number;
  log: FastifyBaseLogger;
}

export function socketCallsEndpoint(options: SocketCallsOptions): SocketEndpoint {
  const { hub, gate, notices, log } = options;
  const rate = new WindowCounter(options.perSecond, 1_000);

  async function answer(ws: WebSocket, scope: Scope, data: string): Promise<AnswerFrame> {
    let id: number | null = null;
    try {
      let doc: unknown;
      try {
        doc = JSON.parse(data);
      } catch {
        return failed(null, {
          status: 400,
          code: "ERR_MALFORMED_JSON",
          message: "the frame is not valid JSON",
        });
      }
      const maybe = (doc as { id?: unknown })?.id;
      if (Number.isSafeInteger(maybe) && (maybe as number) >= 0) id = maybe as number;
      const frame = parse(requestFrame, doc, "request frame");
      if (options.perSecond > 0 && rate.hit(scope.id) > 0) {
        return failed(id, {
          status: 429,
          code: "ERR_RATE_LIMITED",
          message: `rate limit of ${options.perSecond} requests per 1 second exceeded; retry later`,
          retryAfterSeconds: 1,
        });
      }
      if (frame.type === "subscribe") {
        const req = parse(subscribeRequest, frame.body, "subscribe");
        hub.checkBuckets(req.buckets, scope, false);
        notices.add(ws, req.buckets);
        return { id: frame.id, body: req };
      }
      return { id: frame.id, body: await callHub(hub, gate, frame.type, frame.body, scope) };
    } catch (err) {
      if (err instanceof ProtocolError)
        return failed(id, { status: 400, code: err.code, message: err.message });
      const r = refusal(err, (e) => log.error({ err: e }, "the hub's disk is full"));
      if (r) return failed(id, r);
      log.error({ err }, "sync call failed");
      return failed(id, {
        status: 500,
        code: "ERR_INTERNAL",
        message: "the hub failed to handle the request; see its log",
      });
    }
  }

  return {
    path: "/v1/ws",
    maxPayload: options.maxPayload,
    connect(ws, scope) {
      ws.on("message", (data, isBinary) => {
        const text = isBinary ? "" : String(data);
        void answer(ws, scope, text).then((frame) => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
        });
      });
    },
  };
}

function failed(id: number | null, error: ErrorBody): AnswerFrame {
  return { id, error };
}
