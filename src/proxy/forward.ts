// The streaming relay: vLLM's response is written to the client as it comes (undici's dispatch handler
// writing straight into the Node response, backpressure included); a client that leaves aborts the upstream
// request; a stream that breaks after its 200 ends with an SSE error event and [DONE].
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { GatewayError, retryHeaders } from '../errors.ts';
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
  private readonly active = new Set<(reason: RelayAbort) => void>();

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

  /** The upstream path for a gateway path: VLLM_URL may carry a path prefix. */
  upstreamPath(pathAndQuery: string): string {
    return this.prefix + pathAndQuery;
  }

  /** Ends every relay still running (shutdown deadline): streams get the SSE error event. */
  abortAll(message: string): void {
    for (const abort of this.active) abort(new RelayAbort('shutdown', message));
  }

  /** Lets another upstream call (POST /inference) be ended by abortAll too; returns its release. */
  track(abort: (reason: RelayAbort) => void): () => void {
    this.active.add(abort);
    return () => this.active.delete(abort);
  }

  /**
   * Relays one request through undici's dispatch API: vLLM's chunks are written to the Node response as
   * they arrive (no intermediate stream objects), and the upstream read pauses while the client is slow.
   * Never rejects: failures are answered through `onError` or ended in-stream, and reported in the result.
   */
  forward(
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
    return new Promise<RelayResult>((resolve) => {
      let controller: Dispatcher.DispatchController | null = null;
      let aborted: RelayAbort | null = null;
      let headersSent = false;
      let errorBody: Buffer[] | null = null;
      let errorHeaders: Record<string, string | string[]> = {};
      let errorBytes = 0;
      let awaitingDrain = false;

      const abort = (reason: RelayAbort) => {
        if (aborted) return;
        aborted = reason;
        controller?.abort(reason);
      };
      const onClose = () => {
        if (!outgoing.writableFinished) abort(new RelayAbort('client_gone', 'the client went away'));
      };
      const onDrain = () => {
        awaitingDrain = false;
        controller?.resume();
      };
      const finish = (error?: RelayResult['error']) => {
        this.active.delete(abort);
        outgoing.off('close', onClose);
        outgoing.off('drain', onDrain);
        if (error) result.error = error;
        resolve(result);
      };
      outgoing.once('close', onClose);
      this.active.add(abort);

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(ctrl) {
          controller = ctrl;
          if (aborted) ctrl.abort(aborted);
        },
        onResponseStart(_ctrl, statusCode, headers) {
          if (statusCode < 200) return; // 1xx: the final answer follows
          result.status = statusCode;
          if (statusCode >= 400) {
            // Error bodies are small: read them whole so non-OpenAI shapes can be wrapped (contract "Errors").
            errorBody = [];
            errorHeaders = headers as Record<string, string | string[]>;
            return;
          }
          result.streamed = String(headers['content-type'] ?? '').startsWith('text/event-stream');
          outgoing.writeHead(statusCode, downstreamResponseHeaders(headers as Record<string, string | string[]>, requestId));
          headersSent = true;
        },
        onResponseData(ctrl, chunk) {
          if (result.ttfbMs === null) result.ttfbMs = performance.now() - t0;
          if (errorBody) {
            errorBytes += chunk.length;
            if (errorBytes <= MAX_ERROR_BODY) errorBody.push(chunk);
            return;
          }
          if (!outgoing.write(chunk) && !awaitingDrain) {
            awaitingDrain = true;
            ctrl.pause();
            outgoing.once('drain', onDrain);
          }
        },
        onResponseEnd() {
          if (errorBody) {
            const out = normalizeErrorBody(result.status, Buffer.concat(errorBody).toString('utf8'));
            const h = downstreamResponseHeaders(errorHeaders, requestId);
            // Every 429 and 503 carries both retry hints, at most 60 s (contract "Errors"), vLLM's included.
            if (result.status === 429 || result.status === 503) Object.assign(h, retryHeaders(retryAfterMsOf(errorHeaders)));
            h['content-type'] = 'application/json';
            h['content-length'] = Buffer.byteLength(out);
            outgoing.writeHead(result.status, h);
            outgoing.end(out);
          } else {
            outgoing.end();
          }
          finish();
        },
        onResponseError(_ctrl, err) {
          const why = aborted?.why;
          if (why === 'client_gone') return finish('client_gone');
          const kind = why === 'shutdown' ? 'shutdown' : transportErrorKind(err);
          if (!headersSent) {
            onError(why === 'shutdown' ? shutdownError() : transportError(err));
          } else if (result.streamed && !outgoing.destroyed) {
            const msg = why === 'shutdown' ? aborted!.message : `the stream from vLLM broke: ${(err as { code?: string }).code ?? err.message}; the engine may have crashed`;
            outgoing.end(sseErrorEvent(msg, why === 'shutdown' ? 'shutting_down' : 'engine_stream_broken'));
          } else {
            // A JSON body cut short cannot be mended: close the connection so the client sees an error.
            outgoing.destroy(err);
          }
          finish(kind);
        },
      };
      try {
        this.pool.dispatch(
          { method: method as Dispatcher.HttpMethod, path: this.upstreamPath(pathAndQuery), headers: upstreamRequestHeaders(incoming.headers, requestId, this.opts.vllmApiKey), body },
          handler,
        );
      } catch (e) {
        onError(transportError(e));
        finish('other');
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => {});
  }
}

/** vLLM's own hint when it gave one (`retry-after-ms`, or `retry-after` in seconds), else 5 s. */
function retryAfterMsOf(h: Record<string, string | string[] | undefined>): number {
  const ms = Number(h['retry-after-ms']);
  if (Number.isFinite(ms) && ms > 0) return ms;
  const s = Number(h['retry-after']);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 5000;
}

export const shutdownError = () =>
  new GatewayError(503, 'shutting_down', 'the gateway is shutting down', 'service_unavailable', { retryAfterMs: 5000 });
