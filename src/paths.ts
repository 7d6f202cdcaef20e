// Request targets, read once from the raw request line. Routing sees the canonical path (percent-decoded
// until stable, dot segments removed, repeated slashes folded), so that no spelling of a path
// (`/v1/../sleep`, `/v1/%2e%2e/wake_up`, `//collective_rpc`) reaches a route it does not name. vLLM gets a
// target that means exactly that canonical path to a server that decodes once, in visible ASCII only.

/** The path of a target that cannot be routed: a 400. It starts with a byte no real path has. */
export const INVALID_PATH = '/\u0000invalid';

export interface Target {
  /** What routing sees: the canonical path, or INVALID_PATH. */
  readonly path: string;
  /** The query with its `?` (empty when none), as the client sent it: visible ASCII. */
  readonly query: string;
  /** The path vLLM is sent for this target: the raw path when it is already canonical, else the canonical one re-encoded. */
  readonly upstreamPath: string;
}

const INVALID: Target = Object.freeze({ path: INVALID_PATH, query: '', upstreamPath: INVALID_PATH });

// Paths that are canonical as they are, in characters that need no encoding (the usual ones). Every segment
// starts with a character that is not a dot, so none is a dot segment.
const PLAIN_PATH = /^(?:\/[A-Za-z0-9\-_~!$&'()*+,;=:@]+(?:\.+[A-Za-z0-9\-_~!$&'()*+,;=:@]+)*\.*)+\/?$|^\/$/;
// A byte that must never appear in a target: outside visible ASCII, or a fragment.
const NOT_VISIBLE = /[^\x21-\x7e]|#/;
// In a decoded path: a byte outside visible ASCII, a query or fragment delimiter, or a backslash (a
// separator to some servers).
const BAD_DECODED = /[^\x21-\x7e]|[?#\\]/;
const MAX_DECODE_ROUNDS = 4;

/** Parses a request target (origin form, or absolute form for http and https). Pure. */
export function parseTarget(url: string): Target {
  let start = 0;
  if (url.charCodeAt(0) !== 47 /* / */) {
    // Absolute form: the authority ends at the first /, ? or #; a user name in it has no use here.
    const scheme = url.startsWith('http://') ? 7 : url.startsWith('https://') ? 8 : -1;
    if (scheme < 0) return INVALID;
    const end = url.slice(scheme).search(/[/?#]/);
    if (end < 0 || url[scheme + end] !== '/' || url.slice(scheme, scheme + end).includes('@')) return INVALID;
    start = scheme + end;
  }
  const q = url.indexOf('?', start);
  const raw = q < 0 ? (start === 0 ? url : url.slice(start)) : url.slice(start, q);
  const query = q < 0 ? '' : url.slice(q);
  if (query && NOT_VISIBLE.test(query)) return INVALID;
  if (PLAIN_PATH.test(raw)) return { path: raw, query, upstreamPath: raw };
  return canonicalTarget(raw, query);
}

function canonicalTarget(raw: string, query: string): Target {
  if (NOT_VISIBLE.test(raw) || raw.includes('\\')) return INVALID;
  let decoded = raw;
  // Decoded until stable, so that a double encoding (%252e) cannot carry a dot segment or a control
  // character past the checks to a server that decodes once more.
  for (let i = 0; i < MAX_DECODE_ROUNDS && decoded.includes('%'); i++) {
    try {
      decoded = decodeURIComponent(decoded);
    } catch {
      return INVALID;
    }
  }
  if (decoded.includes('%') || BAD_DECODED.test(decoded)) return INVALID;
  const segments: string[] = [];
  for (const seg of decoded.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(seg);
  }
  const trailing = decoded.endsWith('/') && segments.length > 0 ? '/' : '';
  const path = '/' + segments.join('/') + trailing;
  const upstreamPath = path === raw ? raw : '/' + segments.map(encodeSegment).join('/') + trailing;
  return { path, query, upstreamPath };
}

// RFC 3986 pchar, less percent-encoded triplets: what a path segment may hold unencoded.
const PCHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;

/** A decoded segment (visible ASCII, no `/`, `%`, `?`, `#` or `\`) in the form every server reads back as it. */
function encodeSegment(seg: string): string {
  let out = '';
  for (const ch of seg) out += PCHAR.test(ch) ? ch : '%' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');
  return out;
}
