// Reads a request body into memory, never past MAX_BODY_BYTES.
import type { IncomingMessage } from 'node:http';
import { badRequest, ClientGone, GatewayError } from '../errors.ts';

function tooLarge(limit: number): GatewayError {
  return new GatewayError('request_too_large', `request body exceeds MAX_BODY_BYTES (${limit} bytes)`);
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new ClientGone(e.message));
    };
    const onClose = () => {
      if (!req.complete) {
        cleanup();
        reject(new ClientGone('client closed the connection while sending the body'));
      }
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** A request body as JSON, or the gateway's 400. */
export function parseJsonBody(body: Buffer | string): unknown {
  try {
    return JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw badRequest('request body is not valid JSON');
  }
}
