// createApp(deps): the Hono app with every route of the contract. It never listens.
import { Hono } from 'hono';
import { KeySet } from './auth.ts';
import { GatewayError } from './errors.ts';
import { eventsRoute, sleepRoute, wakeRoute } from './http/admin.ts';
import { inferenceRoute } from './http/legacy.ts';
import { concurrencyLimit, requestContext, requireAdmin, requireApiKey } from './http/middleware.ts';
import { asGatewayError } from './http/respond.ts';
import { backendRoute, healthRoute, metricsRoute, rootRoute } from './http/status.ts';
import type { AppDeps, Env } from './http/types.ts';
import { relayV1 } from './http/v1.ts';
import { canonicalPath, INVALID_PATH, rawPathOf } from './paths.ts';
import { ClientGoneError } from './proxy/body.ts';
import { LifecycleError } from './engine/lifecycle.ts';

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

export function createApp(d: AppDeps): Hono<Env> {
  // Routing sees the canonical path: no spelling of an admin path reaches anything it does not name.
  const app = new Hono<Env>({ getPath: (req) => canonicalPath(rawPathOf(req.url)) });
  const apiKeys = new KeySet(d.config.apiKeys);
  const admin = new KeySet(d.config.adminToken ? [d.config.adminToken] : []);
  const api = requireApiKey(apiKeys);
  const adminAuth = requireAdmin(admin, apiKeys);
  const limit = concurrencyLimit(d);

  app.use(requestContext(d));

  app.get('/', rootRoute(d));
  app.get('/health', healthRoute(d));
  app.get('/backend', backendRoute(d));
  app.get('/metrics', metricsRoute(d));
  app.post('/sleep', adminAuth, sleepRoute(d));
  app.post('/wake', adminAuth, wakeRoute(d));
  app.get('/events', adminAuth, eventsRoute(d));
  app.post('/inference', api, limit, inferenceRoute(d));
  app.all('/v1/*', api, limit, relayV1(d));

  app.notFound((c) => {
    const path = c.req.path;
    if (path === INVALID_PATH) throw new GatewayError(400, 'invalid_path', 'the request path is not valid (bad percent-encoding or forbidden characters)', 'invalid_request_error');
    const allowed = ROUTES[path];
    if (allowed) {
      c.header('allow', allowed.join(', '));
      throw new GatewayError(405, 'method_not_allowed', `${c.req.method} is not allowed on ${path}; use ${allowed.join(' or ')}`, 'invalid_request_error');
    }
    throw new GatewayError(404, 'route_not_found', `no route ${c.req.method} ${path.length > 200 ? path.slice(0, 200) + '…' : path}`, 'not_found_error');
  });

  app.onError((err, c) => {
    const e = asGatewayError(err, d.lifecycle.state);
    if (e) {
      if (e.status === 413) c.header('connection', 'close');
      return c.json(e.body(), e.status as 400, e.headers());
    }
    if (err instanceof ClientGoneError || (err instanceof LifecycleError && err.kind === 'aborted')) {
      return c.body(null, 499 as 400); // nobody is listening
    }
    d.log.error({ err: err.stack ?? String(err), path: c.req.path }, 'unexpected error');
    return c.json({ error: { message: 'internal gateway error', type: 'internal_error', param: null, code: 'internal_error' } }, 500);
  });

  return app;
}
