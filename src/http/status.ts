// GET /, /health, /backend, /metrics: open, cheap, answered in every state.
import type { Handler } from 'hono';
import { servesReads } from '../engine/states.ts';
import type { AppDeps, Env } from './types.ts';

export function rootRoute(d: AppDeps): Handler<Env> {
  // The Spaces platform probes `/`: 200 at once, even before vLLM is up.
  return function rootRoute(c) {
    return c.json({ service: 'vllm-gateway', backend: 'vllm', state: d.lifecycle.state });
  };
}

export function healthRoute(d: AppDeps): Handler<Env> {
  return function healthRoute(c) {
    const s = d.lifecycle.snapshot();
    return c.json(
      { status: s.state, since: s.since, backend: 'vllm', model: d.lifecycle.servedModel ?? d.config.model ?? null, in_flight: d.inflight.total, sleep: s.sleep, wake_check: s.wake_check },
      servesReads(s.state) ? 200 : 503,
    );
  };
}

export function backendRoute(d: AppDeps): Handler<Env> {
  return function backendRoute(c) {
    const l = d.lifecycle;
    const s = l.snapshot();
    return c.json({
      backend: 'vllm',
      mode: d.config.mode,
      model: l.servedModel ?? d.config.model ?? null,
      state: s.state,
      state_since: s.since,
      child_pid: l.childPid,
      uptime_s: Math.round((Date.now() - l.startedAt) / 1000),
      restarts: l.restarts,
      in_flight: d.inflight.total,
      sleep: s.sleep,
      wake_check: s.wake_check,
      vllm_version: l.version ?? null,
      vllm_url: d.config.vllmUrl,
    });
  };
}

export function metricsRoute(d: AppDeps): Handler<Env> {
  return async function metricsRoute(c) {
    let text = await d.metrics.registry.metrics();
    // vLLM's own series (vllm:*) follow ours, so one scrape sees both; fetched only while its API is up.
    if (servesReads(d.lifecycle.state)) {
      const engine = await d.client.metricsText(1500);
      if (engine) text += `\n# vLLM engine metrics (from ${d.config.mode === 'launch' ? 'the child' : 'the attached server'})\n${engine}`;
    }
    return c.body(text, 200, { 'content-type': d.metrics.registry.contentType });
  };
}
