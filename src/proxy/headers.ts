// Headers across the relay, both ways. Towards vLLM: end-to-end headers only, never the client's
// credentials, one request id, vLLM's own key when set. Towards the client: vLLM's end-to-end headers, each
// checked the way Node checks what it sends, and never vLLM's framing (the gateway frames what llhttp decoded).
import { randomBytes } from 'node:crypto';
import { validateHeaderName, validateHeaderValue, type OutgoingHttpHeaders } from 'node:http';

// RFC 9110 section 7.6.1 plus the de-facto ones; `host` and `content-length` are the new hop's own.
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];
const REQUEST_DROP = new Set([...HOP_BY_HOP, 'host', 'content-length', 'expect', 'x-request-id', 'authorization', 'x-api-key']);
// What uvicorn says about itself is not for clients; Node writes its own Date.
const RESPONSE_DROP = new Set([...HOP_BY_HOP, 'content-length', 'server', 'date', 'x-request-id']);

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

/** The header names a Connection header lists: hop-by-hop for this connection only. */
function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  // The usual values name only hop-by-hop headers that are dropped anyway.
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return NO_TOKENS;
  const out = new Set<string>();
  for (const part of typeof value === 'string' ? [value] : value) for (const t of part.split(',')) if (t.trim()) out.add(t.trim().toLowerCase());
  return out;
}

function lowerAscii(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

/**
 * The headers sent to vLLM, as flat name/value pairs from the client's raw headers (duplicates kept in
 * order). Names with an underscore are dropped: some servers read `x_api_key` as `x-api-key`. The tokens of
 * every Connection header are read from the raw pairs too, whatever Node makes of several of them.
 */
export function upstreamRequestHeaders(rawHeaders: readonly string[], requestId: string, vllmApiKey: string | undefined): string[] {
  let listed: Set<string> | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length !== 10 || lowerAscii(rawHeaders[i]!) !== 'connection') continue;
    const tokens = connectionTokens(rawHeaders[i + 1]);
    if (tokens.size) for (const t of tokens) (listed ??= new Set()).add(t);
  }
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = lowerAscii(name);
    if (REQUEST_DROP.has(lower) || listed?.has(lower) || lower.includes('_')) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  out.push('x-request-id', requestId);
  if (vllmApiKey) out.push('authorization', `Bearer ${vllmApiKey}`);
  return out;
}

/** vLLM sent a response the gateway will not pass on; the client gets a 502. */
export class BadUpstreamResponse extends Error {
  override readonly name = 'BadUpstreamResponse';
  readonly code = 'UPSTREAM_BAD_RESPONSE';
}

export interface ClientHead {
  headers: OutgoingHttpHeaders;
  /** The body's length when llhttp read it by Content-Length; otherwise the gateway frames it (chunked). */
  contentLength: number | undefined;
}

type UpstreamHeaders = Record<string, string | string[] | undefined>;

/**
 * The response head for the client from vLLM's parsed headers. Throws BadUpstreamResponse for what the
 * gateway will not send: a transfer coding other than chunked (it would be lost, since the gateway frames the
 * decoded body itself), or a header Node would refuse to write.
 */
export function clientResponseHead(upstream: UpstreamHeaders, requestId: string): ClientHead {
  const te = upstream['transfer-encoding'];
  if (te !== undefined && (typeof te !== 'string' || te.trim().toLowerCase() !== 'chunked')) {
    throw new BadUpstreamResponse(`vLLM used a transfer coding the gateway does not pass on: ${JSON.stringify(te)}`);
  }
  let contentLength: number | undefined;
  const cl = upstream['content-length'];
  if (te === undefined && cl !== undefined) {
    // llhttp has read exactly this many bytes (undici checks the count); a second value it would have refused.
    if (typeof cl !== 'string' || !/^\d{1,15}$/.test(cl)) throw new BadUpstreamResponse(`vLLM sent an invalid content-length: ${JSON.stringify(cl)}`);
    contentLength = Number(cl);
  }
  const listed = connectionTokens(upstream.connection);
  const headers = Object.create(null) as OutgoingHttpHeaders;
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || RESPONSE_DROP.has(name) || listed.has(name)) continue;
    try {
      validateHeaderName(name);
      if (typeof value === 'string') validateHeaderValue(name, value);
      else for (const v of value) validateHeaderValue(name, v);
    } catch {
      throw new BadUpstreamResponse(`vLLM sent a header the gateway will not pass on (${JSON.stringify(name).slice(0, 80)})`);
    }
    headers[name] = value;
  }
  headers['x-request-id'] = requestId;
  return { headers, contentLength };
}
