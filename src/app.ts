// requestListener(deps): the Node request listener with every route (docs/contract.md, Routes). The target is
// read once (paths.ts); /v1/* goes straight to the relay, a target that cannot be routed is a 400, and
// everything else is the Hono app, which routes the same canonical path. It never listens.
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { KeySet } from './auth.ts';
import { ClientGone, GatewayError } from './errors.ts';
import { eventsRoute, sleepRoute, wakeRoute } from './http/admin.ts';
import { inferenceRoute } from './http/legacy.ts';
import { adminRefusal, apiKeyRefusal, concurrencyRefusal, refuseWith, requestContext } from './http/middleware.ts';
import { classifyError, closesConnection, writeError } from './http/respond.ts';
import { scopeOpener, type OpenScope, type RequestScope } from './http/scope.ts';
import { backendRoute, healthRoute, metricsRoute, rootRoute } from './http/status.ts';
import type { AppDeps, Env } from './http/types.ts';
import { relayV1, type V1Handler } from './http/v1.ts';
import { INVALID_PATH, parseTarget, type Target } from './paths.ts';

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

const TARGET = Symbol('target');

/** The request's target, parsed once per request. */
function targetOf(req: IncomingMessage & { [TARGET]?: Target }): Target {
  return (req[TARGET] ??= parseTarget(req.url ?? '/'));
}

const invalidPath = () =>
  new GatewayError('invalid_path', 'the request target is not valid (bad percent-encoding, a fragment, or a character outside visible ASCII)');

/**
 * /v1/* skips the framework: Hono's adaptor, request, context and middleware chain were about a sixth of a
 * relayed request's CPU (docs/performance.md).
 */
export function requestListener(d: AppDeps): RequestListener {
  const apiKeys = new KeySet(d.config.apiKeys);
  const open = scopeOpener(d);
  const v1 = relayV1(d, apiKeys);
  const hono = getRequestListener(createApp(d, apiKeys, open).fetch);
  return function listener(req, res) {
    const target = targetOf(req);
    if (target.path.startsWith('/v1/')) return serveV1(d, v1, req, res, open(req, res, target.path), target);
    if (target.path === INVALID_PATH) return answerThrown(d, invalidPath(), res, open(req, res, target.path).path);
    return hono(req, res);
  };
}

async function serveV1(d: AppDeps, v1: V1Handler, req: IncomingMessage, res: ServerResponse, scope: RequestScope, target: Target): Promise<void> {
  try {
    await v1(req, res, scope, target);
  } catch (err) {
    answerThrown(d, err, res, scope.path);
  }
}

/** What a route threw, as the answer, for both entry points: its refusal, nothing if the client left, a 500 for a bug. */
function answerThrown(d: AppDeps, err: unknown, res: ServerResponse, path: string): void {
  const e = classifyError(err, d.lifecycle.state);
  if (e instanceof ClientGone) return; // nobody is listening; the access log says 499
  if (!e) d.log.error({ err: (err as Error)?.stack ?? String(err), path }, 'unexpected error');
  if (res.headersSent || res.destroyed) return;
  const answer = e ?? new GatewayError('internal_error', 'internal gateway error');
  if (closesConnection(answer)) res.setHeader('connection', 'close');
  writeError(res, answer);
}

function createApp(d: AppDeps, apiKeys: KeySet, open: OpenScope): Hono<Env> {
  // Routing sees the canonical path of the raw target: no spelling of an admin path reaches anything it does not name.
  const app = new Hono<Env>({ getPath: (_req, o) => targetOf((o?.env as Env['Bindings']).incoming).path });
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

  app.notFound((c) => {
    const path = c.req.path;
    const allowed = ROUTES[path];
    if (allowed) {
      c.env.outgoing.setHeader('allow', allowed.join(', ')); // the error is written to the Node response
      throw new GatewayError('method_not_allowed', `${c.req.method} is not allowed on ${path}; use ${allowed.join(' or ')}`);
    }
    throw new GatewayError('route_not_found', `no route ${c.req.method} ${path.length > 200 ? path.slice(0, 200) + '…' : path}`);
  });

  app.onError((err, c) => {
    answerThrown(d, err, c.env.outgoing, c.req.path);
    return RESPONSE_ALREADY_SENT;
  });

  return app;
}
