import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain HTTP request on a fresh connection: shows what SDKs hide (empty bodies, exact headers). */
export function raw(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number; onFirstChunk?: () => void } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        if (!chunks.length) init.onFirstChunk?.();
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(init.timeoutMs ?? 30_000, () => req.destroy(new Error('raw request timed out')));
    req.on('error', reject);
    req.end(init.body);
  });
}

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  raw(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** Resolves with the socket error code (e.g. ECONNREFUSED) or 'connected'. */
export function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

/** Reads an SSE body into its `data:` payloads. */
export function sseData(body: string): string[] {
  return body
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6));
}

/** The last event of an SSE body, parsed, after checking that the stream ended with `data: [DONE]`. */
export function lastEventBeforeDone(body: string): any {
  const data = sseData(body);
  assert.equal(data.at(-1), '[DONE]');
  return JSON.parse(data.at(-2)!);
}

/**
 * Sends bytes exactly as given on a fresh socket (no URL normalisation, unlike http.request) and
 * resolves with the status code of the answer, or 0 when the server closed without one.
 */
export function rawExchange(port: number, request: string | Buffer, opts: { timeoutMs?: number; endAfterWrite?: boolean } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text });
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 10_000);
    sock.on('data', (c) => {
      text += c.toString('latin1');
      // One response is enough: stop at the end of its headers plus a declared body.
      const head = text.indexOf('\r\n\r\n');
      if (head >= 0) {
        const len = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, head));
        if (len && text.length >= head + 4 + Number(len[1])) finish();
      }
    });
    sock.on('error', finish);
    sock.on('close', finish);
    sock.write(request);
    if (opts.endAfterWrite) sock.end();
  });
}

/**
 * Writes `request` (one or several pipelined requests) on a fresh socket and collects every byte the server
 * sends until `done(bytes)` says enough, the server closes, or the deadline passes.
 */
export function collectRaw(
  port: number,
  request: string | Buffer,
  opts: { done?: (bytes: Buffer) => boolean; timeoutMs?: number } = {},
): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 10_000);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.done?.(Buffer.concat(chunks))) finish(false);
    });
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.write(request);
  });
}
