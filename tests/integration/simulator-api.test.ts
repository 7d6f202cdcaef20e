// The simulator's HTTP surface against vllm-contract §3, with the official SDK and raw HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { connectOutcome, postJson, raw, sseData } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { killAllStarted } from '../helpers/procs.ts';
import { abortAfterChunks } from '../helpers/gateway.ts';
import { MODEL, startSim, type Sim } from '../helpers/sim.ts';

after(killAllStarted);

describe('simulator: startup', () => {
  test('refuses connections while loading, then logs vLLM lines and answers /health with an empty 200', async () => {
    const sim = await startSim({ env: { VLLM_SIM_LOAD_SECONDS: '1.5' }, waitReady: false });
    await sim.proc.waitOutput(/Initializing a V1 LLM engine/);
    assert.equal(await connectOutcome(sim.port), 'ECONNREFUSED');
    await waitFor('ready', async () => (await raw(`${sim.url}/health`)).status === 200, 20_000);
    const h = await raw(`${sim.url}/health`);
    assert.equal(h.body, '');
    const out = sim.proc.output();
    assert.match(out, /\(APIServer pid=\d+\) INFO \d\d-\d\d \d\d:\d\d:\d\d \[api_server\.py:\d+\] vLLM API server version/);
    assert.match(out, /Starting vLLM API server 0 on http:\/\/127\.0\.0\.1:\d+/);
    assert.match(out, /Route: \/v1\/chat\/completions, Methods: POST/);
    assert.match(out, /Application startup complete\./);
    assert.match(out, /SECURITY WARNING: Development endpoints are enabled!/);
    sim.proc.kill();
  });

  test('a failed load prints the root cause, then "Engine core initialization failed", and exits 1', async () => {
    const cause = 'ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.';
    const sim = await startSim({ env: { VLLM_SIM_FAIL_LOAD: cause }, waitReady: false });
    const { code } = await sim.proc.exited;
    assert.equal(code, 1);
    const out = sim.proc.output();
    const rootAt = out.indexOf(cause);
    const failAt = out.indexOf('RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}');
    assert.ok(rootAt >= 0 && failAt > rootAt, out);
    sim.proc.kill();
  });

  test('bad command line: exit 2 with a usage error', async () => {
    const sim = await startSim({ args: ['--port'], waitReady: false });
    const { code } = await sim.proc.exited;
    assert.equal(code, 2);
    assert.match(sim.proc.output(), /vllm serve: error:/);
    sim.proc.kill();
  });
});

