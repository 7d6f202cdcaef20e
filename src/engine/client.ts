// Typed calls to vLLM's control surface (docs/vllm.md, Sleep mode): each with its own deadline, on a pool of its own so
// that control calls never queue behind streams, each answer read whole up to a cap.
import type { Pool } from 'undici';
import { bufferedRequest, createUpstreamPool } from '../proxy/upstream.ts';
import { routeTableOf, type RouteTable } from './routes.ts';

/** A control call that failed: vLLM answered `status` (not 2xx), or, without a status, could not be reached. */
export class EngineCallError extends Error {
  override readonly name = 'EngineCallError';
  constructor(
    readonly what: string,
    readonly status: number | undefined,
    detail: string,
  ) {
    super(status === undefined ? `${what}: vLLM not reachable (${detail})` : `${what}: vLLM answered ${status}${detail ? ` ${detail.slice(0, 300)}` : ' (empty body)'}`);
  }
}

/** What the lifecycle asks of vLLM (EngineClient over HTTP; tests give it a fake). */
export interface EngineApi {
  health(timeoutMs?: number): Promise<number>;
  version(timeoutMs?: number): Promise<string | undefined>;
  models(timeoutMs?: number): Promise<string[]>;
  isSleeping(timeoutMs?: number): Promise<boolean>;
  sleep(level: number, mode: SleepMode | undefined, timeoutMs: number): Promise<void>;
  wakeUp(tags: string[] | undefined, timeoutMs: number): Promise<'awake' | 'sleeping' | undefined>;
  reloadWeights(timeoutMs: number): Promise<void>;
  resetPrefixCache(timeoutMs: number): Promise<void>;
  reportedSleepLevel(timeoutMs?: number): Promise<1 | 2 | undefined>;
  warmup(model: string | undefined, timeoutMs: number): Promise<void>;
  routes(timeoutMs?: number): Promise<RouteTable | undefined>;
  probe(model: string | undefined, timeoutMs: number): Promise<string>;
}

export interface EngineClientOptions {
  baseUrl: string;
  apiKey?: string | undefined;
}

export type SleepMode = 'wait' | 'abort';

/** The longest any call may take (a weights reload); each call's own deadline is shorter or equal. */
const RELOAD_LIMIT_MS = 600_000;
export const CONTROL_USER_AGENT = 'vllm-gateway (control)';

/** vLLM's control answers are small JSON; its /metrics text is the largest (tens of KB). */
const MAX_CONTROL_BODY = 4 << 20;

export class EngineClient implements EngineApi {
  private readonly pool: Pool;
  private readonly prefix: string;

  constructor(private readonly opts: EngineClientOptions) {
    ({ pool: this.pool, prefix: this.prefix } = createUpstreamPool(opts.baseUrl, { timeoutMs: RELOAD_LIMIT_MS }));
  }

