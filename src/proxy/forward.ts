// The streaming relay: vLLM's response is written to the client as it comes (the upstream connection's
// bytes straight into the Node response, backpressure included); a client that leaves aborts the upstream
// request; a stream that breaks after its 200 ends with an SSE error event and [DONE].
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { GatewayError, retryHeaders } from '../errors.ts';
import { frameChunk, LAST_CHUNK } from './chunked.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts';
import type { Framing, ResponseHead } from './response-head.ts';
import { UpstreamPool, type Exchange, type ExchangeHandler } from './upstream.ts';
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
  /** Longest silence from vLLM while a request runs: long generations must not be cut. */
  upstreamTimeoutMs: number;
}

const MAX_ERROR_BODY = 1 << 20;

export class Forwarder {
  private readonly pool: UpstreamPool;
  private readonly prefix: string;
  private stopped: RelayAbort | null = null;

  constructor(private readonly opts: ForwarderOptions) {
    const url = new URL(opts.baseUrl);
    this.prefix = url.pathname.replace(/\/+$/, '');
    // uvicorn closes idle keep-alive sockets after 5 s: drop ours first.
    this.pool = new UpstreamPool(url.origin, { timeoutMs: opts.upstreamTimeoutMs, keepAliveMs: 4000 });
  }

  /** The upstream path for a gateway path: VLLM_URL may carry a path prefix. */
  upstreamPath(pathAndQuery: string): string {
    return this.prefix + pathAndQuery;
  }

  /**
   * Ends every upstream call still running (shutdown deadline): streams get the SSE error event, the others
   * 503. The pool reaches them through its connections, which live across requests: nothing registers per
   * request. A Set of running relays did that once, and after a burst of 1000 streams it made V8 promote
   * about 1.2 MB per scavenge instead of 30 KB, still 48,000 requests later: +40 % CPU per request
   * (measured with --trace-gc-nvp; README, Performance).
   */
  abortAll(message: string): void {
    if (this.stopped) return;
    this.stopped = new RelayAbort('shutdown', message);
    this.pool.destroy(this.stopped);
  }

  /** Why upstream calls were cut short, once abortAll has run: their errors are the shutdown's. */
  get shutdownAbort(): RelayAbort | null {
    return this.stopped;
  }

  /**
   * Relays one request: vLLM's chunks are written to the Node response as they arrive, as vLLM framed them
   * when the client speaks HTTP/1.1 (one read, one write per chunk), and the upstream read pauses while the
   * client is slow. Never rejects: failures are answered through `onError` or ended in-stream, and reported
   * in `result`, which is filled in as the relay goes (the access log reads it even if the client leaves first).
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
        relay.exchange = this.pool.dispatch(
          { method, path: this.upstreamPath(pathAndQuery), headers: upstreamRequestHeaders(incoming.headers, requestId, this.opts.vllmApiKey), body },
          relay,
        );
      } catch (e) {
        // A destroyed pool (after abortAll) refuses at once; admission turns requests away before that.
        onError(outgoing, this.stopped ? shutdownError() : transportError(e));
        relay.finish(this.stopped ? 'shutdown' : 'other');
      }
    });
  }

  /** A whole JSON exchange (POST /inference): status and decoded body. Throws transport failures as they are. */
  async requestJson(path: string, requestId: string, body: unknown, signal: AbortSignal): Promise<{ status: number; text: string }> {
    const headers = { ...upstreamRequestHeaders({}, requestId, this.opts.vllmApiKey), 'content-type': 'application/json' };
    const res = await this.pool.request({ method: 'POST', path: this.upstreamPath(path), headers, body: Buffer.from(JSON.stringify(body)) }, signal);
    return { status: res.status, text: res.body.toString('utf8') };
  }

  close(): void {
    this.pool.close();
  }
}

/**
 * One relay's state and the upstream exchange's handler for it. A class rather than closures: on the hot
 * path this is one allocation per request instead of a dozen.
 */
class Relay implements ExchangeHandler {
  exchange: Exchange | null = null;
  private aborted: RelayAbort | null = null;
  private headersSent = false;
  /** The response carries vLLM's own chunked framing: what the gateway adds must be framed too. */
  private raw = false;
  private errorBody: Buffer[] | null = null;
  private errorHeaders: Record<string, string | string[]> = {};
  private errorBytes = 0;
  /** What a slow client's 'drain' is awaited on (the response, or its socket), while it is. */
  private awaitingDrain: NodeJS.EventEmitter | null = null;
  /** Raw relays, once the head is out: the client's socket, written directly. */
  private direct: Socket | null = null;
  private readonly t0 = performance.now();
  private readonly onClose = () => {
    if (!this.out.writableFinished) this.abort(new RelayAbort('client_gone', 'the client went away'));
  };
  private readonly onDrain = () => {
    this.awaitingDrain = null;
    this.exchange?.resume();
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
    this.exchange?.abort(reason);
  }