describe('simulator: OpenAI API', () => {
  let sim: Sim;
  let client: OpenAI;
  before(async () => {
    sim = await startSim({ args: ['--served-model-name', 'alias-a', 'alias-b', '--max-model-len', '256', '--gpu-memory-utilization', '0.9'] });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(() => sim.proc.kill());

  test('/v1/models lists every served name with root = the model', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    assert.deepEqual(ids, ['alias-a', 'alias-b']);
    const card = list.data[0] as unknown as Record<string, unknown>;
    assert.equal(card.root, MODEL);
    assert.equal(card.owned_by, 'vllm');
    assert.equal(card.max_model_len, 256);
  });

  test('chat completion: every field present, usage adds up, id from x-request-id, max_tokens → length', async () => {
    const res = await client.chat.completions.create(
      { model: 'alias-b', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 4 },
      { headers: { 'x-request-id': 'req-123' } },
    );
    assert.equal(res.id, 'chatcmpl-req-123');
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, 'alias-b');
    const choice = res.choices[0]!;
    assert.equal(choice.finish_reason, 'length');
    assert.equal(choice.message.role, 'assistant');
    assert.ok(choice.message.content && choice.message.content.length > 0);
    assert.ok('stop_reason' in choice && 'refusal' in choice.message && 'tool_calls' in choice.message);
    const u = res.usage!;
    assert.equal(u.completion_tokens, 4);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });

  test('model is optional; a natural answer ends with finish_reason stop', async () => {
    const res = await client.chat.completions.create({ model: '', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.choices[0]!.finish_reason, 'stop');
    assert.equal(res.usage!.completion_tokens, 16);
  });

  test('stop strings are honoured and reported in stop_reason', async () => {
    const res = await client.completions.create({ model: 'alias-a', prompt: 'hi', max_tokens: 40, stop: ['engine'] } as any);
    const choice = res.choices[0]! as any;
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.stop_reason, 'engine');
    assert.ok(!choice.text.includes('engine'));
  });

  test('streaming chat: role-only first chunk, content chunks, finish chunk, no usage unless asked, [DONE]', async () => {
    const stream = await client.chat.completions.create({ model: 'alias-a', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '' });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.ok(text.length > 0);
    const last = chunks.at(-1)!;
    assert.equal(last.choices[0]!.finish_reason, 'length');
    assert.ok(chunks.every((c) => !('usage' in c) || c.usage == null));
    const r = await postJson(`${sim.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: 2, stream: true });
    assert.match(String(r.headers['content-type']), /^text\/event-stream; charset=utf-8/);
    assert.equal(sseData(r.body).at(-1), '[DONE]');
    assert.ok(r.body.split('\n\n').filter(Boolean).every((e) => e.startsWith('data: ')));
  });

  test('streaming with include_usage: a final usage chunk with empty choices', async () => {
    const stream = await client.chat.completions.create({
      messages: [{ role: 'user', content: 'one two three' }],
      model: 'alias-a',
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage!.completion_tokens, 5);
    assert.equal(last.usage!.total_tokens, last.usage!.prompt_tokens + 5);
  });

  test('streaming completions end with a finish chunk and [DONE]', async () => {
    const r = await postJson(`${sim.url}/v1/completions`, { prompt: 'a b', max_tokens: 3, stream: true });
    const data = sseData(r.body);
    assert.equal(data.at(-1), '[DONE]');
    const parsed = data.slice(0, -1).map((d) => JSON.parse(d));
    assert.ok(parsed.every((p) => p.object === 'text_completion'));
    assert.equal(parsed.at(-1).choices[0].finish_reason, 'length');
  });

  test('ignore_eos generates exactly max_tokens', async () => {
    const res = await client.chat.completions.create({ model: 'alias-a', messages: [{ role: 'user', content: 'x' }], max_tokens: 30, ignore_eos: true } as any);
    assert.equal(res.usage!.completion_tokens, 30);
  });

  test('errors: unknown model 404, bad body 400, prompt over max_model_len 400 — as SDK error classes', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.message.includes('The model `nope` does not exist.'), true);
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: 'alias-a', messages: 'not a list' as any }), OpenAI.BadRequestError);
    const long = 'word '.repeat(300);
    await assert.rejects(client.completions.create({ model: 'alias-a', prompt: long, max_tokens: 5 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(e.message, /maximum context length is 256 tokens/);
      return true;
    });
    const r = await postJson(`${sim.url}/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual(JSON.parse(r.body), { error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', param: null, code: 404 } });
    const ct = await raw(`${sim.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    assert.equal(ct.status, 400);
  });

  test('unknown route 404 {"detail":"Not Found"}, wrong method 405', async () => {
    const r = await raw(`${sim.url}/nope`);
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), { detail: 'Not Found' });
    const m = await raw(`${sim.url}/v1/chat/completions`);
    assert.equal(m.status, 405);
    assert.deepEqual(JSON.parse(m.body), { detail: 'Method Not Allowed' });
  });

  test('/version, /tokenize, /ping, /metrics with vLLM gauges', async () => {
    assert.deepEqual(JSON.parse((await raw(`${sim.url}/version`)).body), { version: '0.31.0' });
    const t = JSON.parse((await postJson(`${sim.url}/tokenize`, { prompt: 'one two three' })).body);
    assert.equal(t.count, 3);
    assert.equal(t.tokens.length, 3);
    assert.equal(t.max_model_len, 256);
    assert.equal((await raw(`${sim.url}/ping`, { method: 'POST' })).status, 200);
    const m = (await raw(`${sim.url}/metrics`)).body;
    for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:prompt_tokens_total', 'vllm:generation_tokens_total']) {
      assert.match(m, new RegExp(`^${name}\\{model_name="alias-a",engine="0"\\} `, 'm'), name);
    }
    assert.match(m, /^vllm:engine_sleep_state\{model_name="alias-a",engine="0",sleep_state="awake"\} 1$/m);
  });

  test('client disconnect aborts the generation and is counted', async () => {
    const before = (await sim.stats()).aborted_by_disconnect;
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'alias-a', messages: [{ role: 'user', content: 'x' }], max_tokens: 200, ignore_eos: true, stream: true } as any,
      { signal: ac.signal },
    );
    assert.equal(await abortAfterChunks(stream as any, ac, 3), 3);
    await waitFor('abort counted', async () => (await sim.stats()).aborted_by_disconnect === before + 1);
    await waitFor('slot freed', async () => (await sim.stats()).inflight === 0);
  });

  test('idle keep-alive connections are closed by the server (VLLM_HTTP_TIMEOUT_KEEP_ALIVE)', async () => {
    const s = await startSim({ env: { VLLM_HTTP_TIMEOUT_KEEP_ALIVE: '1' } });
    const net = await import('node:net');
    const sock = net.connect(s.port, '127.0.0.1');
    sock.resume(); // consume the response so the server's FIN is seen
    const t0 = Date.now();
    const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - t0)));
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const ms = await closed;
    assert.ok(ms >= 900 && ms < 5000, `closed after ${ms} ms`);
    s.proc.kill();
  });

  test('--api-key guards /v1 only, with vLLM\'s flat 401 body', async () => {
    const s = await startSim({ args: ['--api-key', 'k1'] });
    const r = await raw(`${s.url}/v1/models`);
    assert.equal(r.status, 401);
    assert.deepEqual(JSON.parse(r.body), { error: 'Unauthorized' });
    assert.equal((await raw(`${s.url}/v1/models`, { headers: { authorization: 'bearer k1' } })).status, 200);
    assert.equal((await raw(`${s.url}/is_sleeping`)).status, 200);
    s.proc.kill();
  });
});
