// The streaming relay on undici's dispatch API: llhttp decodes vLLM's response, and the gateway writes what
// it decoded to the client, chunk framing included (size line, data and CRLF in one write, straight to the
// socket), never vLLM's own framing bytes or headers. A client that reads slowly pauses vLLM's stream and is
// cut after CLIENT_STALL_TIMEOUT_SECONDS; a client that leaves aborts the upstream request; a stream that
// breaks after its 200 ends on an event boundary with an SSE error event and [DONE].
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher, Pool } from 'undici';
import { GatewayError, retryHeaders } from '../errors.ts';
import { BadUpstreamResponse, clientResponseHead, upstreamRequestHeaders } from './headers.ts';
import { EventBoundary } from './sse-events.ts';
import { bufferedRequest, createUpstreamPool } from './upstream.ts';
import { normalizeErrorBody, ResponseTooLarge, sseErrorEvent, transportError, transportErrorKind, type UpstreamErrorKind } from './upstream-errors.ts';

/** Why the gateway itself cut a relay short. */
export class RelayAbort extends Error {
  override readonly name = 'RelayAbort';
  constructor(
    readonly why: 'client_gone' | 'client_stalled' | 'shutdown',
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
  error?: UpstreamErrorKind | RelayAbort['why'];
}

export const newRelayResult = (): RelayResult => ({ status: 0, ttfbMs: null, streamed: false });

export interface ForwarderOptions {
  baseUrl: string;
  vllmApiKey: string | undefined;
  /** Longest silence from vLLM while a request runs: long generations must not be cut. */
  upstreamTimeoutMs: number;
  /** How long a client may read nothing while vLLM's stream waits for it; 0 = forever. */
  clientStallMs: number;
}

/** Error bodies are read whole (to wrap the ones that are not OpenAI-shaped): no more than this. */
const MAX_ERROR_BODY = 1 << 20;
/** /inference reads the completion whole: no more than this. */
const MAX_INFERENCE_BODY = 8 << 20;
/** An SSE event is held until it is whole, up to this; a larger one is passed on as it comes. */
const MAX_HELD_EVENT = 256 << 10;
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

export class Forwarder {
  private readonly pool: Pool;
  private readonly prefix: string;
  private stopped: RelayAbort | null = null;

  constructor(readonly opts: ForwarderOptions) {
    ({ pool: this.pool, prefix: this.prefix } = createUpstreamPool(opts.baseUrl, { timeoutMs: opts.upstreamTimeoutMs }));
  }

  /**
   * Ends every upstream call still running (shutdown deadline): streams get the SSE error event, the others
   * 503. Destroying the pool reaches them through its connections: nothing registers per request.
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
   * Relays one request to `target` (a path and query that parseTarget produced). Never rejects: failures are
   * answered through `onError` or ended in-stream, and reported in `result`, which is filled in as the relay
   * goes (the access log reads it even if the client leaves first).
   */
  forward(
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    method: string,
    target: string,
    body: Buffer | null,
    requestId: string,
    onError: (out: ServerResponse, e: GatewayError) => void,
    result: RelayResult,
  ): Promise<RelayResult> {
    return new Promise<RelayResult>((resolve) => {
      const relay = new Relay(this, outgoing, requestId, onError, result, resolve);
      const headers = upstreamRequestHeaders(incoming.rawHeaders, requestId, this.opts.vllmApiKey);
      // A synchronous refusal (a destroyed pool, an argument undici will not write) reaches onResponseError.
      this.pool.dispatch({ method, path: this.prefix + target, headers, body }, relay);
    });
  }

  /** A whole JSON exchange (POST /inference): status and decoded body, at most MAX_INFERENCE_BODY bytes. */
  async requestJson(path: string, requestId: string, body: unknown, signal: AbortSignal): Promise<{ status: number; text: string }> {
    const headers = upstreamRequestHeaders(['content-type', 'application/json'], requestId, this.opts.vllmApiKey);
    const res = await bufferedRequest(this.pool, { method: 'POST', path: this.prefix + path, headers, body: JSON.stringify(body) }, MAX_INFERENCE_BODY, signal);
    return { status: res.status, text: res.body.toString('utf8') };
  }

