/**
 * Trace: OpenTelemetry spans, for those who ask for them.
 *
 * Contract: `@opentelemetry/api` is an optional peer dependency and this is
 * the only module that loads it, by one dynamic import, the first time
 * `enableTracing()` is called. Until then (and for good when the package is
 * absent) every helper here is a no-op that allocates nothing: a span-taking
 * caller gets `undefined`, a wrapped function is called as it is. Once on,
 * spans go to whatever tracer provider the application registered (none: the
 * api's own no-op tracer). The api's types never appear in tidewire's
 * public signatures, so a user without the package still typechecks.
 */
type Api = typeof import("@opentelemetry/api");
type OtelSpan = import("@opentelemetry/api").Span;
type Tracer = import("@opentelemetry/api").Tracer;
type Context = import("@opentelemetry/api").Context;
type Attributes = Record<string, string | number | boolean | string[]>;

/** Span kinds by name, so callers need not import the api's enum. */
export type Kind = "internal" | "server" | "client" | "producer" | "consumer";

let api: Api | null = null;
/**
 * Taken once: getTracer on the api's proxy provider makes a new proxy per call. The
 * proxy finds a provider registered after it was made, so this one stays valid.
 */
let tracer: Tracer | null = null;
let loading: Promise<boolean> | null = null;

/**
 * Loads `@opentelemetry/api` (once; later calls share the answer) and turns
 * tracing on. Resolves false, and changes nothing, when the package is not installed.
 */
export function enableTracing(): Promise<boolean> {
  if (loading) return loading;
  const attempt: Promise<boolean> = import("@opentelemetry/api").then(
    (m) => {
      // disableTracing() came before the import finished: it wins.
      if (loading !== attempt) return false;
      api = m;
      tracer = m.trace.getTracer("tidewire");
      return true;
    },
    () => false,
  );
  loading = attempt;
  return attempt;
}

/** Turns spans off again (the api stays loaded); enableTracing() turns them back on. */
export function disableTracing(): void {
  api = null;
  loading = null;
}

export function tracingEnabled(): boolean {
  return api !== null;
}

/** A started span, in the words tidewire needs. */
export interface SpanHandle {
  /** Runs fn with this span as the active one, so spans fn starts are its children. */
  run<T>(fn: () => T): T;
  set(attributes: Attributes): void;
  /** Error status, with the exception recorded. */
  fail(err: unknown): void;
  end(): void;
}

export interface SpanOptions {
  kind?: Kind;
  attributes?: Attributes;
  /**
   * The parent: a W3C traceparent (a job's, read from its row), or null for
   * none at all (a root span, whatever is active where it starts). Default: the active span.
   */
  parent?: string | null;
  /** Incoming request headers to take the parent from, through the registered propagator. */
  headers?: Record<string, unknown>;
}

/** Starts a span, or returns undefined when tracing is off. */
export function startSpan(name: string, options: SpanOptions = {}): SpanHandle | undefined {
  const a = api;
  if (a === null) return undefined;
  let parent: Context;
  if (options.headers !== undefined) parent = a.propagation.extract(a.ROOT_CONTEXT, options.headers);
  else if (options.parent === undefined) parent = a.context.active();
  else parent = contextOf(a, options.parent);
  const span = tracer!.startSpan(
    name,
    { kind: kindOf(a, options.kind), attributes: options.attributes },
    parent,
  );
  return new Handle(a, span, a.trace.setSpan(parent, span));
}

/**
 * Runs fn in a span of its own, a child of the active one, ending it when fn
 * returns or its promise settles, with error status if it throws or rejects.
 * fn gets the span (undefined when tracing is off) to add attributes to.
 */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: SpanHandle | undefined) => T): T {
  const span = startSpan(name, { attributes });
  if (span === undefined) return fn(undefined);
  let result: T;
  try {
    result = span.run(() => fn(span));
  } catch (err) {
    span.fail(err);
    span.end();
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (v) => {
        span.end();
        return v;
      },
      (err) => {
        span.fail(err);
        span.end();
        throw err;
      },
    ) as T;
  }
  span.end();
  return result;
}

/**
 * Runs fn with no span active: a background loop's cycles are roots of their
 * own, not children (for ever) of whatever span was active when the loop started.
 */
export function detached<T>(fn: () => T): T {
  const a = api;
  return a === null ? fn() : a.context.with(a.ROOT_CONTEXT, fn);
}

/** The active span's context as a W3C traceparent, or null (tracing off, or no valid span active). */
export function activeTraceparent(): string | null {
  const a = api;
  if (a === null) return null;
  const sc = a.trace.getSpanContext(a.context.active());
  if (sc === undefined || !a.trace.isSpanContextValid(sc)) return null;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** Writes the active context into outgoing request headers (through the registered propagator). */
export function injectHeaders(headers: Record<string, string>): void {
  const a = api;
  if (a !== null) a.propagation.inject(a.context.active(), headers);
}

/** version 00: 2 hex of version, 32 of trace id, 16 of span id, 2 of flags. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The context a traceparent names; the root context for null or one that does not parse. */
function contextOf(a: Api, traceparent: string | null): Context {
  const m = traceparent === null ? null : TRACEPARENT.exec(traceparent);
  if (m === null || m[1] === "ff") return a.ROOT_CONTEXT;
  const sc = { traceId: m[2]!, spanId: m[3]!, traceFlags: Number.parseInt(m[4]!, 16), isRemote: true };
  return a.trace.isSpanContextValid(sc) ? a.trace.setSpanContext(a.ROOT_CONTEXT, sc) : a.ROOT_CONTEXT;
}

function kindOf(a: Api, kind: Kind | undefined) {
  switch (kind) {
    case "server":
      return a.SpanKind.SERVER;
    case "client":
      return a.SpanKind.CLIENT;
    case "producer":
      return a.SpanKind.PRODUCER;
    case "consumer":
      return a.SpanKind.CONSUMER;
    default:
      return a.SpanKind.INTERNAL;
  }
}

class Handle implements SpanHandle {
  constructor(
    private readonly a: Api,
    private readonly span: OtelSpan,
    private readonly ctx: Context,
  ) {}

  run<T>(fn: () => T): T {
    return this.a.context.with(this.ctx, fn);
  }

  set(attributes: Attributes): void {
    this.span.setAttributes(attributes);
  }

  fail(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.span.recordException(error);
    this.span.setStatus({ code: this.a.SpanStatusCode.ERROR, message: error.message });
  }

  end(): void {
    this.span.end();
  }
}
