// The gateway's HTTP/1.1 client to vLLM: a pool of keep-alive connections to one origin, for the relay.
//
// Why not undici here: the relay wants vLLM's chunked bytes as they are on the wire, so that each SSE chunk
// costs one read and one write. undici decodes the framing (its WASM parser), and the Node response then
// encodes it again (size line, data, CRLF: four buffers per chunk). With the same load side by side,
// node:http + undici cost 1.6× a raw TCP relay per paced chunk, and the gateway the same (README,
// Performance). This client parses only what a relay must see (the response head, and where chunks and
// bodies end) and hands the rest over untouched. The control path (engine/client.ts) uses it too, in a pool
// of its own.
import net from 'node:net';
import tls from 'node:tls';
import { ChunkedScanner } from './chunked.ts';
import { framingOf, headEnd, MAX_HEAD_BYTES, parseHead, type Framing, type Headers, type ResponseHead } from './response-head.ts';

/** A failure of the upstream exchange that is not a socket error (those keep their errno code). */
export class UpstreamError extends Error {
  constructor(
    readonly code: 'UPSTREAM_CLOSED' | 'UPSTREAM_HEADERS_TIMEOUT' | 'UPSTREAM_BODY_TIMEOUT' | 'UPSTREAM_BAD_RESPONSE',
    message: string,
  ) {
    super(message);
  }
}

export interface RequestSpec {
  method: string;
  /** Path and query, as sent on the request line. */
  path: string;
  headers: Headers;
  body: Buffer | null;
}

export interface ExchangeHandler {
  /**
   * The final response head (1xx heads are skipped). Answer true to get a chunked body as its wire bytes,
   * framing included, always cut after a complete chunk; false to get the decoded payload.
   */
  onHead(head: ResponseHead, framing: Framing): boolean;
  /** Body bytes. Answer false to stop reading until `exchange.resume()`. */
  onData(data: Buffer): boolean;
  onEnd(): void;
  /** The exchange failed, or was aborted (then `err` is the abort reason). Called at most once, and never after onEnd. */
  onError(err: Error): void;
}

export interface UpstreamPoolOptions {
  /** Longest silence from vLLM while a request runs (before its head, or between body bytes); 0 = none. Counted in keep-alive periods. */
  timeoutMs: number;
  /** Idle connections are closed after this: under uvicorn's 5 s keep-alive, so we close first. */
  keepAliveMs: number;
}

/** One request and its response, on whichever connection carries it. */
export class Exchange {
  conn: Connection | null = null;
  attempts = 0;
  aborted: Error | null = null;
  ended = false;

  constructor(
    readonly spec: RequestSpec,
    readonly handler: ExchangeHandler,
  ) {}

  /** Ends the exchange now: the connection is closed and the handler's onError gets `reason`. */
  abort(reason: Error): void {
    if (this.ended || this.aborted) return;
    this.aborted = reason;
    this.conn?.fail(reason);
  }

  resume(): void {
    this.conn?.socket.resume();
  }
}

const RETRYABLE = new Set(['ECONNRESET', 'EPIPE', 'UPSTREAM_CLOSED']);

/** One keep-alive connection. Its per-request parse state is reset for each exchange, not reallocated. */
class Connection {
  readonly socket: net.Socket;
  ex: Exchange | null = null;
  served = 0;
  private reusable = true;
  /** How long the running exchange has heard nothing, in whole keep-alive periods. */
  private silentMs = 0;
  private gotBytes = false;
  private partialHead: Buffer | null = null;
  private framing: Framing = { kind: 'none' };
  private headDone = false;
  private left = 0;
  private raw = false;
  private readonly scanner = new ChunkedScanner();
  /**
   * Raw mode: bytes after the last complete chunk, held until the chunk is whole. vLLM's SSE chunks are one
   * event each, a few hundred bytes; a vLLM on loopback is trusted not to send one of unbounded size.
   */
  private held: Buffer | null = null;
  private readonly deliverPayload = (data: Buffer) => this.deliver(data);
  private readonly onRead = (n: number): boolean => {
    const copy = Buffer.allocUnsafe(n); // pooled below 4 KiB
    this.pool.readBuffer.copy(copy, 0, 0, n);
    this.onData(copy);
    return true;
  };