  close(): void {
    this.pool.destroy().catch(() => {});
  }
}

/** One chunk of HTTP/1.1 chunked framing around `data`, in one buffer: one write per chunk. */
export function frameChunk(data: Uint8Array): Buffer {
  const size = data.length.toString(16);
  const out = Buffer.allocUnsafe(size.length + data.length + 4);
  out.write(size, 0, 'latin1');
  out[size.length] = 13;
  out[size.length + 1] = 10;
  out.set(data, size.length + 2);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

/**
 * One relay's state and undici's handler for it. A class rather than closures: on the hot path this is one
 * allocation per request instead of a dozen.
 */
class Relay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private aborted: RelayAbort | null = null;
  private done = false;
  private headersSent = false;
  /** A status that carries no content: whatever body vLLM sends is dropped. */
  private noContent = false;
  /** vLLM's head, checked and ready for the client, until it is sent. */
  private head: OutgoingHttpHeaders | null = null;
  /** Node chose chunked framing towards the client: the gateway writes it (Node's own is switched off). */
  private framed = false;
  /** An event stream: only whole events go out, so that an error event can always follow. */
  private events: EventBoundary | null = null;
  private errorBody: Buffer[] | null = null;
  private errorHeaders: Record<string, string | string[] | undefined> = {};
  private errorBytes = 0;
  /** What a slow client's 'drain' is awaited on (the response, or its socket), while it is. */
  private awaitingDrain: NodeJS.EventEmitter | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  /** Framed relays, once the head is out: the client's socket, written directly. */
  private direct: Socket | null = null;
  private readonly t0 = performance.now();
  private readonly onClose = () => {
    if (!this.out.writableFinished) this.abort(new RelayAbort('client_gone', 'the client went away'));
  };
  private readonly onDrain = () => {
    this.awaitingDrain = null;
    this.clearStall();
    this.controller?.resume();
  };
  private readonly onStall = () => {
    this.stallTimer = null;
    const s = Math.round(this.owner.opts.clientStallMs / 1000);
    this.abort(new RelayAbort('client_stalled', `the client read nothing for ${s} s (CLIENT_STALL_TIMEOUT_SECONDS)`));
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
    if (this.aborted || this.done) return;
    this.aborted = reason;
    this.controller?.abort(reason); // before the request is on a connection: onRequestStart aborts it
  }

  private finish(error?: RelayResult['error']): void {
    this.done = true;
    this.out.off('close', this.onClose);
    this.awaitingDrain?.off('drain', this.onDrain);
    this.clearStall();
    if (error) this.result.error = error;
    this.resolve(this.result);
  }

  private clearStall(): void {
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.aborted) controller.abort(this.aborted);
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (status < 200 || status > 599) {
      // 102 and 103 are not passed on (the final answer follows); undici itself refuses 100 and 101.
      if (status < 100 || status > 599) controller.abort(new BadUpstreamResponse(`vLLM answered with status ${status}`));
      return;
    }
    this.result.status = status;
    if (status >= 400) {
      // Error bodies are small: read them whole so non-OpenAI shapes can be wrapped (docs/contract.md, Errors).
      this.errorBody = [];
      this.errorHeaders = headers;
      return;
    }
    const type = headers['content-type'];
    this.result.streamed = typeof type === 'string' && type.startsWith('text/event-stream');
    try {
      const head = clientResponseHead(headers, this.requestId);
      // An event stream is always framed by the gateway, so that an error event can still follow a break.
      // 204, 205 and 304 have no content (RFC 9110): no length is sent, and no byte of a body vLLM adds.
      this.noContent = status === 204 || status === 205 || status === 304;
      if (head.contentLength !== undefined && !this.result.streamed && !this.noContent) head.headers['content-length'] = head.contentLength;
      this.head = head.headers;
    } catch (e) {
      controller.abort(e instanceof BadUpstreamResponse ? e : new BadUpstreamResponse(String(e)));
      return;
    }
    // An event stream's head goes out at once: from then on a failure is an error event in the stream. Other
    // heads wait for the first body byte, so that a failure before it is still a clean 502.
    if (this.result.streamed) {
      this.events = new EventBoundary(MAX_HELD_EVENT);
      this.sendHead();
    }
  }

  private sendHead(): void {
    this.headersSent = true;
    this.out.writeHead(this.result.status, this.head!);
    // writeHead has decided the framing towards the client: chunked for an HTTP/1.1 client and a body of
    // unknown length, which the gateway then writes itself; HTTP/1.0 clients get the bytes as they are.
    if (this.out.chunkedEncoding) {
      this.out.chunkedEncoding = false;
      this.framed = true;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.result.ttfbMs === null) this.result.ttfbMs = performance.now() - this.t0;
    if (this.errorBody) {
      this.errorBytes += chunk.length;
      if (this.errorBytes > MAX_ERROR_BODY) controller.abort(new ResponseTooLarge(MAX_ERROR_BODY));
      else this.errorBody.push(chunk);
      return;
    }
    if (this.noContent) return;
    const data = this.events ? this.events.push(chunk) : chunk;
    if (data && !this.write(data)) controller.pause();
  }

