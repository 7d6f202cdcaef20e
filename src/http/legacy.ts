// POST /inference: the original app's simple API, served through /v1/chat/completions.
import type { Handler } from 'hono';
import { z } from 'zod';
import { badRequest, GatewayError } from '../errors.ts';
import { parseJsonBody, readBody } from '../proxy/body.ts';
import { shutdownError } from '../proxy/forward.ts';
import { normalizeErrorBody, transportError } from '../proxy/upstream-errors.ts';
import { admit, begin } from './admission.ts';
import type { AppDeps, Env } from './types.ts';

const inferenceBody = z.object({
  prompt: z.string().min(1, 'prompt must not be empty'),
  max_new_tokens: z.number().int().min(1).max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
});

export function inferenceRoute(d: AppDeps): Handler<Env> {
  return async function inferenceRoute(c) {
    const incoming = c.env.incoming;
    const out = c.env.outgoing;
    const ticket = begin(d, out, true);
    const parsed = inferenceBody.safeParse(parseJsonBody(await readBody(incoming, d.config.maxBodyBytes)));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const param = issue.path.join('.') || null;
      throw badRequest(`${param ?? 'body'}: ${issue.message}`, param);
    }
    const p = parsed.data;
    await admit(d, out, false);
    ticket.forwarded();
    const model = d.lifecycle.servedModel ?? d.config.model;
    c.get('scope').model = model;
    const upstreamBody: Record<string, unknown> = { messages: [{ role: 'user', content: p.prompt }] };
    if (model) upstreamBody.model = model;
    if (p.max_new_tokens !== undefined) upstreamBody.max_tokens = p.max_new_tokens;
    if (p.temperature !== undefined) upstreamBody.temperature = p.temperature;
    const ac = new AbortController();
    const onClose = () => ac.abort();
    out.once('close', onClose);
    let status: number;
    let text: string;
    try {
      ({ status, text } = await d.forwarder.requestJson('/v1/chat/completions', c.get('scope').id, upstreamBody, ac.signal));
    } catch (e) {
      if (ac.signal.aborted) return c.body(null, 499 as 400); // the client left: nobody reads an answer
      if (d.forwarder.shutdownAbort) throw shutdownError(); // the drain deadline cut it (abortAll)
      throw transportError(e);
    } finally {
      out.off('close', onClose);
    }
    if (status >= 400) return c.body(normalizeErrorBody(status, text), status as 400, { 'content-type': 'application/json' });
    let completion: { model?: string; usage?: unknown; choices?: { message?: { content?: string | null } }[] };
    try {
      completion = JSON.parse(text);
    } catch {
      throw new GatewayError('engine_error', 'vLLM answered with a body that is not JSON');
    }
    return c.json({
      response: completion.choices?.[0]?.message?.content ?? '',
      model: completion.model ?? model,
      usage: completion.usage ?? null,
      backend: 'vllm',
    });
  };
}
