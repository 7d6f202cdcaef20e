// /v1/*: everything vLLM's OpenAI API serves, relayed as it comes.
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Handler } from 'hono';
import { rawQueryOf } from '../paths.ts';
import { readBody } from '../proxy/body.ts';
import { newRelayResult } from '../proxy/forward.ts';
import { admit, begin } from './admission.ts';
import { writeError } from './respond.ts';
import type { AppDeps, Env } from './types.ts';

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

export function relayV1(d: AppDeps): Handler<Env> {
  return async function relayV1(c) {
    const incoming = c.env.incoming;
    const out = c.env.outgoing;
    const method = c.req.method;
    const ticket = begin(d, out, method === 'POST');
    const body = method === 'GET' || method === 'HEAD' ? null : await readBody(incoming, d.config.maxBodyBytes);
    if (body) c.set('model', modelOf(body));
    await admit(d, out, method === 'GET' || method === 'HEAD');
    ticket.forwarded();
    const relay = newRelayResult();
    c.set('relay', relay);
    await d.forwarder.forward(incoming, out, method, c.req.path + rawQueryOf(incoming.url ?? ''), body, c.get('requestId'), (e) => writeError(out, e), relay);
    return RESPONSE_ALREADY_SENT;
  };
}