  constructor(private readonly pool: UpstreamPool) {
    const o = pool.origin;
    if (o.tls) {
      this.socket = tls.connect({ host: o.host, port: o.port, ...(net.isIP(o.host) ? {} : { servername: o.host }) }).setNoDelay(true);
      this.socket.on('data', (c: Buffer) => this.onData(c));
    } else {
      // Reads land in one buffer shared by the pool and are copied out at their size (a slice of Node's
      // buffer pool for small ones). Node's default read path allocates a 64 KiB backing store per read,
      // shrinks it and pushes it through a Readable stream; the callback skips all of that.
      this.socket = net.connect({
        host: o.host,
        port: o.port,
        noDelay: true,
        onread: { buffer: pool.readBuffer, callback: this.onRead },
      });
    }
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (e) => this.fail(e));
    this.socket.on('close', () => this.onClose());
    this.socket.on('timeout', () => this.onTimeout());
    // One timer for the connection's life, at the keep-alive time, refreshed by Node on every read and write:
    // idle, it closes the connection; busy, it counts silence up to the request timeout. Setting a timeout
    // per request and per release allocated two timers per request.
    this.socket.setTimeout(pool.opts.keepAliveMs);
  }

  send(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    this.gotBytes = false;
    this.headDone = false;
    this.partialHead = null;
    this.held = null;
    this.raw = false;
    this.scanner.reset();
    const { method, path, headers, body } = ex.spec;
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.pool.origin.hostHeader}\r\n`;
    for (const name in headers) {
      const v = headers[name]!;
      if (typeof v === 'string') head += `${name}: ${v}\r\n`;
      else for (const one of v) head += `${name}: ${one}\r\n`;
    }
    if (body) head += `content-length: ${body.length}\r\n`;
    else if (method === 'POST' || method === 'PUT' || method === 'PATCH') head += 'content-length: 0\r\n';
    head += '\r\n';
    this.silentMs = 0;
    // Header values are latin1 strings (how Node's parser hands them over): latin1 writes their bytes back.
    if (body?.length) {
      this.socket.cork();
      this.socket.write(head, 'latin1');
      this.socket.write(body);
      this.socket.uncork();
    } else {
      this.socket.write(head, 'latin1');
    }
  }

  private onData(chunk: Buffer): void {
    const ex = this.ex;
    if (!ex) {
      this.socket.destroy(); // bytes nobody asked for: this connection cannot be trusted with the next request
      return;
    }
    this.gotBytes = true;
    this.silentMs = 0;
    if (!this.headDone) {
      const buf = this.partialHead ? Buffer.concat([this.partialHead, chunk]) : chunk;
      const end = headEnd(buf);
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) return this.fail(new UpstreamError('UPSTREAM_BAD_RESPONSE', `vLLM's response head is over ${MAX_HEAD_BYTES} bytes`));
        this.partialHead = buf;
        return;
      }
      this.partialHead = null;
      let head: ResponseHead;
      try {
        head = parseHead(buf, end);
        if (head.status < 200) {
          // An interim answer (100, 103): the final one follows on the same connection.
          if (end < buf.length) this.onData(buf.subarray(end));
          return;
        }
        this.framing = framingOf(ex.spec.method, head);
      } catch (e) {
        return this.fail(e as Error);
      }
      this.headDone = true;
      if (head.closes) this.reusable = false;
      let wantRaw: boolean;
      try {
        wantRaw = ex.handler.onHead(head, this.framing);
      } catch (e) {
        // A head the handler cannot use (a header value Node will not send on): a bad response, not a crash.
        return this.fail(new UpstreamError('UPSTREAM_BAD_RESPONSE', `vLLM's response head was refused: ${(e as Error).message}`));
      }
      if (this.ex !== ex) return; // the handler aborted
      this.raw = wantRaw && this.framing.kind === 'chunked';
      if (this.framing.kind === 'length') this.left = this.framing.length;
      if (this.framing.kind === 'none') {
        if (end < buf.length) this.reusable = false;
        return this.complete();
      }
      if (end === buf.length) return;
      chunk = buf.subarray(end);
    }
    this.body(chunk);
  }

  private body(chunk: Buffer): void {
    switch (this.framing.kind) {
      case 'length': {
        if (chunk.length < this.left) {
          this.left -= chunk.length;
          this.deliver(chunk);
          return;
        }
        if (chunk.length > this.left) this.reusable = false;
        const last = chunk.length === this.left ? chunk : chunk.subarray(0, this.left);
        this.left = 0;
        if (this.deliver(last)) this.complete();
        return;
      }
      case 'chunked': {
        const ex = this.ex!;
        let at: number;
        try {
          at = this.raw ? this.scanner.scan(chunk) : this.scanner.scan(chunk, 0, this.deliverPayload);
        } catch (e) {
          return this.fail(e as Error);
        }
        if (this.ex !== ex) return;
        if (this.raw) {
          if (at === 0) {
            this.held = this.held ? Buffer.concat([this.held, chunk]) : chunk;
            return;
          }
          const whole = at === chunk.length ? chunk : chunk.subarray(0, at);
          const out = this.held ? Buffer.concat([this.held, whole]) : whole;
          this.held = at === chunk.length || this.scanner.done ? null : chunk.subarray(at);
          if (!this.deliver(out)) return;
        }
        if (this.scanner.done) {
          if (at < chunk.length) this.reusable = false; // bytes after the body's end
          this.complete();
        }
        return;
      }
      case 'close':
        this.deliver(chunk);
        return;
      case 'none':
        return;
    }
  }

  /** Hands body bytes to the handler; false when the exchange ended meanwhile. */
  private deliver(data: Buffer): boolean {
    const ex = this.ex;
    if (!ex) return false;
    if (!ex.handler.onData(data) && this.ex === ex) this.socket.pause();
    return this.ex === ex;
  }

  private complete(): void {
    const ex = this.ex!;
    this.ex = null;
    ex.conn = null;
    ex.ended = true;
    this.served++;
    if (this.reusable && !this.socket.destroyed) this.pool.release(this);
    else this.socket.destroy();
    ex.handler.onEnd();
  }

  /** The exchange on this connection fails with `err` (or is aborted); the connection is not reused. */
  fail(err: Error): void {
    const ex = this.ex;
    this.reusable = false;
    this.socket.destroy();
    if (!ex) return;
    this.ex = null;
    ex.conn = null;
    // A reused connection that vLLM closed just as we sent: nothing was read, so nothing was done. Once.
    const code = (err as { code?: string }).code ?? '';
    if (!ex.aborted && !this.gotBytes && this.served > 0 && ex.attempts === 1 && RETRYABLE.has(code)) {
      this.pool.start(ex);
      return;
    }
    ex.ended = true;
    ex.handler.onError(ex.aborted ?? err);
  }

  private onEnd(): void {
    if (!this.ex) {
      this.socket.destroy(); // vLLM closed an idle connection: no request may be sent on it now
    } else if (this.headDone && this.framing.kind === 'close') {
      this.reusable = false;
      this.complete();
    } else {
      this.fail(new UpstreamError('UPSTREAM_CLOSED', 'vLLM closed the connection before its response was complete'));
    }
  }

  private onClose(): void {
    this.pool.forget(this);
    if (this.ex) this.fail(new UpstreamError('UPSTREAM_CLOSED', 'the connection to vLLM closed before its response was complete'));
  }

  private onTimeout(): void {
    if (!this.ex) {
      this.socket.destroy(); // idle past the keep-alive time
      return;
    }
    const { keepAliveMs, timeoutMs } = this.pool.opts;
    this.silentMs += keepAliveMs;
    if (timeoutMs === 0 || this.silentMs < timeoutMs) {
      this.socket.setTimeout(keepAliveMs); // a timer that fired is armed again only by activity
      return;
    }
    const s = Math.round(timeoutMs / 1000);
    this.fail(
      this.headDone
        ? new UpstreamError('UPSTREAM_BODY_TIMEOUT', `vLLM sent nothing for ${s} s in the middle of its response`)
        : new UpstreamError('UPSTREAM_HEADERS_TIMEOUT', `vLLM did not start its response within ${s} s`),
    );
  }

  idle(): void {
    this.socket.resume(); // a paused socket would not notice vLLM closing it
  }
}