  finish(error?: RelayResult['error']): void {
    this.out.off('close', this.onClose);
    this.awaitingDrain?.off('drain', this.onDrain);
    if (error) this.result.error = error;
    this.resolve(this.result);
  }

  onHead(head: ResponseHead, framing: Framing): boolean {
    const status = head.status;
    this.result.status = status;
    if (status >= 400) {
      // Error bodies are small: read them whole so non-OpenAI shapes can be wrapped (contract "Errors").
      this.errorBody = [];
      this.errorHeaders = head.headers;
      return false;
    }
    const type = head.headers['content-type'];
    this.result.streamed = typeof type === 'string' && type.startsWith('text/event-stream');
    try {
      this.out.writeHead(status, downstreamResponseHeaders(head.headers, this.requestId));
    } catch (e) {
      // Node validates each header as it sets it: take back those set before the one it refused.
      for (const name of this.out.getHeaderNames()) if (name !== 'x-request-id' && name !== 'connection') this.out.removeHeader(name);
      throw e;
    }
    this.headersSent = true;
    // writeHead has decided the framing towards the client. Where Node chose chunked (an HTTP/1.1 client with
    // a body to get), vLLM's chunks go out as they came, framing and all, and Node adds none of its own; its
    // end() then adds no terminating chunk either (vLLM's is relayed). HTTP/1.0 clients get the decoded body.
    if (framing.kind === 'chunked' && this.out.chunkedEncoding) {
      this.out.chunkedEncoding = false;
      this.raw = true;
    }
    return this.raw;
  }

  onData(chunk: Buffer): boolean {
    if (this.result.ttfbMs === null) this.result.ttfbMs = performance.now() - this.t0;
    if (this.errorBody) {
      this.errorBytes += chunk.length;
      if (this.errorBytes <= MAX_ERROR_BODY) this.errorBody.push(chunk);
      return true;
    }
    const direct = this.direct;
    if (direct) {
      if (direct.write(chunk)) return true;
      this.waitDrain(direct);
      return false;
    }
    const ok = this.out.write(chunk);
    // A raw relay's first write carried the response head; from the second on, vLLM's framed chunks go to the
    // socket itself. Through the response, each write costs a cork, a nextTick and a buffered entry (about
    // 7 µs of user CPU per paced chunk, measured): the bytes would be the same. Node's own end() still
    // closes the response, after the socket has flushed what was written here.
    if (this.raw && this.out.socket) this.direct = this.out.socket;
    if (ok) return true;
    this.waitDrain(this.out);
    return false;
  }

  private waitDrain(on: NodeJS.EventEmitter): void {
    if (this.awaitingDrain) return;
    this.awaitingDrain = on;
    on.once('drain', this.onDrain);
  }

  onEnd(): void {
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

  onError(err: Error): void {
    const aborted = this.aborted ?? this.owner.shutdownAbort;
    if (aborted?.why === 'client_gone') return this.finish('client_gone');
    const shutdown = aborted?.why === 'shutdown';
    const kind = transportErrorKind(err);
    if (!this.headersSent) {
      this.answerError(this.out, shutdown ? shutdownError() : transportError(err));
    } else if (this.result.streamed && !this.out.destroyed) {
      const msg = shutdown
        ? aborted!.message
        : kind === 'timeout'
          ? `${err.message} (UPSTREAM_TIMEOUT_SECONDS): the stream was ended`
          : `the stream from vLLM broke: ${(err as { code?: string }).code ?? err.message}; the engine may have crashed`;
      const event = sseErrorEvent(msg, shutdown ? 'shutting_down' : 'engine_stream_broken');
      // Raw relays stop at a chunk boundary: the event is a chunk of its own, then the body ends.
      this.out.end(this.raw ? frameChunk(event) + LAST_CHUNK : event);
    } else {
      // A JSON body cut short cannot be mended: close the connection so the client sees an error.
      this.out.destroy(err);
    }
    this.finish(shutdown ? 'shutdown' : kind);
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