  /** Writes body bytes (framed when the gateway frames); false when the client is behind. */
  private write(data: Buffer): boolean {
    if (!this.headersSent) this.sendHead();
    if (data.length === 0) return true;
    const bytes = this.framed ? frameChunk(data) : data;
    const direct = this.direct;
    if (direct) {
      if (direct.write(bytes)) return true;
      this.waitDrain(direct);
      return false;
    }
    const ok = this.out.write(bytes);
    // The first write carried the response head; the next ones go to the socket itself. Through the
    // response each write costs a cork, a nextTick and a buffered entry; the bytes would be the same.
    if (this.framed && this.out.socket) this.direct = this.out.socket;
    if (ok) return true;
    this.waitDrain(this.out);
    return false;
  }

  private waitDrain(on: NodeJS.EventEmitter): void {
    if (this.awaitingDrain) return;
    this.awaitingDrain = on;
    on.once('drain', this.onDrain);
    // A pipelined answer still queued behind an earlier one waits for its turn, not for a stalled client:
    // the earlier answer's own timer covers the client.
    const ms = this.owner.opts.clientStallMs;
    if (ms > 0 && this.out.socket) this.stallTimer = setTimeout(this.onStall, ms);
  }

  onResponseEnd(): void {
    if (this.errorBody) return this.endWithErrorBody();
    const rest = this.events?.flush();
    if (rest) this.write(rest);
    if (!this.headersSent) this.sendHead();
    this.endBody();
    this.finish();
  }

  /** Ends the body the client was sent: the last chunk, where the gateway frames it. */
  private endBody(): void {
    if (this.framed) (this.direct ?? this.out).write(LAST_CHUNK);
    this.out.end();
  }

  private endWithErrorBody(): void {
    const status = this.result.status;
    let h;
    try {
      h = clientResponseHead(this.errorHeaders, this.requestId).headers;
    } catch (e) {
      this.answerError(this.out, transportError(e));
      return this.finish('bad_response');
    }
    const text = normalizeErrorBody(status, Buffer.concat(this.errorBody!, this.errorBytes).toString('utf8'));
    // Every 429 and 503 carries both retry hints, at most 60 s (docs/contract.md, Errors), vLLM's included.
    if (status === 429 || status === 503) Object.assign(h, retryHeaders(retryAfterMsOf(this.errorHeaders)));
    h['content-type'] = 'application/json';
    h['content-length'] = Buffer.byteLength(text);
    this.out.writeHead(status, STATUS_CODES[status] ?? 'Error', h);
    this.out.end(text);
    this.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.done) return;
    // undici calls this unguarded: nothing may escape it, or a response could stop the gateway.
    try {
      this.endOnError(err);
    } catch {
      this.out.destroy();
      if (!this.done) this.finish('other');
    }
  }

  private endOnError(err: Error): void {
    const aborted = this.aborted ?? this.owner.shutdownAbort;
    if (aborted?.why === 'client_gone') return this.finish('client_gone');
    if (aborted?.why === 'client_stalled') {
      this.out.destroy();
      return this.finish('client_stalled');
    }
    const shutdown = aborted?.why === 'shutdown';
    const kind = transportErrorKind(err);
    if (!this.headersSent) {
      this.answerError(this.out, shutdown ? shutdownError() : transportError(err));
    } else if (this.events && !this.out.destroyed) {
      const s = Math.round(this.owner.opts.upstreamTimeoutMs / 1000);
      const msg = shutdown
        ? aborted!.message
        : kind === 'timeout'
          ? `vLLM sent nothing for ${s} s in the middle of its response (UPSTREAM_TIMEOUT_SECONDS): the stream was ended`
          : `the stream from vLLM broke: ${(err as { code?: string }).code ?? err.message}; the engine may have crashed`;
      // What was held of an unfinished event is dropped: the error event follows whole events only.
      const event = Buffer.from(sseErrorEvent(msg, shutdown ? 'shutting_down' : 'engine_stream_broken'));
      this.write(event);
      this.endBody();
    } else {
      // A body cut short that the gateway cannot end cleanly: close the connection so the client sees an error.
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
  new GatewayError('shutting_down', 'the gateway is shutting down', { retryAfterMs: 5000 });
