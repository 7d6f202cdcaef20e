// Every error the gateway answers itself, in one catalogue: its code, HTTP status, OpenAI error type and
// whether it carries retry hints; and the few internal error kinds the layers below throw. The HTTP layer
// maps those to catalogue entries in one place (http/respond.ts). docs/contract.md lists the catalogue (a
// unit test holds the two together).

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'service_unavailable'
  | 'upstream_error'
  | 'not_implemented'
  | 'conflict_error'
  | 'internal_error';

interface ErrorSpec {
  status: number;
  type: ErrorType;
  /** What a client should do, in a few words (docs/contract.md shows it). */
  meaning: string;
}

export const ERROR_CATALOGUE = {
  invalid_request: { status: 400, type: 'invalid_request_error', meaning: 'a body or parameter the gateway refuses (the message names it)' },
  invalid_path: { status: 400, type: 'invalid_request_error', meaning: 'a target with bad percent-encoding, a fragment, or a byte outside visible ASCII' },
  bad_request: { status: 400, type: 'invalid_request_error', meaning: 'not HTTP/1.1 (Node refused it before routing)' },
  invalid_api_key: { status: 401, type: 'authentication_error', meaning: 'missing or wrong API key or admin token' },
  admin_token_required: { status: 403, type: 'permission_error', meaning: 'an API key on an admin route while ADMIN_TOKEN is set' },
  route_not_found: { status: 404, type: 'not_found_error', meaning: 'no such route (nothing is forwarded)' },
  method_not_allowed: { status: 405, type: 'invalid_request_error', meaning: 'a known path with another method (`Allow` lists the right ones)' },
  request_timeout: { status: 408, type: 'invalid_request_error', meaning: 'the request was not received within CLIENT_TIMEOUT_SECONDS' },
  engine_not_ready: { status: 409, type: 'conflict_error', meaning: 'sleep or wake while the engine is starting or failed' },
  request_too_large: { status: 413, type: 'invalid_request_error', meaning: 'a body over MAX_BODY_BYTES' },
  too_many_requests: { status: 429, type: 'rate_limit_error', meaning: 'over MAX_CONCURRENT_REQUESTS; retry after the hint' },
  headers_too_large: { status: 431, type: 'invalid_request_error', meaning: 'request headers over 32 KiB' },
  internal_error: { status: 500, type: 'internal_error', meaning: 'a gateway bug (logged with its stack)' },
  sleep_mode_unavailable: { status: 501, type: 'not_implemented', meaning: 'vLLM runs without sleep mode' },
  engine_error: { status: 502, type: 'upstream_error', meaning: 'vLLM failed, or sent a response the gateway does not pass on' },
  engine_connection_lost: { status: 502, type: 'upstream_error', meaning: 'the connection to vLLM broke before its answer (never retried)' },
  engine_response_too_large: { status: 502, type: 'upstream_error', meaning: 'an answer the gateway reads whole was over its cap' },
  engine_unavailable: { status: 503, type: 'service_unavailable', meaning: 'the engine cannot serve now (starting, failed, or a wake failed)' },
  engine_asleep: { status: 503, type: 'service_unavailable', meaning: 'the engine sleeps and AUTO_WAKE is off: POST /wake first' },
  engine_unreachable: { status: 503, type: 'service_unavailable', meaning: 'vLLM does not accept connections' },
  queue_timeout: { status: 503, type: 'service_unavailable', meaning: 'the engine was not ready within QUEUE_TIMEOUT_SECONDS' },
  shutting_down: { status: 503, type: 'service_unavailable', meaning: 'the gateway is draining' },
  engine_timeout: { status: 504, type: 'upstream_error', meaning: 'vLLM sent nothing for UPSTREAM_TIMEOUT_SECONDS' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/**
 * Codes of the error event that ends a stream after its 200 (the status is already sent): vLLM broke off the
 * stream or sent bytes that are not HTTP, or the drain deadline ended it.
 */
export type StreamErrorCode = 'engine_stream_broken' | 'shutting_down';

/** Seconds and milliseconds are both capped at 60 s: the OpenAI SDKs ignore longer hints. */
const MAX_RETRY_AFTER_MS = 60_000;
const DEFAULT_RETRY_MS = 5000;

/** 429 and 503 always carry retry hints (docs/contract.md, Errors). */
const retries = (status: number) => status === 429 || status === 503;

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly status: number;
  readonly type: ErrorType;
  readonly retryAfterMs: number | undefined;
  readonly param: string | null;
  /** False where waiting will not help (nothing will change by itself): SDKs then do not retry. */
  readonly shouldRetry: boolean;

  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: { retryAfterMs?: number; param?: string | null; shouldRetry?: boolean } = {},
  ) {
    super(message);
    const spec: ErrorSpec = ERROR_CATALOGUE[code];
    this.status = spec.status;
    this.type = spec.type;
    this.retryAfterMs = retries(spec.status) ? clampRetry(opts.retryAfterMs ?? DEFAULT_RETRY_MS) : undefined;
    this.param = opts.param ?? null;
    this.shouldRetry = opts.shouldRetry ?? true;
  }

  body(): ErrorEnvelope {
    return envelope(this.message, this.type, this.code, this.param);
  }

  headers(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.retryAfterMs !== undefined) Object.assign(h, retryHeaders(this.retryAfterMs), this.shouldRetry ? {} : { 'x-should-retry': 'false' });
    if (this.status === 401) h['www-authenticate'] = 'Bearer realm="vllm-gateway"';
    return h;
  }
}

export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function envelope(message: string, type: string, code: string | null, param: string | null = null): ErrorEnvelope {
  return { error: { message, type, param, code } };
}

function clampRetry(ms: number): number {
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(1000, Math.ceil(ms)));
}

export function retryHeaders(ms: number): Record<string, string> {
  const c = clampRetry(ms);
  return { 'retry-after': String(Math.ceil(c / 1000)), 'retry-after-ms': String(c), 'x-should-retry': 'true' };
}

export const badRequest = (message: string, param: string | null = null) => new GatewayError('invalid_request', message, { param });

// ---- what the layers below throw (mapped to the catalogue in http/respond.ts) ----------------------

/** The client went away: nobody is listening for an answer (the access log says 499). */
export class ClientGone extends Error {
  override readonly name = 'ClientGone';
}

export type EngineErrorKind = 'conflict' | 'unavailable' | 'unsupported' | 'upstream' | 'timeout';

/** The engine cannot do what was asked; `kind` says why, the HTTP layer picks the status. */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly kind: EngineErrorKind,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}
