// vLLM as undici sees it: a pool of keep-alive connections to its origin (llhttp parses every response,
// undici validates every request it writes), and a whole-answer exchange with a cap for the callers that
// need the body at once (control calls, /inference, error bodies).
import { Pool, type Dispatcher } from 'undici';
import { BadUpstreamResponse } from './headers.ts';
import { ResponseTooLarge } from './upstream-errors.ts';

export interface UpstreamPoolOptions {
  /** Longest silence from vLLM before its head, or between body bytes (not while the gateway pauses it); 0 = none. */
  timeoutMs: number;
}

/** uvicorn closes idle keep-alive connections after 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE): close ours first. */
const KEEP_ALIVE_MS = 4000;
/** Larger heads are refused (502): vLLM's are a few hundred bytes. */
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

/** The pool for one origin; the path prefix of `baseUrl` (VLLM_URL may have one) is the caller's to add. */
export function createUpstreamPool(baseUrl: string, opts: UpstreamPoolOptions): { pool: Pool; prefix: string } {
  const url = new URL(baseUrl);
  const pool = new Pool(url.origin, {
    pipelining: 1,
    keepAliveTimeout: KEEP_ALIVE_MS,
    keepAliveMaxTimeout: KEEP_ALIVE_MS,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    maxHeaderSize: MAX_RESPONSE_HEAD_BYTES,
  });
  return { pool, prefix: url.pathname.replace(/\/+$/, '') };
}

export interface BufferedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * One exchange whose answer is read whole, never past `limit` bytes (ResponseTooLarge, and the connection
 * is closed). Rejects with undici's error, or with the signal's reason as soon as it aborts.
 */
export function bufferedRequest(d: Dispatcher, opts: Dispatcher.DispatchOptions, limit: number, signal?: AbortSignal): Promise<BufferedResponse> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | null = null;
    let status = 0;
    let headers: BufferedResponse['headers'] = {};
    const parts: Buffer[] = [];
    let bytes = 0;
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve({ status, headers, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes) });
    };
    const reasonOf = () => (signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    const onAbort = () => {
      controller?.abort(reasonOf());
      settle(reasonOf());
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (settled) c.abort(signal?.aborted ? reasonOf() : new Error('abandoned'));
      },
      onResponseStart(c, statusCode, h) {
        if (statusCode < 100) return c.abort(new BadUpstreamResponse(`vLLM answered with status ${statusCode}`));
        if (statusCode < 200) return; // an interim answer: the final one follows
        status = statusCode;
        headers = h;
      },
      onResponseData(c, chunk) {
        bytes += chunk.length;
        if (bytes > limit) c.abort(new ResponseTooLarge(limit));
        else parts.push(chunk);
      },
      onResponseEnd() {
        settle(null);
      },
      onResponseError(_c, err) {
        settle(err);
      },
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    d.dispatch(opts, handler);
  });
}
