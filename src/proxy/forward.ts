// The streaming relay: vLLM's response is written to the client as it comes (undici's Node stream piped
// into the Node response, backpressure included); a client that leaves aborts the upstream request; a
// stream that breaks after its 200 ends with an SSE error event and [DONE].
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool } from 'undici';
import { GatewayError } from '../errors.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';
import { normalizeErrorBody, sseErrorEvent, transportError, transportErrorKind, type UpstreamErrorKind } from './upstream-errors.ts';

/** Why the gateway itself cut a relay short. */
export class RelayAbort extends Error {
  constructor(
    readonly why: 'client_gone' | 'shutdown',
    message: string,
  ) {
    super(message);
  }
}

/** Filled in as the relay goes, so that whoever logs the request sees it even before the relay returns. */
export interface RelayResult {
  status: number;
  ttfbMs: number | null;
  streamed: boolean;
  /** How the relay ended when it did not end normally. */
  error?: UpstreamErrorKind | 'client_gone' | 'shutdown';
}

export const newRelayResult = (): RelayResult => ({ status: 0, ttfbMs: null, streamed: false });

export interface ForwarderOptions {
  baseUrl: string;
  vllmApiKey: string | undefined;
  /** Long generations must not hit undici's 300 s defaults. */
  upstreamTimeoutMs: number;
}

const MAX_ERROR_BODY = 1 << 20;

export class Forwarder {
  readonly pool: Pool;
  private readonly prefix: string;
  private readonly active = new Set<AbortController>();

  constructor(private readonly opts: ForwarderOptions) {
    const url = new URL(opts.baseUrl);
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(url.origin, {
      connections: null,
      pipelining: 1,
      // uvicorn closes idle keep-alive sockets after 5 s: drop ours first.
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 4000,
      headersTimeout: opts.upstreamTimeoutMs,
      bodyTimeout: opts.upstreamTimeoutMs,
    });
  }

  get activeCount(): number {
    return this.active.size;
  }

  /** Ends every relay still running (shutdown deadline): streams get the SSE error event. */
  abortAll(message: string): void {
    for (const ac of this.active) ac.abort(new RelayAbort('shutdown', message));
  }

  async forward(
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    method: string,
    pathAndQuery: string,
    body: Buffer | null,
    requestId: string,
    onError: (e: GatewayError) => void,
    result: RelayResult = newRelayResult(),
  ): Promise<RelayResult> {
    const t0 = performance.now();
    const end = (status: number, error?: RelayResult['error']): RelayResult => {
      result.status = status;
      if (error) result.error = error;
      return result;
    };
    const ac = new AbortController();
    const onClose = () => {
      if (!outgoing.writableFinished) ac.abort(new RelayAbort('client_gone', 'the client went away'));
    };
    outgoing.once('close', onClose);
    this.active.add(ac);
    const done = () => {
      this.active.delete(ac);
      outgoing.off('close', onClose);
    };

    let res;
    try {
      res = await this.pool.request({
        method: method as 'GET',
        path: this.prefix + pathAndQuery,
        headers: upstreamRequestHeaders(incoming.headers, requestId, this.opts.vllmApiKey),
        body,
        signal: ac.signal,
      });
    } catch (e) {
      done();
      const reason = ac.signal.reason;
      if (reason instanceof RelayAbort) {
        if (reason.why === 'shutdown') onError(shutdownError());
        return end(reason.why === 'shutdown' ? 503 : 499, reason.why);
      }
      const mapped = transportError(e);
      onError(mapped);
      return end(mapped.status, transportErrorKind(e));
    }

    const status = res.statusCode;
    result.status = status;
    const headers = downstreamResponseHeaders(res.headers, requestId);
    if (status >= 400) {
      // Error bodies are small: read them whole so non-OpenAI shapes can be wrapped (contract "Errors").
      let text = '';
      try {
        text = await readLimited(res.body, MAX_ERROR_BODY);
      } catch {
        /* a broken error body is still an error */
      }
      done();
      if (ac.signal.aborted) return end(status, (ac.signal.reason as RelayAbort).why);
      result.ttfbMs = performance.now() - t0;
      const out = normalizeErrorBody(status, text);
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(out);
      outgoing.writeHead(status, headers);
      outgoing.end(out);
      return result;
    }

    const streamed = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
    result.streamed = streamed;
    outgoing.writeHead(status, headers);
    const upstream = res.body;
    upstream.once('data', () => {
      result.ttfbMs = performance.now() - t0;
    });
    return new Promise<RelayResult>((resolve) => {
      upstream.pipe(outgoing, { end: false });
      upstream.once('end', () => {
        done();
        outgoing.end();
        resolve(result);
      });
      upstream.once('error', (e: Error) => {
        upstream.unpipe(outgoing);
        done();
        const reason = ac.signal.reason;
        if (reason instanceof RelayAbort && reason.why === 'client_gone') {
          resolve(end(status, 'client_gone'));
          return;
        }
        const shutdown = reason instanceof RelayAbort && reason.why === 'shutdown';
        if (streamed && !outgoing.destroyed) {
          const msg = shutdown ? reason.message : `the stream from vLLM broke: ${(e as { code?: string }).code ?? e.message}; the engine may have crashed`;
          outgoing.end(sseErrorEvent(msg, shutdown ? 'shutting_down' : 'engine_stream_broken'));
        } else {
          // A JSON body cut short cannot be mended: close the connection so the client sees an error.
          outgoing.destroy(e);
        }
        resolve(end(status, shutdown ? 'shutdown' : transportErrorKind(e)));
      });
    });
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => {});
  }
}

const shutdownError = () =>
  new GatewayError(503, 'shutting_down', 'the gateway is shutting down', 'service_unavailable', { retryAfterMs: 5000 });

async function readLimited(stream: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    size += c.length;
    if (size > limit) break;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}
