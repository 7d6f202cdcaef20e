// The HTTP surface of `vllm serve` (docs/vllm.md, HTTP details): routes, shapes, status codes, auth on /v1 only.
import http from 'node:http';
import { z } from 'zod';
import { EngineDeadError, ShutdownRejectedError, type GenerateResult, type SimEngine, type SleepMode } from './engine.ts';
import { claim, SLEEP_RESIDUE } from './gpu-ledger.ts';
import type { VllmLog } from './log.ts';
import type { SimMetrics } from './metrics.ts';
import { versionAtLeast, type SimOptions } from './options.ts';
import * as P from './protocol.ts';
import { chatRequest, completionRequest, detokenizeRequest, rpcRequest, tokenizeRequest, validationMessage } from './requests.ts';
import { chatPromptTokens, contentText, seedOf, tokenId, tokenize } from './tokens.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<void> | void;

export interface SimServerDeps {
  opts: SimOptions;
  engine: SimEngine;
  log: VllmLog;
  metrics: SimMetrics;
  enginePid: () => number | undefined;
  killEngine: () => void;
}

class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) reject(new HttpError(400, 'request body too large', 'Bad Request'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function empty(res: http.ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': 0 });
  res.end();
}

/** Python's int(): optional sign and surrounding spaces, nothing else. */
function pyInt(raw: string): number {
  if (!/^\s*[+-]?\d+\s*$/.test(raw)) throw new HttpError(400, `invalid literal for int() with base 10: '${raw}'`, 'BadRequestError');
  return Number(raw.trim());
}

export function createSimServer(d: SimServerDeps): { server: http.Server; routeLines: string[] } {
  const { opts, engine, log } = d;
  const sleepApi = versionAtLeast(opts.version, '0.17.0');
  // vLLM >= 0.31: typed sleep parameters, JSON answers, /release_kv_cache_memory, a wider API key guard.
  const richSleepApi = versionAtLeast(opts.version, '0.31.0');
  const guarded = richSleepApi ? ['/v1', '/v2', '/inference', '/cohere'] : ['/v1'];
  const err = (res: http.ServerResponse, e: HttpError) => json(res, e.status, P.errorBody(e.status, e.message, e.type, opts.legacyErrors));

  async function parseJson<T>(req: http.IncomingMessage, schema: z.ZodType<T>, modelName: string, requireJsonType: boolean): Promise<T> {
    if (requireJsonType) {
      const media = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (media !== 'application/json') throw new HttpError(400, "Unsupported Media Type: Only 'application/json' is allowed", 'Bad Request');
    }
    const raw = await readBody(req);
    let data: unknown;
    try {
      data = JSON.parse(raw);
    } catch (e) {
      throw new HttpError(400, `JSON decode error: ${(e as Error).message}`, 'Bad Request');
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success) throw new HttpError(400, validationMessage(modelName, parsed.error), 'Bad Request');
    return parsed.data;
  }

  function checkModel(model: string | null | undefined): string {
    if (!model) return opts.servedModelNames[0]!;
    if (!opts.servedModelNames.includes(model)) throw new HttpError(404, `The model \`${model}\` does not exist.`, 'NotFoundError');
    return model;
  }

  async function inference(kind: 'chat' | 'completion', req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chat = kind === 'chat' ? await parseJson(req, chatRequest, 'ChatCompletionRequest', true) : null;
    const completion = chat ? null : await parseJson(req, completionRequest, 'CompletionRequest', true);
    const body = (chat ?? completion)!;
    const model = checkModel(body.model);
    if ((body.n ?? 1) > 1) throw new HttpError(400, 'n > 1 is not supported by the vLLM simulator', 'BadRequestError');
    if (engine.dead) return empty(res, 500);
    if (opts.rejectWhileAsleep && engine.isSleeping()) {
      engine.stats.requests_while_asleep++;
      throw new HttpError(503, 'The engine is paused or asleep (EnginePausedError).', 'ServiceUnavailableError');
    }
    let promptText: string;
    let promptTokens: number;
    if (chat) {
      promptText = chat.messages.map((m) => contentText(m.content)).join('\n');
      promptTokens = chatPromptTokens(chat.messages);
    } else {
      const p = completion!.prompt;
      promptText = typeof p === 'string' ? p : p.join(' ');
      promptTokens = typeof p === 'string' ? tokenize(p).length : p.length;
    }
    const requested = body.max_completion_tokens ?? body.max_tokens ?? null;
    if (promptTokens >= opts.maxModelLen || (requested !== null && promptTokens + requested > opts.maxModelLen)) {
      const msg =
        requested === null
          ? `This model's maximum context length is ${opts.maxModelLen} tokens. However, your request has ${promptTokens} input tokens. Please reduce the length of the input messages.`
          : `This model's maximum context length is ${opts.maxModelLen} tokens. However, you requested ${requested} output tokens and your prompt contains at least ${promptTokens} input tokens, for a total of at least ${promptTokens + requested} tokens. Please reduce the length of the input prompt or the number of requested output tokens.`;
      throw new HttpError(400, msg, 'BadRequestError');
    }
    const maxTokens = requested ?? opts.maxModelLen - promptTokens;
    const headerId = req.headers['x-request-id'];
    const reqId = typeof headerId === 'string' && headerId ? headerId : P.randomId();
    const id = kind === 'chat' ? `chatcmpl-${reqId}` : `cmpl-${reqId}`;
    const extraHeaders: http.OutgoingHttpHeaders = opts.enableRequestIdHeaders ? { 'x-request-id': reqId } : {};
    const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const params = {
      id: reqId,
      seed: seedOf(promptText) + (body.seed ?? 0),
      maxTokens,
      minTokens: body.min_tokens ?? 0,
      ignoreEos: body.ignore_eos ?? false,
      stop,
      signal: gone.signal,
    };
    const created = P.nowSeconds();
    const chunkObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';

    if (body.stream) {
      const includeUsage = opts.forceIncludeUsage || body.stream_options?.include_usage === true;
      const start = () => {
        if (res.headersSent) return;
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...extraHeaders });
        if (kind === 'chat') res.write(P.sse(P.chatChunk(id, created, model, { role: 'assistant', content: '' }, null)));
      };
      const piece = (text: string) =>
        kind === 'chat' ? P.chatChunk(id, created, model, { content: text }, null) : P.textChunk(id, created, model, text, null);
      let result: GenerateResult;
      try {
        // The first chunk goes out only once the engine produced output: a paused engine sends no headers.
        result = await engine.generate(params, (text) => {
          start();
          res.write(P.sse(piece(text)));
        });
      } catch (e) {
        if (e instanceof ShutdownRejectedError && opts.shutdownReject === 'abort') {
          result = { finishReason: 'abort', stopReason: null, completionTokens: 0, text: '' };
        } else if (e instanceof ShutdownRejectedError) {
          return opts.shutdownReject === '500' ? empty(res, 500) : err(res, new HttpError(503, 'The server is shutting down.', 'ServiceUnavailableError'));
        } else if (e instanceof EngineDeadError && res.headersSent) {
          res.write(P.sse(P.errorBody(500, e.message, 'InternalServerError', false)));
          res.end(P.SSE_DONE);
          return;
        } else if (e instanceof EngineDeadError) {
          return empty(res, 500);
        } else throw e;
      }
      if (gone.signal.aborted) return;
      start();
      const last =
        kind === 'chat'
          ? P.chatChunk(id, created, model, { content: '' }, result.finishReason, result.stopReason)
          : P.textChunk(id, created, model, '', result.finishReason, result.stopReason);
      res.write(P.sse(last));
      if (includeUsage) res.write(P.sse(P.usageChunk(id, created, model, chunkObject, P.usage(promptTokens, result.completionTokens))));
      res.end(P.SSE_DONE);
      d.metrics.recordRequest(promptTokens, result.completionTokens, result.finishReason);
      return;
    }

    let result: GenerateResult;
    try {
      result = await engine.generate(params, () => {});
    } catch (e) {
      if (e instanceof ShutdownRejectedError && opts.shutdownReject === 'abort') {
        result = { finishReason: 'abort', stopReason: null, completionTokens: 0, text: '' };
      } else if (e instanceof ShutdownRejectedError) {
        return opts.shutdownReject === '500' ? empty(res, 500) : err(res, new HttpError(503, 'The server is shutting down.', 'ServiceUnavailableError'));
      } else if (e instanceof EngineDeadError) {
        return empty(res, 500);
      } else throw e;
    }
    if (gone.signal.aborted) return;
    const u = P.usage(promptTokens, result.completionTokens);
    d.metrics.recordRequest(promptTokens, result.completionTokens, result.finishReason);
    const out =
      kind === 'chat'
        ? P.chatCompletion(id, model, result.text, result.finishReason, result.stopReason, u)
        : P.textCompletion(id, model, result.text, result.finishReason, result.stopReason, u);
    json(res, 200, out, extraHeaders);
  }

  const sleepRoutes: Record<string, Record<string, Handler>> = {
    '/sleep': {
      POST: async (_req, res, url) => {
        const level = pyInt(url.searchParams.get('level') ?? '1');
        if (richSleepApi && (level < 0 || level > 2)) throw new HttpError(400, `level: Input should be 0, 1 or 2 (got ${level})`, 'Bad Request');
        let mode: SleepMode = 'abort';
        if (sleepApi) {
          const m = url.searchParams.get('mode') ?? 'abort';
          if (m !== 'abort' && m !== 'wait' && m !== 'keep') throw new HttpError(400, richSleepApi ? `mode: Input should be 'abort', 'wait' or 'keep'` : `Invalid pause mode: ${m}`, richSleepApi ? 'Bad Request' : 'BadRequestError');
          mode = m;
        }
        if (!opts.enableSleepMode) {
          log('ERROR', 'core.py:1022', 'Sleep mode is not enabled: start vLLM with --enable-sleep-mode. Executor failed.');
          return empty(res, 500);
        }
        if (opts.sleepFailStatus) {
          log('ERROR', 'api_router.py:48', `simulated sleep failure (VLLM_SIM_SLEEP_FAIL_STATUS=${opts.sleepFailStatus})`);
          return empty(res, opts.sleepFailStatus);
        }
        log('INFO', 'api_router.py:44', `sleep the engine with level ${level}`);
        const t0 = Date.now();
        await engine.sleep(level, mode);
        const core = d.enginePid();
        if (opts.gpuMemoryFile && core && level >= 1) claim(opts.gpuMemoryFile, core, opts.gpuMemoryUtilization * SLEEP_RESIDUE);
        d.metrics.recordOperation('sleep', (Date.now() - t0) / 1000);
        if (richSleepApi) json(res, 200, { status: 'sleeping', level });
        else empty(res, 200);
      },
    },
    '/wake_up': {
      POST: async (_req, res, url) => {
        const tags = url.searchParams.getAll('tags');
        const t0 = Date.now();
        // Waking takes the engine's share back: past 100 % of a shared GPU it fails as vLLM's does.
        const core = d.enginePid();
        if (opts.gpuMemoryFile && core && engine.sleepingTags.size > 0 && !claim(opts.gpuMemoryFile, core, opts.gpuMemoryUtilization).ok) {
          log('ERROR', 'cumem.py:121', 'torch.OutOfMemoryError: CUDA out of memory while waking up: another process holds the GPU memory');
          return empty(res, 500);
        }
        await engine.wakeUp(tags.length ? tags : null);
        d.metrics.recordOperation('wake_up', (Date.now() - t0) / 1000);
        if (richSleepApi) json(res, 200, { status: engine.isSleeping() ? 'sleeping' : 'awake', tags: tags.length ? tags : null });
        else empty(res, 200);
      },
    },
    ...(richSleepApi
      ? {
          '/release_kv_cache_memory': {
            POST: (_req: http.IncomingMessage, res: http.ServerResponse) => {
              if (engine.scheduler !== 'paused_all') throw new HttpError(400, 'release_kv_cache_memory needs the engine paused first (sleep?level=0&mode=keep)', 'BadRequestError');
              json(res, 200, { status: 'kv_cache_released' });
            },
          },
        }
      : {}),
    '/is_sleeping': { GET: (_req, res) => json(res, 200, { is_sleeping: engine.isSleeping() }) },
    '/collective_rpc': {
      POST: async (req, res) => {
        const body = await parseJson(req, rpcRequest, 'collective_rpc', false);
        if (!body.method) return json(res, 400, { error: "Missing 'method' in request body" });
        if (body.method !== 'reload_weights') {
          log('ERROR', 'multiproc_executor.py:290', `AttributeError: 'Worker' object has no attribute '${body.method}'`);
          return empty(res, 500);
        }
        try {
          engine.reloadWeights();
        } catch (e) {
          log('ERROR', 'gpu_worker.py:402', `reload_weights failed: ${(e as Error).message}`);
          return empty(res, 500);
        }
        log('INFO', 'gpu_model_runner.py:2130', 'Reloading weights inplace...');
        empty(res, 200);
      },
    },
    '/reset_prefix_cache': { POST: (_req, res) => empty(res, 200) },
    '/reset_mm_cache': { POST: (_req, res) => empty(res, 200) },
    '/reset_encoder_cache': { POST: (_req, res) => empty(res, 200) },
    '/pause': {
      POST: async (_req, res, url) => {
        const m = url.searchParams.get('mode') ?? 'abort';
        if (m !== 'abort' && m !== 'wait' && m !== 'keep') return json(res, 400, { error: `Invalid pause mode: ${m}` });
        await engine.pauseScheduler(m);
        json(res, 200, { status: 'paused' });
      },
    },
    '/resume': {
      POST: (_req, res) => {
        engine.resumeScheduler();
        json(res, 200, { status: 'resumed' });
      },
    },
    '/is_paused': { GET: (_req, res) => json(res, 200, { is_paused: engine.scheduler !== 'running' }) },
    '/server_info': { GET: (_req, res) => json(res, 200, { vllm_config: { model: opts.model, enable_sleep_mode: opts.enableSleepMode } }) },
  };

  const health: Handler = (_req, res) => empty(res, engine.dead ? 503 : 200);
  const routes: Record<string, Record<string, Handler>> = {
    '/health': { GET: health },
    '/ping': { GET: health, POST: health },
    '/version': { GET: (_req, res) => json(res, 200, { version: opts.version }) },
    '/load': { GET: (_req, res) => json(res, 200, { server_load: engine.stats.inflight }) },
    '/metrics': {
      GET: async (_req, res) => {
        const text = await d.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': d.metrics.registry.contentType });
        res.end(text);
      },
    },
    '/v1/models': { GET: (_req, res) => json(res, 200, P.modelList(opts.servedModelNames, opts.model, opts.maxModelLen)) },
    '/v1/chat/completions': { POST: (req, res) => inference('chat', req, res) },
    '/v1/completions': { POST: (req, res) => inference('completion', req, res) },
    '/tokenize': {
      POST: async (req, res) => {
        const body = await parseJson(req, tokenizeRequest, 'TokenizeRequest', false);
        checkModel(body.model);
        const text = 'messages' in body && Array.isArray(body.messages) ? body.messages.map((m) => contentText(m.content)).join('\n') : String(body.prompt);
        const tokens = tokenize(text).map(tokenId);
        json(res, 200, { count: tokens.length, max_model_len: opts.maxModelLen, tokens, token_strs: null });
      },
    },
    '/detokenize': {
      POST: async (req, res) => {
        const body = await parseJson(req, detokenizeRequest, 'DetokenizeRequest', false);
        checkModel(body.model);
        json(res, 200, { prompt: body.tokens.map((t) => ` tok${t}`).join('') });
      },
    },
    // Test-only introspection; real vLLM has no such routes.
    '/_sim/stats': {
      GET: (_req, res) =>
        json(res, 200, {
          ...engine.stats,
          engine_pid: d.enginePid() ?? null,
          is_sleeping: engine.isSleeping(),
          sleep_level: engine.sleepLevel,
          weights_valid: engine.weightsValid,
          dead: engine.dead,
          version: opts.version,
        }),
    },
    '/_sim/crash': {
      POST: (_req, res) => {
        const pid = d.enginePid();
        d.killEngine();
        json(res, 200, { killed: pid ?? null });
      },
    },
    ...(opts.devMode ? sleepRoutes : {}),
  };
  // FastAPI's schema lists every route with its methods, unless --disable-fastapi-docs (docs/vllm.md, HTTP details).
  if (!opts.disableDocs) {
    const listed = Object.entries(routes).filter(([path]) => !path.startsWith('/_sim'));
    const schema = {
      openapi: '3.1.0',
      info: { title: 'FastAPI', version: '0.1.0' },
      paths: Object.fromEntries(listed.map(([path, methods]) => [path, Object.fromEntries(Object.keys(methods).map((m) => [m.toLowerCase(), { summary: path }]))])),
    };
    routes['/openapi.json'] = { GET: (_req, res) => json(res, 200, schema) };
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    try {
      if (opts.apiKey && guarded.some((p) => path === p || path.startsWith(`${p}/`)) && req.method !== 'OPTIONS') {
        const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
        if (!m || m[1] !== opts.apiKey) return json(res, 401, { error: 'Unauthorized' });
      }
      const route = routes[path];
      if (!route) return json(res, 404, { detail: 'Not Found' });
      const handler = route[req.method ?? 'GET'];
      if (!handler) return json(res, 405, { detail: 'Method Not Allowed' });
      await handler(req, res, url);
    } catch (e) {
      if (res.headersSent) return void res.destroy();
      if (e instanceof HttpError) return err(res, e);
      log('ERROR', 'launcher.py:121', `Exception in ASGI application: ${(e as Error).stack ?? String(e)}`);
      empty(res, 500);
    }
  });
  server.keepAliveTimeout = opts.keepAliveSeconds * 1000;
  const routeLines = Object.entries(routes)
    .filter(([path]) => !path.startsWith('/_sim'))
    .map(([path, methods]) => `Route: ${path}, Methods: ${Object.keys(methods).join(', ')}`);
  return { server, routeLines };
}
