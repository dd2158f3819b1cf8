/**
 * The pin endpoints, registered inside the hub's /v1 plugin scope (so the
 * hub's bearer-token check, rate limit and error envelope apply):
 * `GET /v1/pins/:hash` streams a pin, `PUT /v1/pins/:hash` stores one.
 *
 * Contract: any valid token may read a pin (pins are not scoped to buckets:
 * knowing the hash is what names one); storing needs a read-write token. A
 * hash that is not 64 lowercase hex digits is a 400, an absent pin a 404. A
 * PUT body is raw bytes of any content type, streamed to the PinStore and
 * verified: a body that does not hash to the URL's hash is a 422 and one
 * over the store's size limit a 413 (at once when Content-Length says so),
 * and either stores nothing.
 */
import { PassThrough } from "node:stream";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HubError } from "../errors.js";
import { pinMismatches } from "../metrics.js";
import { isPinHash, PinMismatchError, PinNotFoundError, PinTooLargeError } from "./errors.js";
import type { Pins } from "./pins.js";

export interface PinRoutesOptions {
  pins: Pins;
}

export async function pinRoutes(app: FastifyInstance, options: PinRoutesOptions): Promise<void> {
  const { blobs } = options.pins;
  // A pin is bytes of any type: the handler streams the raw request, nothing is parsed or buffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null));

  app.get("/v1/pins/:hash", async (request, reply) => {
    const hash = hashParam(request);
    const info = blobs.info(hash);
    let stream: ReturnType<typeof blobs.open>;
    try {
      if (!info) throw new PinNotFoundError(hash);
      stream = blobs.open(hash);
    } catch (err) {
      if (err instanceof PinNotFoundError) throw new HubError(404, err.code, err.message);
      throw err;
    }
    reply
      .type("application/octet-stream")
      .header("content-length", info.size)
      .header("etag", `"${hash}"`)
      // The bytes under a hash can never change.
      .header("cache-control", "private, max-age=31536000, immutable");
    return reply.send(stream);
  });

  app.put("/v1/pins/:hash", async (request, reply) => {
    const hash = hashParam(request);
    if (!request.scope?.write)
      throw new HubError(403, "ERR_READ_ONLY", "this token may only read; pin refused");
    const declared = Number(request.headers["content-length"]);
    if (Number.isFinite(declared) && declared > blobs.maxBytes) {
      reply.header("connection", "close");
      throw new HubError(413, "ERR_PIN_TOO_LARGE", new PinTooLargeError(blobs.maxBytes).message);
    }
    const existed = blobs.has(hash);
    // Through a PassThrough: a refusal mid-body then leaves the request readable, so the
    // rest is drained and the client gets its 4xx instead of a reset connection.
    const body = new PassThrough();
    const raw = request.raw;
    // pipe() does not pass on a client that hangs up mid-body: end the write, or it waits for ever.
    const hungUp = () => {
      if (!raw.complete) body.destroy(new Error("the client closed the connection before the body ended"));
    };
    raw.once("close", hungUp).once("error", hungUp);
    raw.pipe(body);
    try {
      const stored = await blobs.putExpecting(hash, body);
      return reply.code(existed ? 200 : 201).send({ hash: stored.hash, size: stored.size });
    } catch (err) {
      raw.unpipe(body);
      raw.resume();
      if (err instanceof PinMismatchError) {
        pinMismatches.labels("upload").inc();
        throw new HubError(422, err.code, err.message);
      }
      if (err instanceof PinTooLargeError) {
        reply.header("connection", "close");
        throw new HubError(413, err.code, err.message);
      }
      throw err;
    }
  });
}

function hashParam(request: FastifyRequest): string {
  const hash = (request.params as { hash?: string }).hash;
  if (!isPinHash(hash)) {
    throw new HubError(
      400,
      "ERR_BAD_HASH",
      "a pin is named by its sha256 as 64 lowercase hex digits: /v1/pins/<hash>",
    );
  }
  return hash;
}
