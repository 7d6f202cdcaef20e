// Everything that can go wrong between the gateway and vLLM, mapped in one place.
import { envelope, GatewayError, type StreamErrorCode } from '../errors.ts';

// undici's errors carry a code (UND_ERR_*, HPE_* from llhttp, or the socket's errno); the gateway's own
// are UPSTREAM_*.
const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const LOST = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);
const BAD = new Set(['UPSTREAM_BAD_RESPONSE', 'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE']);

export type UpstreamErrorKind = 'unreachable' | 'timeout' | 'connection_lost' | 'bad_response' | 'too_large' | 'refused' | 'other';

/** A body the gateway buffers (an error answer, /inference, a control call) went past its cap. */
export class ResponseTooLarge extends Error {
  override readonly name = 'ResponseTooLarge';
  readonly code = 'UPSTREAM_TOO_LARGE';
  constructor(readonly limit: number) {
    super(`vLLM's answer is over the ${limit} bytes the gateway reads whole`);
  }
}

export function transportErrorKind(e: unknown): UpstreamErrorKind {
  const err = e as { code?: string; message?: string } | undefined;
  const code = err?.code ?? '';
  if (UNREACHABLE.has(code)) return 'unreachable';
  if (TIMEOUT.has(code)) return 'timeout';
  if (code === 'UPSTREAM_TOO_LARGE') return 'too_large';
  if (code === 'UND_ERR_INVALID_ARG') return 'refused';
  if (BAD.has(code) || code.startsWith('HPE_')) return 'bad_response';
  // undici's SocketError: 'other side closed' and 'closed' are a lost connection; 'bad response' (bytes
  // nobody asked for) and 'bad upgrade' (a 101) are a response the gateway refuses.
  if (code === 'UND_ERR_SOCKET') return /^bad /.test(err?.message ?? '') ? 'bad_response' : 'connection_lost';
  if (LOST.has(code)) return 'connection_lost';
  return 'other';
}

/** A transport failure before vLLM's response headers: 503 (retry), 504 (too slow) or 502 (broken). */
export function transportError(e: unknown): GatewayError {
  const err = e as { code?: string; message?: string } | undefined;
  const detail = err?.code ?? err?.message ?? 'unknown error';
  switch (transportErrorKind(e)) {
    case 'unreachable':
      return new GatewayError('engine_unreachable', `vLLM is not reachable (${detail})`, { retryAfterMs: 5000 });
    case 'timeout':
      return new GatewayError('engine_timeout', `vLLM did not answer in time (${detail}, UPSTREAM_TIMEOUT_SECONDS)`);
    case 'connection_lost':
      return new GatewayError('engine_connection_lost', `the connection to vLLM broke before it answered (${detail}); the engine may have crashed`);
    case 'too_large':
      return new GatewayError('engine_response_too_large', err?.message ?? 'vLLM answered with more than the gateway reads');
    case 'refused':
      // undici will not write the request (a method or header it refuses): the client's request, not vLLM.
      return new GatewayError('invalid_request', `the request cannot be forwarded to vLLM (${err?.message ?? detail})`);
    case 'bad_response':
      return new GatewayError('engine_error', `vLLM sent a response the gateway does not pass on (${err?.message || detail})`);
    default:
      return new GatewayError('engine_error', `request to vLLM failed (${detail})`);
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
export function sseErrorEvent(message: string, code: StreamErrorCode): string {
  return `data: ${JSON.stringify(envelope(message, 'upstream_error', code))}\n\ndata: [DONE]\n\n`;
}
