// An HTTP/1.1 response head (RFC 9112 §4–6) parsed from the bytes the upstream sent, and the body framing
// it implies. Pure: the upstream connection feeds it, the unit tests call it directly.

export class ResponseHeadError extends Error {
  readonly code = 'UPSTREAM_BAD_RESPONSE';
}

export type Headers = Record<string, string | string[]>;

/** How the body after a head is delimited: by chunked framing, a length, the connection's close, or not at all. */
export type Framing = { kind: 'chunked' } | { kind: 'length'; length: number } | { kind: 'close' } | { kind: 'none' };

export interface ResponseHead {
  status: number;
  /** HTTP/1.0, or `Connection: close`: the connection ends with this response. */
  closes: boolean;
  headers: Headers;
  /** Bytes of the head, blank line included. */
  size: number;
}

export const MAX_HEAD_BYTES = 64 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/;

/** Where the head ends in `buf` (just past its blank line), or -1 while it is incomplete. */
export function headEnd(buf: Buffer): number {
  const at = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return at < 0 ? -1 : at + 4;
}

/** Parses a complete head: `buf` holds it from offset 0 to `end` (headEnd's answer). */
export function parseHead(buf: Buffer, end: number): ResponseHead {
  const text = buf.toString('latin1', 0, end - 2);
  let eol = text.indexOf('\r\n');
  const m = STATUS_LINE.exec(text.slice(0, eol));
  if (!m) throw new ResponseHeadError(`not an HTTP/1.x status line: ${JSON.stringify(text.slice(0, Math.min(eol, 80)))}`);
  const headers: Headers = Object.create(null) as Headers;
  // One pass over the lines, without a split or a regular expression per line (on the hot path per request).
  for (let at = eol + 2; at < text.length; at = eol + 2) {
    eol = text.indexOf('\r\n', at);
    const colon = text.indexOf(':', at);
    if (colon <= at || colon > eol || !isToken(text, at, colon)) {
      throw new ResponseHeadError(`malformed header line: ${JSON.stringify(text.slice(at, Math.min(eol, at + 80)))}`);
    }
    const key = lowerAscii(text.slice(at, colon));
    const value = text.slice(colon + 1, eol).trim();
    const prev = headers[key];
    if (prev === undefined) headers[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[key] = [prev, value];
  }
  const connection = headers.connection;
  const closes = m[1] === '0' ? !hasToken(connection, 'keep-alive') : hasToken(connection, 'close');
  return { status: Number(m[2]), closes, headers, size: end };
}

// RFC 9110 §5.6.2 tchar, as a table.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

function isToken(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** Header names as uvicorn sends them are already lower case: no new string then. */
function lowerAscii(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

function hasToken(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const v of Array.isArray(value) ? value : [value]) for (const t of v.split(',')) if (t.trim().toLowerCase() === token) return true;
  return false;
}

/** RFC 9112 §6.3: what delimits the body of a response to `method`. */
export function framingOf(method: string, head: ResponseHead): Framing {
  const { status, headers } = head;
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) return { kind: 'none' };
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    const codings = (Array.isArray(te) ? te.join(',') : te).split(',');
    // Chunked must be the last coding; anything else is read until the connection closes.
    return codings[codings.length - 1]!.trim().toLowerCase() === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    const values = (Array.isArray(cl) ? cl.join(',') : cl).split(',').map((v) => v.trim());
    if (!values.every((v) => /^\d{1,15}$/.test(v) && v === values[0])) throw new ResponseHeadError(`invalid content-length: ${JSON.stringify(cl)}`);
    const length = Number(values[0]);
    return length === 0 ? { kind: 'none' } : { kind: 'length', length };
  }
  return { kind: 'close' };
}
