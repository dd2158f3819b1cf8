/**
 * Frames: how protocol messages ride one WebSocket (GET /v1/ws), for
 * WebSocketTransport and the hub's socket endpoint.
 *
 * Contract: a client sends `{ id, type, body }`, `type` one of the calls
 * (handshake, pull, push) or "subscribe", `body` the same JSON the HTTP
 * endpoint takes. The hub answers each with the same `id`: `{ id, body }`
 * (the HTTP answer's body) or `{ id, error: { status, code, message,
 * retryAfterSeconds? } }` (the status HTTP would have sent, so a refusal gets
 * the same error class either way). Answers may come in any order; ids say
 * which is which. A frame without an id the hub could read is answered with
 * `id: null`. The hub's change notices (`{ type: "changes", buckets }`, as on
 * /v1/live) carry no id.
 */
import { z } from "zod";

export const FRAME_TYPES = ["handshake", "pull", "push", "subscribe"] as const;
export type FrameType = (typeof FRAME_TYPES)[number];

const id = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const requestFrame = z.strictObject({
  id,
  type: z.enum(FRAME_TYPES),
  body: z.unknown(),
});

export const errorBody = z.strictObject({
  status: z.number().int().min(400).max(599),
  code: z.string(),
  message: z.string(),
  retryAfterSeconds: z.number().nonnegative().optional(),
});

export const answerFrame = z.union([
  z.strictObject({ id, body: z.unknown() }),
  z.strictObject({ id: id.nullable(), error: errorBody }),
]);

export type RequestFrame = z.output<typeof requestFrame>;
export type AnswerFrame = z.output<typeof answerFrame>;
export type ErrorBody = z.output<typeof errorBody>;
