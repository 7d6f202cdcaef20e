// Middleware shared by the routes: request context and access log, credentials, concurrency.
import type { MiddlewareHandler } from 'hono';
import { credentialOf, KeySet } from '../auth.ts';
import { GatewayError } from '../errors.ts';
import { requestRecorder, routeLabel } from '../metrics.ts';
import { requestIdOf } from '../proxy/headers.ts';
import type { AppDeps, Env } from './types.ts';

/** Request id on every response, `Connection: close` while draining, one access-log line and metrics per request. */
export function requestContext(d: AppDeps): MiddlewareHandler<Env> {
  const record = requestRecorder(d.metrics);
  return async function requestContext(c, next) {
    const t0 = performance.now();
    const out = c.env.outgoing;
    // Bytes are read off the socket counter at the end: no per-chunk work on the relay.
    const sock = out.socket;
    const sent0 = sock?.bytesWritten ?? 0;
    const id = requestIdOf(c.env.incoming.headers['x-request-id']);
    c.set('requestId', id);
    out.setHeader('x-request-id', id);
    if (d.lifecycle.state === 'draining') out.setHeader('connection', 'close');
    out.once('close', () => {
      const ms = performance.now() - t0;
      const route = routeLabel(c.req.path);
      const relay = c.get('relay');
      const clientGone = !out.writableFinished;
      const status = clientGone && !out.headersSent ? 499 : out.statusCode;
      record.done(route, c.req.method, status, ms / 1000);
      if (relay?.ttfbMs != null) record.ttfb(route, relay.ttfbMs / 1000);
      if (relay?.error && relay.error !== 'client_gone') d.metrics.upstreamErrors.inc({ kind: relay.error });
      const bytes = sock ? sock.bytesWritten - sent0 : undefined;
      if (relay && bytes) record.relayed(route, bytes);
      d.log.info(
        {
          request_id: id,
          method: c.req.method,
          path: c.req.path,
          status,
          duration_ms: Math.round(ms * 10) / 10,
          ttfb_ms: relay?.ttfbMs == null ? undefined : Math.round(relay.ttfbMs * 10) / 10,
          streamed: relay?.streamed,
          model: c.get('model'),
          bytes,
          client_gone: clientGone || undefined,
          upstream_error: relay?.error,
        },
        'request',
      );
    });
    await next();
  };
}

const unauthorized = (message: string) => new GatewayError(401, 'invalid_api_key', message, 'authentication_error');

/** API_KEYS on /v1/* and /inference; open when none are set (main logs a warning at start). */
export function requireApiKey(keys: KeySet): MiddlewareHandler<Env> {
  return async function requireApiKey(c, next) {
    if (!keys.empty) {
      const cred = credentialOf(c.env.incoming.headers);
      if (!cred) throw unauthorized('missing API key: send Authorization: Bearer <key> or x-api-key');
      if (!keys.has(cred)) throw unauthorized('invalid API key');
    }
    await next();
  };
}

/** ADMIN_TOKEN on admin routes; without it, any API key; without both, open. */
export function requireAdmin(admin: KeySet, keys: KeySet): MiddlewareHandler<Env> {
  return async function requireAdmin(c, next) {
    if (!admin.empty || !keys.empty) {
      const cred = credentialOf(c.env.incoming.headers);
      if (!cred) throw unauthorized('missing credential: send Authorization: Bearer <token>');
      if (!admin.empty) {
        if (!admin.has(cred)) {
          if (keys.has(cred)) throw new GatewayError(403, 'admin_token_required', 'this route needs ADMIN_TOKEN; an API key is not enough', 'permission_error');
          throw unauthorized('invalid admin token');
        }
      } else if (!keys.has(cred)) throw unauthorized('invalid API key');
    }
    await next();
  };
}

/** MAX_CONCURRENT_REQUESTS: 429 with Retry-After above it (0 = no limit). */
export function concurrencyLimit(d: AppDeps): MiddlewareHandler<Env> {
  const max = d.config.maxConcurrentRequests;
  return async function concurrencyLimit(_c, next) {
    if (max > 0 && d.inflight.total >= max) {
      throw new GatewayError(429, 'too_many_requests', `more than MAX_CONCURRENT_REQUESTS (${max}) requests in flight`, 'rate_limit_error', { retryAfterMs: 1000 });
    }
    await next();
  };
}
