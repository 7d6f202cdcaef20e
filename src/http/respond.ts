// Writing the gateway's own answers, through Hono or straight to the Node response.
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { GatewayError } from '../errors.ts';
import { ClientGoneError } from '../proxy/body.ts';
import { LifecycleError, type EngineState } from '../engine/lifecycle.ts';

/** Lifecycle refusals as HTTP: the engine layer names what happened, this picks the status. */
export function fromLifecycle(e: LifecycleError, state: EngineState): GatewayError {
  const retryAfterMs = e.retryAfterMs ?? 5000;
  switch (e.kind) {
    case 'conflict':
      return new GatewayError(409, 'engine_not_ready', e.message, 'conflict_error');
    case 'unsupported':
      return new GatewayError(501, 'sleep_mode_unavailable', e.message, 'not_implemented');
    case 'upstream':
      return new GatewayError(502, 'engine_error', e.message, 'upstream_error');
    case 'timeout':
      return new GatewayError(503, 'queue_timeout', e.message, 'service_unavailable', { retryAfterMs });
    default: {
      const code = state === 'draining' || state === 'stopped' ? 'shutting_down' : state === 'sleeping' ? 'engine_asleep' : 'engine_unavailable';
      return new GatewayError(503, code, e.message, 'service_unavailable', { retryAfterMs });
    }
  }
}

/** What a thrown error becomes: an answer, `'gone'` when nobody is listening any more, or undefined for a bug. */
export function classifyError(e: unknown, state: EngineState): GatewayError | 'gone' | undefined {
  if (e instanceof GatewayError) return e;
  if (e instanceof ClientGoneError || (e instanceof LifecycleError && e.kind === 'aborted')) return 'gone';
  if (e instanceof LifecycleError) return fromLifecycle(e, state);
  return undefined;
}

/** A 413 is answered before the body was read: the connection cannot be reused. */
export const closesConnection = (e: GatewayError) => e.status === 413;

/** For handlers that own the Node response (the relay, SSE). */
export function writeError(out: ServerResponse, e: GatewayError): void {
  if (out.headersSent || out.destroyed) return;
  const body = JSON.stringify(e.body());
  // The reason phrase is given: a head Node refused may have left another status's phrase behind.
  out.writeHead(e.status, STATUS_CODES[e.status] ?? 'Error', { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...e.headers() });
  out.end(body);
}
