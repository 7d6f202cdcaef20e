// What every route may refuse before its own work (credentials, concurrency), as plain checks that both
// entry points share, and the Hono middleware around them.
import type { IncomingHttpHeaders } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { credentialOf, KeySet } from '../auth.ts';
import { GatewayError } from '../errors.ts';
import type { OpenScope } from './scope.ts';
import type { AppDeps, Env } from './types.ts';

/** Opens the request's scope (id, access log, metrics) for the routes Hono serves. */
export function requestContext(open: OpenScope): MiddlewareHandler<Env> {
  return async function requestContext(c, next) {
    c.set('scope', open(c.env.incoming, c.env.outgoing, c.req.path));
    await next();
  };
}

const unauthorized = (message: string) => new GatewayError('invalid_api_key', message);

/** API_KEYS on /v1/* and /inference; open when none are set (main logs a warning at start). */
export function apiKeyRefusal(keys: KeySet, headers: IncomingHttpHeaders): GatewayError | undefined {
  if (keys.empty) return undefined;
  const cred = credentialOf(headers);
  if (!cred) return unauthorized('missing API key: send Authorization: Bearer <key> or x-api-key');
  if (!keys.has(cred)) return unauthorized('invalid API key');
  return undefined;
}

/** ADMIN_TOKEN on admin routes; without it, any API key; without both, open. */
export function adminRefusal(admin: KeySet, keys: KeySet, headers: IncomingHttpHeaders): GatewayError | undefined {
  if (admin.empty && keys.empty) return undefined;
  const cred = credentialOf(headers);
  if (!cred) return unauthorized('missing credential: send Authorization: Bearer <token>');
  if (admin.empty) return keys.has(cred) ? undefined : unauthorized('invalid API key');
  if (admin.has(cred)) return undefined;
  if (keys.has(cred)) return new GatewayError('admin_token_required', 'this route needs ADMIN_TOKEN; an API key is not enough');
  return unauthorized('invalid admin token');
}

/** MAX_CONCURRENT_REQUESTS: 429 with Retry-After above it (0 = no limit). */
export function concurrencyRefusal(d: AppDeps): GatewayError | undefined {
  const max = d.config.maxConcurrentRequests;
  if (max > 0 && d.inflight.total >= max) {
    return new GatewayError('too_many_requests', `more than MAX_CONCURRENT_REQUESTS (${max}) requests in flight`, { retryAfterMs: 1000 });
  }
  return undefined;
}

/** A refusal check as Hono middleware. */
export function refuseWith(check: (c: Context<Env>) => GatewayError | undefined): MiddlewareHandler<Env> {
  return async function refuse(c, next) {
    const e = check(c);
    if (e) throw e;
    await next();
  };
}
