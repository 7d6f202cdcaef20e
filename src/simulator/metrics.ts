// vLLM's Prometheus metrics (docs/vllm.md, Sleep mode), labelled model_name and engine="0".
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { versionAtLeast } from '../version.ts';
import type { SimEngine } from './engine.ts';

export function createSimMetrics(engine: SimEngine, modelName: string, version = '0.31.0') {
  const registry = new Registry();
  const labels = { model_name: modelName, engine: '0' };
  const labelNames = ['model_name', 'engine'] as const;
  new Gauge({
    name: 'vllm:num_requests_running',
    help: 'Number of requests in model execution batches.',
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, engine.scheduler === 'running' ? engine.stats.inflight : 0);
    },
  });
  new Gauge({
    name: 'vllm:num_requests_waiting',
    help: 'Number of requests waiting to be processed.',
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, engine.scheduler === 'running' ? 0 : engine.stats.inflight);
    },
  });
  new Gauge({
    name: 'vllm:kv_cache_usage_perc',
    help: 'KV-cache usage. 1 means 100 percent usage.',
    labelNames,
    registers: [registry],
    collect() {
      this.set(labels, Math.min(1, engine.stats.inflight / 256));
    },
  });
  new Gauge({
    name: 'vllm:engine_sleep_state',
    help: 'Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.',
    labelNames: [...labelNames, 'sleep_state'],
    registers: [registry],
    collect() {
      const state = engine.sleepStateLabel();
      for (const s of ['awake', 'weights_offloaded', 'discard_all'] as const) this.set({ ...labels, sleep_state: s }, s === state ? 1 : 0);
    },
  });
  // vLLM >= 0.31: each component's state, whether everything is resident, and what sleep and wake took.
  const ops = versionAtLeast(version, '0.31.0')
    ? new Histogram({ name: 'vllm:sleep_mode_operation_duration_seconds', help: 'Time sleep mode operations took.', labelNames: [...labelNames, 'operation'], registers: [registry], buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30] })
    : undefined;
  if (ops) {
    const STATES = { scheduler: ['running', 'paused'], weights: ['resident', 'offloaded', 'discarded'], kv_cache: ['resident', 'discarded'] } as const;
    new Gauge({
      name: 'vllm:engine_sleep_component_state',
      help: 'Sleep state of each engine component: 1 for its current state.',
      labelNames: [...labelNames, 'component', 'state'],
      registers: [registry],
      collect() {
        const now = engine.componentStates();
        for (const [component, states] of Object.entries(STATES)) {
          for (const state of states) this.set({ ...labels, component, state }, now[component as keyof typeof now] === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'vllm:engine_fully_awake',
      help: '1 when every component is resident and the scheduler runs.',
      labelNames,
      registers: [registry],
      collect() {
        this.set(labels, engine.isSleeping() ? 0 : 1);
      },
    });
  }
  const promptTokens = new Counter({ name: 'vllm:prompt_tokens_total', help: 'Number of prefill tokens processed.', labelNames, registers: [registry] });
  const generationTokens = new Counter({ name: 'vllm:generation_tokens_total', help: 'Number of generation tokens processed.', labelNames, registers: [registry] });
  const success = new Counter({
    name: 'vllm:request_success_total',
    help: 'Count of successfully processed requests.',
    labelNames: [...labelNames, 'finished_reason'],
    registers: [registry],
  });
  return {
    registry,
    recordOperation(operation: 'sleep' | 'wake_up', seconds: number) {
      ops?.observe({ ...labels, operation }, seconds);
    },
    recordRequest(prompt: number, generated: number, finish: string) {
      promptTokens.inc(labels, prompt);
      generationTokens.inc(labels, generated);
      success.inc({ ...labels, finished_reason: finish });
    },
  };
}
export type SimMetrics = ReturnType<typeof createSimMetrics>;
