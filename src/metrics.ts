// The gateway's Prometheus metrics (prom-client). Names are prefixed gateway_ so that vLLM's own series,
// appended to /metrics, never collide with ours (both export process_* otherwise).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface MetricsSources {
  /** Every engine state, for the state gauge's labels. */
  states: readonly string[];
  state(): string;
  inFlight(): number;
}

export function createMetrics(src: MetricsSources) {
  const registry = new Registry();
  // The event-loop lag histogram (nodejs_eventloop_lag_p50_seconds …) keeps prom-client's 10 ms sampling
  // on purpose, although it wakes an idle gateway 100 times a second (about 8 ms of CPU per second on our
  // 2-core machine, bench `rest`): Node records each sample as the whole interval, lag plus resolution, so
  // at 100 ms every figure read 100 ms more than the usual dashboards and alerts expect.
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  const registers = [registry];
  const durationBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

  const m = {
    registry,
    requests: new Counter({ name: 'gateway_requests_total', help: 'Requests answered, by route, method and status.', labelNames: ['route', 'method', 'status'], registers }),
    requestDuration: new Histogram({
      name: 'gateway_request_duration_seconds',
      help: 'Time from arrival to the last byte, by route.',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    ttfb: new Histogram({
      name: 'gateway_time_to_first_byte_seconds',
      help: 'Time from forwarding to the first byte from vLLM, by route.',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    relayedBytes: new Counter({ name: 'gateway_relayed_bytes_total', help: 'Bytes written to clients for relayed /v1 responses, by route.', labelNames: ['route'], registers }),
    upstreamErrors: new Counter({ name: 'gateway_upstream_errors_total', help: 'Failures talking to vLLM, by kind.', labelNames: ['kind'], registers }),
    clientStalls: new Counter({ name: 'gateway_client_stalls_total', help: 'Relays cut because the client read nothing for CLIENT_STALL_TIMEOUT_SECONDS.', registers }),
    sleeps: new Counter({ name: 'gateway_engine_sleeps_total', help: 'Sleep transitions, by level and outcome.', labelNames: ['level', 'outcome'], registers }),
    wakes: new Counter({ name: 'gateway_engine_wakes_total', help: 'Wake transitions, by level and outcome.', labelNames: ['level', 'outcome'], registers }),
    sleepDuration: new Histogram({ name: 'gateway_engine_sleep_duration_seconds', help: 'Time to fall asleep (drain included), by level.', labelNames: ['level'], buckets: durationBuckets, registers }),
    wakeDuration: new Histogram({ name: 'gateway_engine_wake_duration_seconds', help: 'Time to wake (reload and warm-up included), by level.', labelNames: ['level'], buckets: durationBuckets, registers }),
    wakeWait: new Histogram({ name: 'gateway_wake_wait_seconds', help: 'Time requests waited for the engine (asleep, waking or starting) before being forwarded.', buckets: durationBuckets, registers }),
    restarts: new Counter({ name: 'gateway_engine_restarts_total', help: 'Engine restarts after a failure.', registers }),
    wakeCheckFailures: new Counter({ name: 'gateway_wake_check_failures_total', help: 'Wakes after which the engine answered the reference question differently (WAKE_CHECK).', registers }),
    sleepFreed: new Gauge({ name: 'gateway_engine_sleep_freed_bytes', help: 'GPU memory the last sleep freed, as vLLM logged it (launch mode).', registers }),
    sleepInUse: new Gauge({ name: 'gateway_engine_sleep_in_use_bytes', help: 'GPU memory still in use after the last sleep, as vLLM logged it (launch mode).', registers }),
    drains: new Counter({ name: 'gateway_drains_total', help: 'Shutdown drains, by outcome (complete: every request finished; deadline: some were cut).', labelNames: ['outcome'], registers }),
  };
  new Gauge({
    name: 'gateway_requests_in_flight',
    help: 'Requests between arrival and their last byte.',
    registers,
    collect() {
      this.set(src.inFlight());
    },
  });
  new Gauge({
    name: 'gateway_engine_state',
    help: 'The engine state: 1 for the current one.',
    labelNames: ['state'],
    registers,
    collect() {
      const now = src.state();
      for (const s of src.states) this.set({ state: s }, s === now ? 1 : 0);
    },
  });
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Per-request updates through cached label children: prom-client hashes a label object on every call,
 * a child does not. Keys are low-cardinality (routeLabel × method × status).
 */
export function requestRecorder(m: Metrics) {
  const counters = new Map<string, ReturnType<Metrics['requests']['labels']>>();
  const durations = new Map<string, ReturnType<Metrics['requestDuration']['labels']>>();
  const ttfbs = new Map<string, ReturnType<Metrics['ttfb']['labels']>>();
  const bytes = new Map<string, ReturnType<Metrics['relayedBytes']['labels']>>();
  const child = <T>(cache: Map<string, T>, key: string, make: () => T): T => {
    let c = cache.get(key);
    if (!c) cache.set(key, (c = make()));
    return c;
  };
  return {
    done(route: string, method: string, status: number, seconds: number): void {
      const s = String(status);
      child(counters, `${route} ${method} ${s}`, () => m.requests.labels(route, method, s)).inc();
      child(durations, route, () => m.requestDuration.labels(route)).observe(seconds);
    },
    ttfb(route: string, seconds: number): void {
      child(ttfbs, route, () => m.ttfb.labels(route)).observe(seconds);
    },
    relayed(route: string, n: number): void {
      child(bytes, route, () => m.relayedBytes.labels(route)).inc(n);
    },
  };
}

const KNOWN_V1 = new Set(['/v1/chat/completions', '/v1/completions', '/v1/models', '/v1/embeddings', '/v1/responses', '/v1/audio/transcriptions', '/v1/rerank', '/v1/score']);

/** A low-cardinality route label. */
export function routeLabel(path: string): string {
  if (path.startsWith('/v1/')) return KNOWN_V1.has(path) ? path : '/v1/other';
  return path;
}
