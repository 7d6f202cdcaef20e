// Header handling for the relay: hop-by-hop headers never cross it, the gateway's credentials never
// reach vLLM, and every exchange carries one request id.
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

// RFC 9110 §7.6.1 plus the de-facto ones; `host` and `content-length` are set anew for the new hop.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);
// The gateway's own credentials stay with the gateway.
const GATEWAY_ONLY = new Set(['authorization', 'x-api-key']);
// Responses keep their content-length; what vLLM (uvicorn) says about itself is not for clients.
const RESPONSE_DROP = new Set([...HOP_BY_HOP].filter((h) => h !== 'content-length').concat(['server', 'date']));

// Any visible ASCII the client chose is kept (it is their correlation id); nothing that could split a header.
const REQUEST_ID_RE = /^[\x21-\x7e]{1,256}$/;

// Generated ids: a random per-process prefix and a counter — unique, 32 hex digits, and cheap.
const ID_PREFIX = randomBytes(8).toString('hex');
let idCounter = 0;

/** The client's x-request-id when it is sane, otherwise a new one. */
export function requestIdOf(value: string | string[] | undefined | null): string {
  const v = Array.isArray(value) ? value[0] : value;
  if (v && REQUEST_ID_RE.test(v)) return v;
  idCounter = (idCounter + 1) % Number.MAX_SAFE_INTEGER;
  return ID_PREFIX + idCounter.toString(16).padStart(16, '0');
}

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  // The usual values name only hop-by-hop headers that are dropped anyway.
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return NO_TOKENS;
  const out = new Set<string>();
  for (const part of ([] as string[]).concat(value ?? [])) for (const t of part.split(',')) if (t.trim()) out.add(t.trim().toLowerCase());
  return out;
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, requestId: string, vllmApiKey: string | undefined): Record<string, string | string[]> {
  const listed = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  // for…in, not Object.entries: no array per header on the hot path (Node's header objects have no prototype).
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || HOP_BY_HOP.has(name) || GATEWAY_ONLY.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  out['x-request-id'] = requestId;
  if (vllmApiKey) out.authorization = `Bearer ${vllmApiKey}`;
  return out;
}

export function downstreamResponseHeaders(upstream: Record<string, string | string[] | undefined>, requestId: string): OutgoingHttpHeaders {
  const listed = connectionTokens(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || RESPONSE_DROP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  out['x-request-id'] = requestId;
  return out;
}
