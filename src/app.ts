// requestListener(deps): the Node request listener with every route of the contract. /v1/* in origin form
// goes straight to the relay; everything else is the Hono app. It never listens.
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { KeySet } from './auth.ts';
import { GatewayError } from './errors.ts';
import { eventsRoute, sleepRoute, wakeRoute } from './http/admin.ts';
import { inferenceRoute } from './http/legacy.ts';
import { adminRefusal, apiKeyRefusal, concurrencyRefusal, refuseWith, requestContext } from './http/middleware.ts';
import { classifyError, closesConnection, writeError } from './http/respond.ts';
import { scopeOpener, type OpenScope, type RequestScope } from './http/scope.ts';
import { backendRoute, healthRoute, metricsRoute, rootRoute } from './http/status.ts';
import type { AppDeps, Env } from './http/types.ts';
import { relayV1, type V1Handler } from './http/v1.ts';
import { canonicalPath, INVALID_PATH, rawPathOf } from './paths.ts';

export type { AppDeps } from './http/types.ts';

/** Known paths and their methods: a known path with another method is 405, anything else 404. */
const ROUTES: Record<string, string[]> = {
  '/': ['GET', 'HEAD'],
  '/health': ['GET', 'HEAD'],
  '/backend': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/sleep': ['POST'],
  '/wake': ['POST'],
  '/events': ['GET'],
  '/inference': ['POST'],
};

const INTERNAL = { error: { message: 'internal gateway error', type: 'internal_error', param: null, code: 'internal_error' } };

/**
 * The hot path skips the framework: Hono's adaptor, request, context and middleware chain were about a
 * sixth of a relayed request's CPU (119 → 99 µs measured; README, Performance). Only origin-form targets
 * already canonical under /v1/ take it; every other spelling goes through Hono, which routes the canonical
 * path to the same handler with the same scope and checks.
 */
export function requestListener(d: AppDeps): RequestListener {
  const apiKeys = new KeySet(d.config.apiKeys);
  const open = scopeOpener(d);
  const v1 = relayV1(d, apiKeys);
  const hono = getRequestListener(createApp(d, apiKeys, open, v1).fetch);
  return function listener(req, res) {
    const url = req.url ?? '';
    if (url.startsWith('/v1/')) {
      const q = url.indexOf('?');
      const raw = q < 0 ? url : url.slice(0, q);
      if (canonicalPath(raw) === raw) return serveV1(d, v1, req, res, open(req, res, raw));
    }
    return hono(req, res);
  };
}

async function serveV1(d: AppDeps, v1: V1Handler, req: IncomingMessage, res: ServerResponse, scope: RequestScope): Promise<void> {
  try {
    await v1(req, res, scope);
  } catch (err) {
    answerThrown(d, err, res, scope.path);
  }
}

/** What a route threw, as the answer, for both entry points: its refusal, nothing if the client left, a 500 for a bug. */
function answerThrown(d: AppDeps, err: unknown, res: ServerResponse, path: string): void {
  const e = classifyError(err, d.lifecycle.state);
  if (e === 'gone') return; // nobody is listening; the access log says 499
  if (!e) d.log.error({ err: (err as Error)?.stack ?? String(err), path }, 'unexpected error');
  if (res.headersSent || res.destroyed) return;
  if (!e) {
    const body = JSON.stringify(INTERNAL);
    res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    return;
  }
  if (closesConnection(e)) res.setHeader('connection', 'close');
  writeError(res, e);
}

export function createApp(d: AppDeps, apiKeys: KeySet, open: OpenScope, v1: V1Handler): Hono<Env> {
  // Routing sees the canonical path: no spelling of an admin path reaches anything it does not name.
  const app = new Hono<Env>({ getPath: (req) => canonicalPath(rawPathOf(req.url)) });
  const admin = new KeySet(d.config.adminToken ? [d.config.adminToken] : []);
  const api = refuseWith((c) => apiKeyRefusal(apiKeys, c.env.incoming.headers));
  const adminAuth = refuseWith((c) => adminRefusal(admin, apiKeys, c.env.incoming.headers));
  const limit = refuseWith(() => concurrencyRefusal(d));

  app.use(requestContext(open));

  app.get('/', rootRoute(d));
  app.get('/health', healthRoute(d));
  app.get('/backend', backendRoute(d));
  app.get('/metrics', metricsRoute(d));
  app.post('/sleep', adminAuth, sleepRoute(d));
  app.post('/wake', adminAuth, wakeRoute(d));
  app.get('/events', adminAuth, eventsRoute(d));
  app.post('/inference', api, limit, inferenceRoute(d));
  app.all('/v1/*', async (c) => {
    await v1(c.env.incoming, c.env.outgoing, c.get('scope'));
    return RESPONSE_ALREADY_SENT;
  });

  app.notFound((c) => {
    const path = c.req.path;
    if (path === INVALID_PATH) throw new GatewayError(400, 'invalid_path', 'the request path is not valid (bad percent-encoding or forbidden characters)', 'invalid_request_error');
    const allowed = ROUTES[path];
    if (allowed) {
      c.env.outgoing.setHeader('allow', allowed.join(', ')); // the error is written to the Node response
      throw new GatewayError(405, 'method_not_allowed', `${c.req.method} is not allowed on ${path}; use ${allowed.join(' or ')}`, 'invalid_request_error');
    }
    throw new GatewayError(404, 'route_not_found', `no route ${c.req.method} ${path.length > 200 ? path.slice(0, 200) + '…' : path}`, 'not_found_error');
  });

  app.onError((err, c) => {
    answerThrown(d, err, c.env.outgoing, c.req.path);
    return RESPONSE_ALREADY_SENT;
  });

  return app;
}
