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
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Where the head ends in `buf` (just past its blank line), or -1 while it is incomplete. */
export function headEnd(buf: Buffer): number {
  const at = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return at < 0 ? -1 : at + 4;
}

/** Parses a complete head: `buf` holds it from offset 0 to `end` (headEnd's answer). */
export function parseHead(buf: Buffer, end: number): ResponseHead {
  const lines = buf.toString('latin1', 0, end - 4).split('\r\n');
  const m = STATUS_LINE.exec(lines[0]!);
  if (!m) throw new ResponseHeadError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const headers: Headers = Object.create(null) as Headers;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!HEADER_NAME.test(name)) throw new ResponseHeadError(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prev = headers[key];
    if (prev === undefined) headers[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[key] = [prev, value];
  }
  const connection = headers.connection;
  const closes = m[1] === '0' ? !hasToken(connection, 'keep-alive') : hasToken(connection, 'close');
  return { status: Number(m[2]), closes, headers, size: end };
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
