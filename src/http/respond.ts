// Writing the gateway's own answers, and the one place where what the layers below throw becomes an
// answer from the catalogue (errors.ts).
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { ClientGone, EngineError, GatewayError } from '../errors.ts';
import { isStopping, type EngineState } from '../engine/states.ts';

/** Engine refusals as HTTP: the engine layer names what happened, this picks the catalogue entry. */
function fromEngine(e: EngineError, state: EngineState): GatewayError {
  const retryAfterMs = e.retryAfterMs ?? 5000;
  switch (e.kind) {
    case 'conflict':
      return new GatewayError('engine_not_ready', e.message, { retryAfterMs });
    case 'unsupported':
      return new GatewayError('sleep_mode_unavailable', e.message);
    case 'upstream':
      return new GatewayError('engine_error', e.message);
    case 'timeout':
      return new GatewayError('queue_timeout', e.message, { retryAfterMs });
    case 'unavailable':
      if (state === 'sleeping') {
        // Asleep with AUTO_WAKE off: only a POST /wake changes that, so SDKs are told not to retry (the
        // openai SDKs honour x-should-retry over Retry-After); every 503 still carries its hint (docs/contract.md, Errors).
        return new GatewayError('engine_asleep', e.message, { retryAfterMs, shouldRetry: false });
      }
      return new GatewayError(isStopping(state) ? 'shutting_down' : 'engine_unavailable', e.message, { retryAfterMs });
  }
}

/** What a thrown error becomes: an answer, ClientGone when nobody is listening any more, or undefined for a bug. */
export function classifyError(e: unknown, state: EngineState): GatewayError | ClientGone | undefined {
  if (e instanceof GatewayError || e instanceof ClientGone) return e;
  if (e instanceof EngineError) return fromEngine(e, state);
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
