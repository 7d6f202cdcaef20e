// A vLLM stand-in that records every request that reaches it, parsed by llhttp (Node's http server), and
// every byte sequence llhttp refused. It answers what attach mode asks at start, and answers vLLM's admin
// routes too (200), so that a request smuggled to one of them is recorded, not just refused.
import http from 'node:http';
import type net from 'node:net';
import { CONTROL_USER_AGENT } from '../../src/engine/client.ts';
import { headerValues } from './llhttp.ts';

export const VLLM_ADMIN_ROUTES = [
  '/sleep', '/wake_up', '/is_sleeping', '/collective_rpc', '/reset_prefix_cache', '/reset_mm_cache', '/reset_encoder_cache',
  '/pause', '/resume', '/is_paused', '/start_profile', '/stop_profile', '/server_info', '/release_kv_cache_memory',
];

export interface RecordedRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
  connection: number;
}

export interface RecordingUpstream {
  url: string;
  /** Every request llhttp parsed, start-up probes included. */
  all: RecordedRequest[];
  /** Requests that are not the gateway's own control calls. */
  relayed(): RecordedRequest[];
  /** The gateway's own control calls (start-up probes, the wake check, its /sleep and /wake routes). */
  control(): RecordedRequest[];
  /** llhttp refusals: bytes the gateway sent that are not HTTP/1.1. */
  parseErrors: string[];
  close(): void;
}

/**
 * The gateway's own calls carry its control user agent, on a pool of their own. A client can send that user
 * agent too, so a request only counts as control on a connection that never carried a relayed request (the
 * relay gives every request an x-request-id; a request smuggled into one rides its connection).
 */
function isControlIn(all: RecordedRequest[]): (r: RecordedRequest) => boolean {
  const relayConnections = new Set(all.filter((r) => headerValues(r.rawHeaders, 'x-request-id').length > 0).map((r) => r.connection));
  return (r) => hasControlAgent(r) && !relayConnections.has(r.connection);
}

const hasControlAgent = (r: RecordedRequest) => headerValues(r.rawHeaders, 'user-agent')[0] === CONTROL_USER_AGENT;

/** The admin routes among `requests`. */
export const adminRouteHits = (requests: RecordedRequest[]) => requests.filter((r) => VLLM_ADMIN_ROUTES.includes(r.url.split('?')[0]!));

export function startRecordingUpstream(opts: { apiKey?: string } = {}): Promise<RecordingUpstream> {
  const up: RecordingUpstream = {
    url: '',
    all: [],
    relayed: () => {
      const isControl = isControlIn(up.all);
      return up.all.filter((r) => !isControl(r));
    },
    control: () => up.all.filter(isControlIn(up.all)),
    parseErrors: [],
    close: () => {},
  };
  let connections = 0;
  let sleeping = false;
  const server = http.createServer({ keepAliveTimeout: 5000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rec: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
        connection: (req.socket as net.Socket & { recId?: number }).recId ?? 0,
      };
      up.all.push(rec);
      const json = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      };
      const path = rec.url.split('?')[0]!;
      if (path === '/health') return void res.writeHead(200, { 'content-length': 0 }).end();
      if (path === '/version') return json(200, { version: '0.19.1' });
      if (path === '/is_sleeping') return json(200, { is_sleeping: sleeping });
      if (path === '/metrics') return void res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 0 }).end();
      if (path === '/v1/models' && rec.method === 'GET') return json(200, { object: 'list', data: [{ id: 'recorded', object: 'model' }] });
      if (hasControlAgent(rec) && path === '/v1/completions') return json(200, { choices: [{ text: ' Paris.' }] });
      if (path.startsWith('/v1/')) {
        if (opts.apiKey && req.headers.authorization !== `Bearer ${opts.apiKey}`) return json(401, { error: 'Unauthorized' });
        return json(200, { id: 'rec', object: 'chat.completion', model: 'recorded', path: rec.url, choices: [] });
      }
      // Sleep and wake change what /is_sleeping says, as in vLLM: the gateway's own /sleep and /wake succeed.
      if (path === '/sleep' || path === '/wake_up') sleeping = path === '/sleep';
      if (VLLM_ADMIN_ROUTES.includes(path)) return json(200, { reached: path });
      json(404, { detail: 'Not Found' });
    });
  });
  server.on('connection', (s: net.Socket & { recId?: number }) => {
    s.recId = ++connections;
  });
  server.on('clientError', (err: Error & { code?: string }, sock) => {
    up.parseErrors.push(err.code ?? err.message);
    sock.destroy();
  });
  up.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      up.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      resolve(up);
    });
  });
}
