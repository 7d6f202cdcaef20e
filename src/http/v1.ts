// /v1/*: everything vLLM's OpenAI API serves, relayed as it comes. A plain Node handler, so that the hot
// path skips the framework (see app.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeySet } from '../auth.ts';
import { acceptsWork } from '../engine/states.ts';
import { GatewayError } from '../errors.ts';
import type { Target } from '../paths.ts';
import { readBody } from '../proxy/body.ts';
import { newRelayResult } from '../proxy/forward.ts';
import { admit, begin } from './admission.ts';
import { apiKeyRefusal, concurrencyRefusal } from './middleware.ts';
import type { RequestScope } from './scope.ts';
import { writeError } from './respond.ts';
import type { AppDeps } from './types.ts';

const MODEL_KEY = Buffer.from('"model"');

/**
 * The requested model, for the access log only, without parsing the body: inside a JSON string a quote is
 * always escaped, so a bare `"model"` is a key (the top-level one, in every client we know of).
 */
export function modelOf(body: Buffer): string | undefined {
  const at = body.indexOf(MODEL_KEY);
  if (at < 0) return undefined;
  const m = /^\s*:\s*"((?:[^"\\]|\\.){0,200})"/.exec(body.toString('utf8', at + MODEL_KEY.length, at + MODEL_KEY.length + 420));
  return m ? m[1] : undefined;
}

/** What vLLM's OpenAI API is spoken with; anything else (TRACE, WebDAV verbs) is a 405 here. */
const V1_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const ALLOW = [...V1_METHODS].join(', ');

function refuseUnknownRoute(d: AppDeps, res: ServerResponse, path: string, method: string): void {
  const m = d.lifecycle.route(path, method);
  if (m?.kind === 'no_route') throw new GatewayError('route_not_found', `vLLM has no route ${method} ${path.slice(0, 200)}`);
  if (m?.kind === 'wrong_method') {
    res.setHeader('allow', m.allow.join(', '));
    throw new GatewayError('method_not_allowed', `${method} is not allowed on ${path.slice(0, 200)}; vLLM takes ${m.allow.join(' or ')}`);
  }
}

export type V1Handler = (req: IncomingMessage, res: ServerResponse, scope: RequestScope, target: Target) => Promise<void>;

/** Credentials and the concurrency limit, then the body, admission (waiting for the engine) and the relay. Throws refusals. */
export function relayV1(d: AppDeps, apiKeys: KeySet): V1Handler {
  return async function relayV1(req, res, scope, target) {
    const refused = apiKeyRefusal(apiKeys, req.headers) ?? concurrencyRefusal(d);
    if (refused) throw refused;
    const method = req.method ?? 'GET';
    if (!V1_METHODS.has(method)) {
      res.setHeader('allow', ALLOW);
      throw new GatewayError('method_not_allowed', `${method} is not forwarded to vLLM; use one of ${ALLOW}`);
    }
    // Reads (and CORS preflights, which vLLM's middleware answers for any path) never wake the engine.
    const passive = method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
    // A route vLLM does not have is answered here, instead of waking (or waiting for) the engine for its 404.
    if (!passive && !acceptsWork(d.lifecycle.state)) refuseUnknownRoute(d, res, scope.path, method);
    const ticket = begin(d, res, method === 'POST');
    const body = passive ? null : await readBody(req, d.config.maxBodyBytes);
    if (body) scope.model = modelOf(body);
    await admit(d, res, passive);
    ticket.forwarded();
    scope.relay = newRelayResult();
    await d.forwarder.forward(req, res, method, target.upstreamPath + target.query, body, scope.id, writeError, scope.relay);
  };
}
