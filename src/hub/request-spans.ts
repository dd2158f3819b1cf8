/**
 * Request spans: one OpenTelemetry span per hub HTTP request (src/trace.ts).
 *
 * Contract: while tracing is on, every request the scope's routes see gets a
 * server span named `<METHOD> <route pattern>` (just the method when no route
 * matched), never the raw URL, which may carry a pin's hash or a query. Its
 * parent is the caller's trace context when the request carries one (a
 * traceparent header; see HttpTransport). No header is recorded: the bearer
 * token travels in one. A 5xx answer ends the span with error status and the
 * error that caused it; a 4xx is the caller's mistake and leaves it unset, as
 * the HTTP conventions say. While tracing is off the hooks return at once.
 * Added before the scope's other hooks, so refused requests (401, 429) get a span too.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { type SpanHandle, startSpan, tracingEnabled } from "../trace.js";

interface Traced {
  span: SpanHandle;
  error?: Error;
}

export function traceRequests(app: FastifyInstance): void {
  const open = new WeakMap<FastifyRequest, Traced>();
  app.addHook("onRequest", async (request) => {
    if (!tracingEnabled()) return;
    const route = request.routeOptions.url;
    const attributes: Record<string, string> = { "http.request.method": request.method };
    if (route !== undefined) attributes["http.route"] = route;
    const span = startSpan(route === undefined ? request.method : `${request.method} ${route}`, {
      kind: "server",
      headers: request.headers,
      attributes,
    });
    if (span) open.set(request, { span });
  });
  app.addHook("onError", async (request, _reply, error) => {
    const traced = open.get(request);
    if (traced) traced.error = error;
  });
  app.addHook("onResponse", async (request, reply) => {
    const traced = open.get(request);
    if (!traced) return;
    open.delete(request);
    const status = reply.statusCode;
    traced.span.set({ "http.response.status_code": status });
    if (status >= 500) traced.span.fail(traced.error ?? new Error(`answered ${status}`));
    traced.span.end();
  });
}
