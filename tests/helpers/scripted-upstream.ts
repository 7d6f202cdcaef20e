// A tiny vLLM stand-in on a raw TCP socket, in the test process, that answers /v1/* with bytes the test
// scripts exactly (split chunks, broken framing, a connection dropped mid-chunk). It answers what attach
// mode asks at start (/health, /version, /v1/models, /is_sleeping), so a real gateway can run in front of it.
import http from 'node:http';
import net from 'node:net';
import { CONTROL_USER_AGENT } from '../../src/engine/client.ts';

export interface ScriptedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  /** 1 for the first request on its connection. */
  onConnection: number;
  connection: number;
}

/** What to do with one /v1 request: write to the socket, end it, destroy it, or wait. */
export type Script = (req: ScriptedRequest, sock: net.Socket) => void | Promise<void>;

export interface ScriptedUpstream {
  url: string;
  requests: ScriptedRequest[];
  connections: number;
  /** Connections that have closed (by either side), by number. */
  closed: Set<number>;
  close(): void;
}

const json = (sock: net.Socket, body: string, status = '200 OK') =>
  sock.write(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);

export function startScriptedUpstream(script: Script): Promise<ScriptedUpstream> {
  const up: ScriptedUpstream = { url: '', requests: [], connections: 0, closed: new Set(), close: () => server.close() };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const connection = ++up.connections;
    sock.on('close', () => {
      sockets.delete(sock);
      up.closed.add(connection);
    });
    sock.on('error', () => {});
    let onConnection = 0;
    let buf = Buffer.alloc(0);
    let busy = false;
    const next = async (): Promise<void> => {
      if (busy) return;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buf.toString('latin1', 0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      const len = Number(headers['content-length'] ?? 0);
      if (buf.length < end + 4 + len) return;
      const [method, path] = lines[0]!.split(' ') as [string, string];
      const body = buf.toString('utf8', end + 4, end + 4 + len);
      buf = buf.subarray(end + 4 + len);
      const req: ScriptedRequest = { method, path, headers, body, onConnection: ++onConnection, connection };
      busy = true;
      if (path === '/health') sock.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
      else if (path === '/version') json(sock, '{"version":"0.19.1"}');
      else if (path === '/v1/models') json(sock, '{"object":"list","data":[{"id":"scripted","object":"model"}]}');
      else if (path === '/is_sleeping') json(sock, '{"is_sleeping":false}');
      else if (path === '/metrics') sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n');
      else if (headers['user-agent'] === CONTROL_USER_AGENT && path === '/v1/completions') json(sock, '{"choices":[{"text":" Paris."}]}'); // the wake check's question
      else if (path.startsWith('/v1/')) {
        up.requests.push(req);
        await script(req, sock);
      } else json(sock, '{"detail":"Not Found"}', '404 Not Found');
      busy = false;
      if (!sock.destroyed) await next();
    };
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      void next();
    });
  });
  up.close = () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      up.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      resolve(up);
    });
  });
}

/** One SSE event as a chunk of chunked framing. */
export const sseChunk = (data: string) => {
  const payload = `data: ${data}\n\n`;
  return `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`;
};

export const SSE_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n';

export const chatChunk = (content: string, finish: string | null = null) =>
  JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 1, model: 'scripted', choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: finish }] });

export interface ScriptedAnswer {
  status: number;
  reason: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * POSTs `body` with `x-script: script` through Node's own client, which checks the framing: a body that
 * ends with 'end' was framed right; one cut short rejects.
 */
export function postScript(port: number, script: string, body: unknown, headers: Record<string, string> = {}): Promise<ScriptedAnswer> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'x-script': script, ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, reason: res.statusMessage ?? '', headers: res.headers, body: Buffer.from(text, 'latin1').toString('utf8') }));
        res.on('aborted', () => reject(new Error('response aborted: the body was not complete')));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}
