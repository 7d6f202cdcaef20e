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
  private stopped: RelayAbort | null = null;

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

  /**
   * Ends every upstream call still running (shutdown deadline): streams get the SSE error event, the others
   * 503. Destroying the pool reaches all of them (undici errors every pending and running request), so no
   * request registers anywhere on the hot path. A Set of running relays did that before, and after a burst
   * of 1000 streams it made V8 promote about 1.2 MB per scavenge instead of 30 KB, still 48,000 requests
   * later: +40 % CPU per request (measured with --trace-gc-nvp; README, Performance).
   */
  abortAll(message: string): void {
    if (this.stopped) return;
    this.stopped = new RelayAbort('shutdown', message);
    this.pool.destroy(this.stopped).catch(() => {});
  }

  /** Why upstream calls were cut short, once abortAll has run: their errors are the shutdown's. */
  get shutdownAbort(): RelayAbort | null {
    return this.stopped;
  }

  /**
   * Relays one request through undici's dispatch API: vLLM's chunks are written to the Node response as
   * they arrive (no intermediate stream objects), and the upstream read pauses while the client is slow.
   * Never rejects: failures are answered through `onError` or ended in-stream, and reported in `result`,
   * which is filled in as the relay goes (the access log reads it even if the client leaves first).
   */
  forward(
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    method: string,
    pathAndQuery: string,
    body: Buffer | null,
    requestId: string,
    onError: (out: ServerResponse, e: GatewayError) => void,
    result: RelayResult,
  ): Promise<RelayResult> {
    return new Promise<RelayResult>((resolve) => {
      const relay = new Relay(this, outgoing, requestId, onError, result, resolve);
      try {
        this.pool.dispatch(
          { method: method as Dispatcher.HttpMethod, path: this.upstreamPath(pathAndQuery), headers: upstreamRequestHeaders(incoming.headers, requestId, this.opts.vllmApiKey), body },
          relay,
        );
      } catch (e) {
        // A destroyed pool (after abortAll) refuses at once; admission turns requests away before that.
        onError(outgoing, this.stopped ? shutdownError() : transportError(e));
        relay.finish(this.stopped ? 'shutdown' : 'other');
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => {});
  }
}

/**
 * One relay's state and undici's handler for it. A class rather than closures: on the hot path this is one
 * allocation per request instead of a dozen.
 */
class Relay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private aborted: RelayAbort | null = null;
  private headersSent = false;
  private errorBody: Buffer[] | null = null;
  private errorHeaders: Record<string, string | string[]> = {};
  private errorBytes = 0;
  private awaitingDrain = false;
  private readonly t0 = performance.now();
  private readonly onClose = () => {
    if (!this.out.writableFinished) this.abort(new RelayAbort('client_gone', 'the client went away'));
  };
  private readonly onDrain = () => {
    this.awaitingDrain = false;
    this.controller?.resume();
  };

  constructor(
    private readonly owner: Forwarder,
    private readonly out: ServerResponse,
    private readonly requestId: string,
    private readonly answerError: (out: ServerResponse, e: GatewayError) => void,
    private readonly result: RelayResult,
    private readonly resolve: (r: RelayResult) => void,
  ) {
    out.on('close', this.onClose); // emitted once; `once` would allocate a wrapper per request
  }

  private abort(reason: RelayAbort): void {
    if (this.aborted) return;
    this.aborted = reason;
    this.controller?.abort(reason);
  }

  finish(error?: RelayResult['error']): void {
    this.out.off('close', this.onClose);
    if (this.awaitingDrain) this.out.off('drain', this.onDrain);
    if (error) this.result.error = error;
    this.resolve(this.result);
  }

  onRequestStart(ctrl: Dispatcher.DispatchController): void {
    this.controller = ctrl;
    if (this.aborted) ctrl.abort(this.aborted);
  }

  onResponseStart(_ctrl: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: the final answer follows
    this.result.status = statusCode;
    if (statusCode >= 400) {
      // Error bodies are small: read them whole so non-OpenAI shapes can be wrapped (contract "Errors").
      this.errorBody = [];
      this.errorHeaders = headers as Record<string, string | string[]>;
      return;
    }
    const type = headers['content-type'];
    this.result.streamed = typeof type === 'string' && type.startsWith('text/event-stream');
    this.out.writeHead(statusCode, downstreamResponseHeaders(headers, this.requestId));
    this.headersSent = true;
  }

  onResponseData(ctrl: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.result.ttfbMs === null) this.result.ttfbMs = performance.now() - this.t0;
    if (this.errorBody) {
      this.errorBytes += chunk.length;
      if (this.errorBytes <= MAX_ERROR_BODY) this.errorBody.push(chunk);
      return;
    }
    if (!this.out.write(chunk) && !this.awaitingDrain) {
      this.awaitingDrain = true;
      ctrl.pause();
      this.out.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    if (this.errorBody) {
      const status = this.result.status;
      const out = normalizeErrorBody(status, Buffer.concat(this.errorBody).toString('utf8'));
      const h = downstreamResponseHeaders(this.errorHeaders, this.requestId);
      // Every 429 and 503 carries both retry hints, at most 60 s (contract "Errors"), vLLM's included.
      if (status === 429 || status === 503) Object.assign(h, retryHeaders(retryAfterMsOf(this.errorHeaders)));
      h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(out);
      this.out.writeHead(status, h);
      this.out.end(out);
    } else {
      this.out.end();
    }
    this.finish();
  }

  onResponseError(_ctrl: Dispatcher.DispatchController, err: Error): void {
    const aborted = this.aborted ?? this.owner.shutdownAbort;
    if (aborted?.why === 'client_gone') return this.finish('client_gone');
    const shutdown = aborted?.why === 'shutdown';
    if (!this.headersSent) {
      this.answerError(this.out, shutdown ? shutdownError() : transportError(err));
    } else if (this.result.streamed && !this.out.destroyed) {
      const msg = shutdown ? aborted!.message : `the stream from vLLM broke: ${(err as { code?: string }).code ?? err.message}; the engine may have crashed`;
      this.out.end(sseErrorEvent(msg, shutdown ? 'shutting_down' : 'engine_stream_broken'));
    } else {
      // A JSON body cut short cannot be mended: close the connection so the client sees an error.
      this.out.destroy(err);
    }
    this.finish(shutdown ? 'shutdown' : transportErrorKind(err));
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
