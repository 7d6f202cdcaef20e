// /v1/*: everything vLLM's OpenAI API serves, relayed as it comes.
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Handler } from 'hono';
import { rawQueryOf } from '../paths.ts';
import { readBody } from '../proxy/body.ts';
import { admit, begin } from './admission.ts';
import { writeError } from './respond.ts';
import type { AppDeps, Env } from './types.ts';

export function relayV1(d: AppDeps): Handler<Env> {
  return async function relayV1(c) {
    const incoming = c.env.incoming;
    const out = c.env.outgoing;
    const method = c.req.method;
    const ticket = begin(d, out, method === 'POST');
    const body = method === 'GET' || method === 'HEAD' ? null : await readBody(incoming, d.config.maxBodyBytes);
    await admit(d, out, method === 'GET' || method === 'HEAD');
    ticket.forwarded();
    const result = await d.forwarder.forward(incoming, out, method, c.req.path + rawQueryOf(incoming.url ?? ''), body, c.get('requestId'), (e) =>
      writeError(out, e),
    );
    c.set('relay', result);
    return RESPONSE_ALREADY_SENT;
  };
}