export interface Origin {
  tls: boolean;
  host: string;
  port: number;
  hostHeader: string;
}

export class UpstreamPool {
  readonly origin: Origin;
  /** Plain TCP connections read into this and copy out what they got: reads are handled one at a time. */
  readonly readBuffer = Buffer.allocUnsafe(64 * 1024);
  private readonly idle: Connection[] = [];
  private readonly open = new Set<Connection>();
  private destroyed: Error | null = null;

  constructor(
    origin: string,
    readonly opts: UpstreamPoolOptions,
  ) {
    const u = new URL(origin);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`unsupported upstream protocol ${u.protocol}`);
    const tlsOn = u.protocol === 'https:';
    this.origin = { tls: tlsOn, host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) || (tlsOn ? 443 : 80), hostHeader: u.host };
  }

  /** Sends `spec` on an idle connection or a new one. Throws the destroy reason once the pool is destroyed. */
  dispatch(spec: RequestSpec, handler: ExchangeHandler): Exchange {
    if (this.destroyed) throw this.destroyed;
    const ex = new Exchange(spec, handler);
    this.start(ex);
    return ex;
  }

  start(ex: Exchange): void {
    ex.attempts++;
    let conn: Connection | undefined;
    while ((conn = this.idle.pop()) && (!conn.socket.writable || conn.ex)) {
      /* closed while idle: skip it */
    }
    if (!conn) {
      conn = new Connection(this);
      this.open.add(conn);
    }
    conn.send(ex);
  }

  release(conn: Connection): void {
    if (this.destroyed) {
      conn.socket.destroy();
      return;
    }
    conn.idle();
    this.idle.push(conn);
  }

  forget(conn: Connection): void {
    this.open.delete(conn);
    const i = this.idle.lastIndexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Ends every running exchange with `reason` (their handlers' onError) and closes every connection. */
  destroy(reason: Error): void {
    if (this.destroyed) return;
    this.destroyed = reason;
    for (const conn of [...this.open]) {
      if (conn.ex) conn.ex.abort(reason);
      else conn.socket.destroy();
    }
  }

  /** Idle connections are closed; running exchanges finish. */
  close(): void {
    for (const conn of this.idle.splice(0)) conn.socket.destroy();
  }

  /** A whole response, decoded, for callers that need the body at once (small JSON answers). */
  request(spec: RequestSpec, signal?: AbortSignal): Promise<{ status: number; headers: Headers; body: Buffer }> {
    return new Promise((resolve, reject) => {
      let status = 0;
      let headers: Headers = {};
      const parts: Buffer[] = [];
      const ex = this.dispatch(spec, {
        onHead(head) {
          status = head.status;
          headers = head.headers;
          return false;
        },
        onData(data) {
          parts.push(data);
          return true;
        },
        onEnd() {
          signal?.removeEventListener('abort', onAbort);
          resolve({ status, headers, body: Buffer.concat(parts) });
        },
        onError(err) {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      const onAbort = () => ex.abort(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