  private async call(what: string, method: 'GET' | 'POST', path: string, timeoutMs: number, body?: unknown): Promise<{ status: number; text: string }> {
    // The gateway's own calls say so: vLLM's access log (and a test's recording upstream) tell them apart.
    const headers: Record<string, string> = { 'user-agent': CONTROL_USER_AGENT };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.apiKey && path.startsWith('/v1')) headers.authorization = `Bearer ${this.opts.apiKey}`;
    try {
      const res = await bufferedRequest(
        this.pool,
        { method, path: this.prefix + path, headers, body: body === undefined ? null : JSON.stringify(body) },
        MAX_CONTROL_BODY,
        AbortSignal.timeout(timeoutMs),
      );
      return { status: res.status, text: res.body.toString('utf8') };
    } catch (e) {
      const err = e as { code?: string; message?: string };
      throw new EngineCallError(what, undefined, err?.code ?? err?.message ?? String(e));
    }
  }

  private async ok(what: string, method: 'GET' | 'POST', path: string, timeoutMs: number, body?: unknown): Promise<string> {
    const r = await this.call(what, method, path, timeoutMs, body);
    if (r.status < 200 || r.status >= 300) throw new EngineCallError(what, r.status, r.text);
    return r.text;
  }

  /** 200 = alive (also while asleep), anything else = not serving; connection refused = not up yet (docs/vllm.md). */
  async health(timeoutMs = 5000): Promise<number> {
    return (await this.call('GET /health', 'GET', '/health', timeoutMs)).status;
  }

  async version(timeoutMs = 5000): Promise<string | undefined> {
    try {
      const v = JSON.parse(await this.ok('GET /version', 'GET', '/version', timeoutMs)) as { version?: unknown };
      return typeof v.version === 'string' ? v.version : undefined;
    } catch {
      return undefined;
    }
  }

  async models(timeoutMs = 5000): Promise<string[]> {
    const list = JSON.parse(await this.ok('GET /v1/models', 'GET', '/v1/models', timeoutMs)) as { data?: { id?: unknown }[] };
    return (list.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }

  async isSleeping(timeoutMs = 5000): Promise<boolean> {
    const v = JSON.parse(await this.ok('GET /is_sleeping', 'GET', '/is_sleeping', timeoutMs)) as { is_sleeping?: unknown };
    return v.is_sleeping === true;
  }

  /** vLLM reads level and mode from the query string, not a body. `mode` only for vLLM >= 0.17 (docs/vllm.md). */
  async sleep(level: number, mode: SleepMode | undefined, timeoutMs: number): Promise<void> {
    const q = `level=${level}${mode ? `&mode=${mode}` : ''}`;
    await this.ok(`POST /sleep?${q}`, 'POST', `/sleep?${q}`, timeoutMs);
  }

  /** Wakes `tags` (all without). vLLM >= 0.31 answers its status ("awake", or "sleeping" after a partial wake). */
  async wakeUp(tags: string[] | undefined, timeoutMs: number): Promise<'awake' | 'sleeping' | undefined> {
    const q = tags?.length ? '?' + tags.map((t) => `tags=${encodeURIComponent(t)}`).join('&') : '';
    const text = await this.ok(`POST /wake_up${q}`, 'POST', `/wake_up${q}`, timeoutMs);
    try {
      const status = (JSON.parse(text) as { status?: unknown }).status;
      return status === 'awake' || status === 'sleeping' ? status : undefined;
    } catch {
      return undefined; // an empty body (vLLM < 0.31)
    }
  }

  async reloadWeights(timeoutMs: number): Promise<void> {
    await this.ok('POST /collective_rpc reload_weights', 'POST', '/collective_rpc', timeoutMs, { method: 'reload_weights' });
  }

  async resetPrefixCache(timeoutMs: number): Promise<void> {
    await this.ok('POST /reset_prefix_cache', 'POST', '/reset_prefix_cache', timeoutMs);
  }

  /**
   * The sleep level vLLM reports (docs/vllm.md, Sleep mode): from the weights' component state where it has
   * it (>= 0.31), else from `vllm:engine_sleep_state`.
   */
  async reportedSleepLevel(timeoutMs = 5000): Promise<1 | 2 | undefined> {
    try {
      const text = await this.ok('GET /metrics', 'GET', '/metrics', timeoutMs);
      const weights = /^vllm:engine_sleep_component_state\{(?=[^}]*component="weights")[^}]*state="(\w+)"[^}]*\} 1(\.0)?$/m.exec(text)?.[1];
      if (weights === 'discarded') return 2;
      if (weights === 'offloaded') return 1;
      if (/^vllm:engine_sleep_state\{[^}]*sleep_state="discard_all"[^}]*\} 1(\.0)?$/m.test(text)) return 2;
      if (/^vllm:engine_sleep_state\{[^}]*sleep_state="weights_offloaded"[^}]*\} 1(\.0)?$/m.test(text)) return 1;
    } catch {
      /* older vLLM: no such gauge */
    }
    return undefined;
  }

  /**
   * A greedy answer to a fixed prompt (temperature 0, fixed seed, a few tokens): recorded at first ready and
   * asked again after every wake, so that an engine that wakes to garbage is caught before clients see it.
   */
  async probe(model: string | undefined, timeoutMs: number): Promise<string> {
    const body: Record<string, unknown> = { prompt: 'The capital of France is', max_tokens: 8, temperature: 0, seed: 0 };
    if (model) body.model = model;
    const res = JSON.parse(await this.ok('wake-check completion', 'POST', '/v1/completions', timeoutMs, body)) as { choices?: { text?: unknown }[] };
    const text = res.choices?.[0]?.text;
    if (typeof text !== 'string') throw new Error('wake-check completion: no text in the answer');
    return text;
  }

  /** A one-token completion, so the first user request after a wake does not pay for cold kernels. */
  async warmup(model: string | undefined, timeoutMs: number): Promise<void> {
    const body: Record<string, unknown> = { prompt: 'Hello', max_tokens: 1, temperature: 0 };
    if (model) body.model = model;
    await this.ok('warm-up completion', 'POST', '/v1/completions', timeoutMs, body);
  }

  /** The routes vLLM serves, from its OpenAPI schema; undefined where it has none (--disable-fastapi-docs). */
  async routes(timeoutMs = 5000): Promise<RouteTable | undefined> {
    try {
      return routeTableOf(JSON.parse(await this.ok('GET /openapi.json', 'GET', '/openapi.json', timeoutMs)));
    } catch {
      return undefined;
    }
  }

  async metricsText(timeoutMs = 3000): Promise<string | undefined> {
    try {
      return await this.ok('GET /metrics', 'GET', '/metrics', timeoutMs);
    } catch {
      return undefined;
    }
  }

  close(): void {
    this.pool.destroy().catch(() => {});
  }
}
