// Everything that can go wrong between the gateway and vLLM, mapped in one place.
import { envelope, GatewayError } from '../errors.ts';

// Socket errors keep their errno code; the relay's own (proxy/upstream.ts) are UPSTREAM_*.
const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const TIMEOUT = new Set(['UPSTREAM_HEADERS_TIMEOUT', 'UPSTREAM_BODY_TIMEOUT']);
const LOST = new Set(['UPSTREAM_CLOSED', 'ECONNRESET', 'EPIPE']);

export type UpstreamErrorKind = 'unreachable' | 'timeout' | 'connection_lost' | 'other';

export function transportErrorKind(e: unknown): UpstreamErrorKind {
  const code = (e as { code?: string })?.code ?? '';
  if (UNREACHABLE.has(code)) return 'unreachable';
  if (TIMEOUT.has(code)) return 'timeout';
  if (LOST.has(code)) return 'connection_lost';
  return 'other';
}

/** A transport failure before vLLM's response headers: 503 (retry), 504 (too slow) or 502 (broken). */
export function transportError(e: unknown): GatewayError {
  const detail = (e as { code?: string })?.code ?? (e as Error)?.message ?? 'unknown error';
  switch (transportErrorKind(e)) {
    case 'unreachable':
      return new GatewayError(503, 'engine_unreachable', `vLLM is not reachable (${detail})`, 'service_unavailable', { retryAfterMs: 5000 });
    case 'timeout':
      return new GatewayError(504, 'engine_timeout', `vLLM did not answer in time (${detail})`, 'upstream_error');
    case 'connection_lost':
      return new GatewayError(502, 'engine_connection_lost', `the connection to vLLM broke before it answered (${detail}); the engine may have crashed`, 'upstream_error');
    default:
      return new GatewayError(502, 'engine_error', `request to vLLM failed (${detail})`, 'upstream_error');
  }
}

const CODE_BY_STATUS: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  404: 'not_found',
  405: 'method_not_allowed',
  422: 'unprocessable_entity',
  500: 'engine_error',
  503: 'engine_unavailable',
};

/**
 * vLLM's OpenAI-shaped error bodies pass unchanged; the others (`{"detail": ...}`, `{"error": "Unauthorized"}`,
 * the pre-0.10.1 flat body, an empty 500 from a dead engine) are wrapped in the envelope, same status.
 */
export function normalizeErrorBody(status: number, text: string): string {
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  const code = CODE_BY_STATUS[status] ?? 'upstream_error';
  const obj = parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  const err = obj?.error;
  if (err && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') return text;
  let message: string;
  let type = status >= 500 ? 'upstream_error' : 'invalid_request_error';
  if (obj && typeof err === 'string') message = err;
  else if (obj && 'detail' in obj) message = typeof obj.detail === 'string' ? obj.detail : JSON.stringify(obj.detail);
  else if (obj && obj.object === 'error' && typeof obj.message === 'string') {
    message = obj.message;
    if (typeof obj.type === 'string') type = obj.type;
  } else if (text.trim()) message = text.trim().slice(0, 1000);
  else message = status === 500 ? 'vLLM answered 500 with an empty body: its engine failed (see the gateway log)' : `vLLM answered ${status} with an empty body`;
  return JSON.stringify(envelope(message, type, code));
}

/** The SSE event that ends a stream broken after its 200: SDKs raise on a `data:` payload with `error`. */
export function sseErrorEvent(message: string, code: string): string {
  return `data: ${JSON.stringify(envelope(message, 'upstream_error', code))}\n\ndata: [DONE]\n\n`;
}
