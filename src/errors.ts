// One error type for everything the gateway answers itself, rendered as OpenAI's error envelope.

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'service_unavailable'
  | 'upstream_error'
  | 'not_implemented'
  | 'conflict_error';

/** Seconds and milliseconds are both capped at 60 s: the OpenAI SDKs ignore longer hints. */
export const MAX_RETRY_AFTER_MS = 60_000;

export class GatewayError extends Error {
  readonly retryAfterMs: number | undefined;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly type: ErrorType = defaultType(status),
    opts: { retryAfterMs?: number; param?: string | null } = {},
  ) {
    super(message);
    this.retryAfterMs = opts.retryAfterMs === undefined ? undefined : clampRetry(opts.retryAfterMs);
    this.param = opts.param ?? null;
  }
  readonly param: string | null;

  body(): ErrorEnvelope {
    return envelope(this.message, this.type, this.code, this.param);
  }

  headers(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.retryAfterMs !== undefined) Object.assign(h, retryHeaders(this.retryAfterMs));
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

export function clampRetry(ms: number): number {
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(1000, Math.ceil(ms)));
}

export function retryHeaders(ms: number): Record<string, string> {
  const c = clampRetry(ms);
  return { 'retry-after': String(Math.ceil(c / 1000)), 'retry-after-ms': String(c), 'x-should-retry': 'true' };
}

function defaultType(status: number): ErrorType {
  switch (status) {
    case 400:
    case 413:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
    case 405:
      return 'not_found_error';
    case 409:
      return 'conflict_error';
    case 429:
      return 'rate_limit_error';
    case 501:
      return 'not_implemented';
    case 503:
      return 'service_unavailable';
    default:
      return 'upstream_error';
  }
}

export const badRequest = (message: string, param: string | null = null) => new GatewayError(400, 'invalid_request', message, 'invalid_request_error', { param });
export const unavailable = (code: string, message: string, retryAfterMs: number) => new GatewayError(503, code, message, 'service_unavailable', { retryAfterMs });
