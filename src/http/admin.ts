// POST /sleep, POST /wake, GET /events: the control surface (admin credential).
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Handler } from 'hono';
import { z } from 'zod';
import { badRequest } from '../errors.ts';
import type { Transition } from '../engine/lifecycle.ts';
import { parseJsonBody, readBody } from '../proxy/body.ts';
import type { AppDeps, Env } from './types.ts';

const sleepBody = z.object({ level: z.union([z.literal(1), z.literal(2), z.literal('1'), z.literal('2')]).optional() }).loose();

/** Admin routes take no body, but a malformed one is still a 400, not silently ignored. */
async function optionalJson(d: AppDeps, c: Parameters<Handler<Env>>[0]): Promise<unknown> {
  const incoming = c.env.incoming;
  const declared = incoming.headers['content-length'];
  if (!incoming.headers['transfer-encoding'] && (declared === undefined || declared === '0')) return undefined;
  const raw = (await readBody(incoming, Math.min(d.config.maxBodyBytes, 65_536))).toString('utf8').trim();
  return raw ? parseJsonBody(raw) : undefined;
}

export function sleepRoute(d: AppDeps): Handler<Env> {
  return async function sleepRoute(c) {
    const body = sleepBody.safeParse((await optionalJson(d, c)) ?? {});
    if (!body.success) throw badRequest('level must be 1 or 2', 'level');
    const q = c.req.query('level');
    let level = d.config.sleepLevel;
    if (q !== undefined) {
      if (q !== '1' && q !== '2') throw badRequest(`level must be 1 or 2, got "${q.slice(0, 20)}"`, 'level');
      level = Number(q) as 1 | 2;
    } else if (body.data.level !== undefined) level = Number(body.data.level) as 1 | 2;
    if (level === 2 && d.config.fp8KvCache && !d.config.allowFp8KvLevel2) {
      throw badRequest('level 2 with an FP8 KV cache serves garbage after a wake in vLLM (#48310): use level 1, or set ALLOW_FP8_KV_SLEEP_LEVEL_2=true', 'level');
    }
    const o = await d.lifecycle.sleep(level, 'POST /sleep');
    return c.json({
      status: 'sleeping',
      level: o.level,
      backend: 'vllm',
      message: o.message,
      duration_ms: o.durationMs,
      already_sleeping: o.already,
      aborted_in_flight: o.aborted,
    });
  };
}

export function wakeRoute(d: AppDeps): Handler<Env> {
  return async function wakeRoute(c) {
    await optionalJson(d, c);
    const o = await d.lifecycle.wake('POST /wake');
    return c.json({ status: 'awake', backend: 'vllm', message: o.message, duration_ms: o.durationMs, already_awake: o.already });
  };
}

/** Server-Sent Events: one `data:` event per state transition, `{"from","to","at","reason"}`. */
export function eventsRoute(d: AppDeps): Handler<Env> {
  return function eventsRoute(c) {
    const out = c.env.outgoing;
    out.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    // A comment (ignored by SSE parsers) tells a dashboard where things stand without faking a transition.
    out.write(`: state=${d.lifecycle.state} since=${new Date(d.lifecycle.stateSince).toISOString()}\n\n`);
    // Ids count the process's transitions, so they mean the same on every connection; the stream ends
    // after the last one (stopped).
    const onTransition = (t: Transition) => {
      out.write(`id: ${t.seq}\ndata: ${JSON.stringify({ from: t.from, to: t.to, at: t.at, reason: t.reason })}\n\n`);
      if (t.to === 'stopped') out.end();
    };
    d.lifecycle.on('transition', onTransition);
    const ping = setInterval(() => out.write(': ping\n\n'), 15_000);
    out.once('close', () => {
      d.lifecycle.off('transition', onTransition);
      clearInterval(ping);
    });
    return RESPONSE_ALREADY_SENT;
  };
}
