// Building the Node server for the app and listening are separate steps (tests may do only the first).
import { createServer as createHttpServer, STATUS_CODES, type RequestListener, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError } from './errors.ts';
import { requestIdOf } from './proxy/headers.ts';
import type { AddressInfo } from 'node:net';

export interface ServerLimits {
  /** The whole request (headers and body) must arrive within this; a trickling client cannot hold a slot. */
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderSize: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  requestTimeoutMs: 120_000,
  headersTimeoutMs: 30_000,
  keepAliveTimeoutMs: 65_000,
  maxHeaderSize: 32 * 1024,
};

export function limitsFor(clientTimeoutMs: number): ServerLimits {
  return {
    ...DEFAULT_LIMITS,
    requestTimeoutMs: clientTimeoutMs,
    headersTimeoutMs: Math.min(DEFAULT_LIMITS.headersTimeoutMs, clientTimeoutMs),
  };
}

export function createServer(listener: RequestListener, limits: ServerLimits = DEFAULT_LIMITS): Server {
  const server = createHttpServer(
    {
      maxHeaderSize: limits.maxHeaderSize,
      noDelay: true,
      // requestTimeout is only enforced when Node checks its connections (30 s by default): check often enough.
      connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(limits.requestTimeoutMs / 4))),
    },
    listener,
  );
  server.on('clientError', answerClientError);
  server.requestTimeout = limits.requestTimeoutMs;
  server.headersTimeout = limits.headersTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  return server;
}

/**
 * Node's default accept queue is 511: a burst of more new connections (a thousand clients opening streams
 * at once) overflows it, the kernel drops the SYNs and those clients wait a second or more to retry. The
 * kernel caps this at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096;

export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * What Node rejects before the app sees it (malformed request, headers over the limit, a client too slow)
 * still gets an OpenAI-shaped answer with a request id, instead of Node's bare status line.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: unknown }): void {
  // A response still owed on this connection (a pipelined request came before the bad bytes) must not get
  // another response written into it, nor the bad bytes' answer in its place: the connection just ends.
  if (err.code === 'ECONNRESET' || !socket.writable || socket._httpMessage) {
    socket.destroy();
    return;
  }
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new GatewayError('headers_too_large', 'the request headers are too large')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new GatewayError('request_timeout', 'the request was not received in time (CLIENT_TIMEOUT_SECONDS)')
        : new GatewayError('bad_request', 'malformed HTTP request');
  const body = JSON.stringify(e.body());
  // Node's own response objects are not available here (no request was parsed): the head is written whole.
  socket.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestIdOf(undefined)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
