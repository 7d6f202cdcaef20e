// llhttp, the parser behind Node's http and undici, as a test oracle: the bytes a client receives, or an
// upstream sends, read the way a strict or a lenient HTTP/1.1 peer reads them.
import { createRequire } from 'node:module';

type Parser = {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(buf: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [k: number]: unknown;
};
type ParserClass = {
  new (): Parser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientAll: number;
  kLenientNone: number;
};

const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass };

export interface ParsedMessage {
  status: number;
  /** Request messages: method and target. */
  method?: string;
  url?: string;
  /** Name/value pairs as received (names in their case). */
  rawHeaders: string[];
  body: Buffer;
  complete: boolean;
}

export interface ParseResult {
  messages: ParsedMessage[];
  /** llhttp's error code (HPE_…) when it refused the bytes. */
  error?: string;
}

const METHODS = ['DELETE', 'GET', 'HEAD', 'POST', 'PUT', 'CONNECT', 'OPTIONS', 'TRACE'];

/**
 * Parses a whole byte stream of responses (or requests): `methods[i]` is the method of the request that the
 * i-th response answers (HEAD responses have no body). `eof`: the peer closed after these bytes.
 */
export function parseStream(bytes: Buffer, opts: { kind: 'response' | 'request'; lenient?: boolean; methods?: string[]; eof?: boolean }): ParseResult {
  const p = new HTTPParser();
  p.initialize(opts.kind === 'response' ? HTTPParser.RESPONSE : HTTPParser.REQUEST, {}, 64 * 1024, opts.lenient ? HTTPParser.kLenientAll : HTTPParser.kLenientNone);
  const messages: ParsedMessage[] = [];
  let cur: ParsedMessage | null = null;
  const bodies: Buffer[] = [];
  p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[], method: number, url: string, status: number) => {
    cur = { status, rawHeaders: headers, body: Buffer.alloc(0), complete: false };
    if (opts.kind === 'request') {
      cur.method = METHODS[method] ?? String(method);
      cur.url = url;
    }
    messages.push(cur);
    bodies.length = 0;
    const forMethod = opts.methods?.[messages.length - 1];
    return opts.kind === 'response' && (forMethod === 'HEAD' || (status >= 100 && status < 200)) ? 1 : 0;
  };
  p[HTTPParser.kOnBody] = (b: Buffer) => {
    bodies.push(Buffer.from(b));
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    if (!cur) return;
    cur.body = Buffer.concat(bodies);
    cur.complete = true;
    // An interim (1xx) response is not the answer: the next message is.
    if (opts.kind === 'response' && cur.status < 200 && cur.status >= 100) messages.pop();
    cur = null;
  };
  let error: string | undefined;
  const r = p.execute(bytes);
  if (r instanceof Error) error = (r as Error & { code?: string }).code ?? r.message;
  else if (opts.eof) {
    const f = p.finish();
    if (f instanceof Error) error = (f as Error & { code?: string }).code ?? f.message;
  }
  if (cur && !(cur as ParsedMessage).complete) (cur as ParsedMessage).body = Buffer.concat(bodies);
  p.close();
  return { messages, ...(error ? { error } : {}) };
}

/** A header's values from raw pairs, by lower-case name. */
export function headerValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}
