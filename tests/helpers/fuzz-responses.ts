// Seeded upstream responses for the response-side fuzz, and what llhttp (as Node builds it) makes of them.
import { parseStream, type ParsedMessage } from './llhttp.ts';
import type { prng } from './prng.ts';

type Rng = ReturnType<typeof prng>;

export interface Case {
  id: number;
  bytes: Buffer;
  pieces: Buffer[];
  /** What makes the gateway refuse a response llhttp accepts (a 502 is then right). */
  policy: string[];
  needsEof: boolean;
}

const SSE_EVENTS = ['data: {"a":1}\n\n', 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', ': keep-alive\n\n', 'data: [DONE]\n\n', 'data: part', 'ial\n\n', 'event: x\r\ndata: y\r\n\r\n'];

function body(r: Rng, sse: boolean): string {
  if (sse) return Array.from({ length: 1 + r.int(5) }, () => r.pick(SSE_EVENTS)).join('');
  return r.pick(['{"id":"x","object":"chat.completion","choices":[]}', '', 'x'.repeat(r.int(5000)), '{"error":{"message":"m","type":"t","param":null,"code":400}}', '{"detail":"Not Found"}', 'not json']);
}

/** Chunk framing of `text` with seeded oddities: sizes, extensions, line ends, trailers, a missing end. */
function chunked(r: Rng, text: string): string {
  const parts: string[] = [];
  let at = 0;
  while (at < text.length) {
    const n = Math.min(text.length - at, 1 + r.int(40));
    parts.push(text.slice(at, at + n));
    at += n;
  }
  let out = '';
  for (const p of parts) {
    const size = Buffer.byteLength(p, 'latin1').toString(16);
    const odd = r.next();
    let line = size;
    if (odd < 0.04) line = size.toUpperCase().padStart(4, '0');
    else if (odd < 0.07) line = `${size};ext=1`;
    else if (odd < 0.09) line = `${size};ext="q v"`;
    else if (odd < 0.1) line = `${size} `; // spaces after the size
    else if (odd < 0.11) line = `${size}zz`;
    else if (odd < 0.12) line = `${size};a=\x01`;
    else if (odd < 0.13) line = `${size};a\nb`;
    else if (odd < 0.14) line = (parseInt(size, 16) + 1).toString(16); // one more than sent
    const eol = r.next() < 0.03 ? '\n' : '\r\n';
    const after = r.next() < 0.03 ? r.pick(['', '\n', 'X\r\n']) : '\r\n';
    out += `${line}${eol}${p}${after}`;
  }
  const end = r.next();
  if (end < 0.05) return out; // no last chunk: the body never ends
  if (end < 0.1) return `${out}0\r\nx-trailer: v\r\n\r\n`;
  if (end < 0.13) return `${out}0\r\nx-trailer: a\nb\r\n\r\n`;
  if (end < 0.16) return `${out}0\r\ncontent-length: 5\r\n\r\n`;
  if (end < 0.18) return `${out}0;ext=x\r\n\r\n`;
  return `${out}0\r\n\r\n`;
}

export function generate(r: Rng, id: number): Case {
  const policy: string[] = [];
  const sse = r.next() < 0.5;
  const statusLine = r.next() < 0.8
    ? 'HTTP/1.1 200 OK'
    : r.pick(['HTTP/1.1 201 Created', 'HTTP/1.1 204 No Content', 'HTTP/1.1 304 Not Modified', 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 404 Not Found',
        'HTTP/1.1 429 Too Many Requests', 'HTTP/1.1 500 Internal Server Error', 'HTTP/1.1 503 Service Unavailable', 'HTTP/1.0 200 OK', 'HTTP/1.1 200',
        'HTTP/1.1 099 Low', 'HTTP/1.1 600 High', 'HTTP/1.1 2x0 Bad', 'HTTP/2 200', 'HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK',
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK', 'HTTP/1.1 101 Switching Protocols']);
  const headers: string[] = [`content-type: ${sse ? 'text/event-stream; charset=utf-8' : 'application/json'}`];
  if (r.next() < 0.08) headers.push(r.pick(['x-odd: a\x7fb', 'x-odd: a\x00b', 'x-odd: a\rb', 'x-odd: caf\xe9', 'x-odd: a\x01b', 'x odd: v', 'x-fold: a\r\n b', 'x-odd:', `x-big: ${'b'.repeat(20_000)}`]));
  if (r.next() < 0.05) headers.push('connection: close');
  if (r.next() < 0.05) headers.push('x-request-id: from-vllm');
  const text = body(r, sse);
  const len = Buffer.byteLength(text, 'latin1');
  const framing = r.next();
  let payload = text;
  const chunkedPayload = () => (payload = chunked(r, text));
  if (framing < 0.4) {
    headers.push('transfer-encoding: chunked');
    chunkedPayload();
  } else if (framing < 0.7) headers.push(`content-length: ${len}`);
  else if (framing < 0.74) headers.push(`content-length: ${Math.max(0, len - 1 - r.int(3))}`);
  else if (framing < 0.77) headers.push(`content-length: ${len + 1 + r.int(3)}`);
  else if (framing < 0.8) headers.push(`content-length: ${len}`, `content-length: ${len}`);
  else if (framing < 0.82) headers.push(`content-length: ${len}, ${len}`);
  else if (framing < 0.85) {
    headers.push('transfer-encoding: chunked', `content-length: ${len}`);
    chunkedPayload();
  } else if (framing < 0.87) {
    headers.push('transfer-encoding: gzip, chunked');
    chunkedPayload();
  } else if (framing < 0.89) headers.push('transfer-encoding: identity');
  else if (framing < 0.91) {
    headers.push('Transfer-Encoding: CHUNKED');
    chunkedPayload();
  }
  // else: no framing header, the body ends when vLLM closes the connection
  const stray = r.next() < 0.05 ? r.pick(['HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nINJECTED', 'garbage\r\n\r\n']) : '';
  const bytes = Buffer.from(`${statusLine}\r\n${headers.join('\r\n')}\r\n\r\n${payload}${stray}`, 'latin1');
  // Pieces split the message anywhere, but whatever follows its end (a stray response, body bytes past a
  // Content-Length) comes with its last piece. Bytes that come later, once the gateway has sent another
  // request on the connection, are by HTTP/1.1 that request's answer: no client can tell them apart, and no
  // client request can make vLLM send them (the request-side tests hold that).
  const end = messageEnd(bytes);
  const pieces: Buffer[] = [];
  let at = 0;
  while (at < end) {
    const n = r.next() < 0.3 ? 1 + r.int(3) : 1 + r.int(200);
    pieces.push(bytes.subarray(at, Math.min(at + n, end)));
    at += n;
  }
  if (end < bytes.length) {
    const last = pieces.pop()!;
    pieces.push(bytes.subarray(end - last.length));
  }
  // The upstream closes the connection only when the response needs it to end (or never ends otherwise):
  // closing after a complete keep-alive response would race with the gateway reusing the connection.
  const needsEof = !parseStream(bytes, { kind: 'response', methods: ['POST'] }).messages[0]?.complete;
  return { id, bytes, pieces, policy, needsEof };
}

/** Where the first final message ends in `bytes` (its length when it never ends without a close). */
function messageEnd(bytes: Buffer): number {
  const complete = (n: number) => parseStream(bytes.subarray(0, n), { kind: 'response', methods: ['POST'] }).messages[0]?.complete === true;
  if (!complete(bytes.length)) return bytes.length;
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (complete(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** What llhttp makes of the upstream bytes: the first final message. */
export function reference(c: Case): { ok: boolean; message?: ParsedMessage; error?: string } {
  const res = parseStream(c.bytes, { kind: 'response', methods: ['POST'], eof: c.needsEof });
  const first = res.messages[0];
  if (first?.complete) return { ok: true, message: first };
  return { ok: false, ...(first ? { message: first } : {}), ...(res.error ? { error: res.error } : {}) };
}

/** Why the gateway may answer 502 to bytes llhttp accepts: its own refusals. */
export function policyOf(c: Case, ref: ParsedMessage): string[] {
  const out = [...c.policy];
  const head = c.bytes.toString('latin1', 0, c.bytes.indexOf('\r\n\r\n'));
  if (ref.status < 200 || ref.status > 599) out.push('status');
  if (/^HTTP\/1\.1 10[01] /m.test(head)) out.push('100 or 101');
  // undici counts every head of the exchange (interim ones included) against its limit.
  const headBytes = ref.rawHeaders.reduce((n, h) => n + h.length + 2, 0) + head.length;
  for (let i = 0; i < ref.rawHeaders.length; i += 2) {
    const [name, value] = [ref.rawHeaders[i]!.toLowerCase(), ref.rawHeaders[i + 1]!];
    if (name === 'transfer-encoding' && value.trim().toLowerCase() !== 'chunked') out.push('transfer coding');
    if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) out.push('header value Node refuses');
  }
  if (headBytes > 16 * 1024 - 256) out.push('head over 16 KiB');
  return out;
}

