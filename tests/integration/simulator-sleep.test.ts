// The simulator's sleep mode against vllm-contract §2.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { postJson, raw } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { killAllStarted } from '../helpers/procs.ts';
import { startSim, type Sim } from '../helpers/sim.ts';

after(killAllStarted);

const post = (sim: Sim, path: string, json?: unknown) => raw(`${sim.url}${path}`, { method: 'POST', ...(json === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) }) });
const isSleeping = async (sim: Sim) => JSON.parse((await raw(`${sim.url}/is_sleeping`)).body).is_sleeping as boolean;
const longChat = { messages: [{ role: 'user' as const, content: 'x' }], max_tokens: 40, ignore_eos: true };

async function collect(stream: AsyncIterable<any>): Promise<{ text: string; finish: string | null }> {
  let text = '';
  let finish: string | null = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

describe('simulator: sleep endpoints exist only with dev mode and --enable-sleep-mode', () => {
  test('without VLLM_SERVER_DEV_MODE: plain 404 {"detail":"Not Found"}', async () => {
    const sim = await startSim({ devMode: false });
    for (const p of ['/sleep', '/wake_up', '/collective_rpc']) {
      const r = await post(sim, p);
      assert.equal(r.status, 404, p);
      assert.deepEqual(JSON.parse(r.body), { detail: 'Not Found' });
    }
    assert.equal((await raw(`${sim.url}/is_sleeping`)).status, 404);
    sim.proc.kill();
  });

  test('dev mode without --enable-sleep-mode: /sleep fails loudly (500) and logs why', async () => {
    const sim = await startSim({ sleepMode: false });
    const r = await post(sim, '/sleep?level=1');
    assert.equal(r.status, 500);
    await sim.proc.waitOutput(/Sleep mode is not enabled/);
    sim.proc.kill();
  });
});

describe('simulator: sleep and wake (vLLM 0.19, empty answers)', () => {
  let sim: Sim;
  let client: OpenAI;
  before(async () => {
    sim = await startSim({ env: { VLLM_SIM_VERSION: '0.19.1', VLLM_SIM_TOKEN_MS: '20', VLLM_SIM_SLEEP_MS: '100', VLLM_SIM_WAKE_MS: '200' } });
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  after(() => sim.proc.kill());

  test('/sleep returns an empty 200, /is_sleeping reports it, /wake_up undoes it; both idempotent', async () => {
    const s = await post(sim, '/sleep?level=1');
    assert.equal(s.status, 200);
    assert.equal(s.body, '');
    assert.equal(await isSleeping(sim), true);
    assert.equal((await post(sim, '/sleep?level=1')).status, 200);
    await sim.proc.waitOutput(/Executor is already sleeping\./);
    const metrics = (await raw(`${sim.url}/metrics`)).body;
    assert.match(metrics, /sleep_state="weights_offloaded"\} 1/);
    const w = await post(sim, '/wake_up');
    assert.equal(w.status, 200);
    assert.equal(w.body, '');
    assert.equal(await isSleeping(sim), false);
    assert.equal((await post(sim, '/wake_up')).status, 200);
    await sim.proc.waitOutput(/Executor is not sleeping\./);
  });

  test('bad level → 400 BadRequestError; bad mode → 400', async () => {
    const r = await post(sim, '/sleep?level=abc');
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body).error.type, 'BadRequestError');
    assert.equal((await post(sim, '/sleep?level=1&mode=bogus')).status, 400);
    assert.equal(await isSleeping(sim), false);
  });

  test('mode=abort (default): in-flight streams end with finish_reason abort', async () => {
    const streams = [0, 1, 2].map(() => client.chat.completions.create({ ...longChat, model: '', stream: true } as any));
    const results = (await Promise.all(streams)).map((s) => collect(s as any));
    await waitFor('streams running', async () => (await sim.stats()).inflight === 3);
    assert.equal((await post(sim, '/sleep?level=1')).status, 200);
    for (const r of await Promise.all(results)) assert.equal(r.finish, 'abort');
    const stats = await sim.stats();
    assert.equal(stats.sleep_calls.at(-1).inflight, 3);
    await post(sim, '/wake_up');
  });

  test('mode=wait: in-flight requests finish normally, then the engine sleeps', async () => {
    const pending = client.chat.completions.create({ ...longChat, max_tokens: 15, model: '' } as any);
    await waitFor('request running', async () => (await sim.stats()).inflight === 1);
    const t0 = Date.now();
    assert.equal((await post(sim, '/sleep?level=1&mode=wait')).status, 200);
    const res = await pending;
    assert.equal(res.choices[0]!.finish_reason, 'length');
    assert.ok(Date.now() - t0 >= 100);
    assert.equal(await isSleeping(sim), true);
    await sim.proc.waitOutput(/Waiting for in-flight requests to complete before sleeping/);
    await post(sim, '/wake_up');
  });

  test('mode=keep: in-flight requests freeze and resume after wake', async () => {
    const pending = client.chat.completions.create({ ...longChat, max_tokens: 10, model: '' } as any);
    await waitFor('request running', async () => (await sim.stats()).inflight === 1);
    assert.equal((await post(sim, '/sleep?level=1&mode=keep')).status, 200);
    const settled = await Promise.race([pending.then(() => 'done'), new Promise((r) => setTimeout(() => r('frozen'), 300))]);
    assert.equal(settled, 'frozen');
    await post(sim, '/wake_up');
    const res = await pending;
    assert.equal(res.choices[0]!.finish_reason, 'length');
    assert.equal(res.usage!.completion_tokens, 10);
  });

  test('a request while asleep is held with no headers until /wake_up, then served', async () => {
    await post(sim, '/sleep?level=1');
    let headersAt = 0;
    const http = await import('node:http');
    const done = new Promise<string>((resolve, reject) => {
      const req = http.request(`${sim.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        headersAt = Date.now();
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 2, stream: true }));
    });
    await waitFor('request parked', async () => (await sim.stats()).inflight === 1);
    const before = (await sim.stats()).requests_while_asleep;
    assert.ok(before >= 1);
    await new Promise((r) => setTimeout(r, 200)); // nothing may arrive during this window
    assert.equal(headersAt, 0, 'no headers while asleep');
    const wokeAt = Date.now();
    await post(sim, '/wake_up');
    const body = await done;
    assert.ok(headersAt >= wokeAt);
    assert.match(body, /data: \[DONE\]/);
  });

  test('level 2 + plain wake_up → garbage output; weights wake + reload_weights + kv_cache wake → valid', async () => {
    await post(sim, '/sleep?level=2');
    await post(sim, '/wake_up');
    const bad = await client.completions.create({ model: '', prompt: 'hi', max_tokens: 6 });
    assert.match(bad.choices[0]!.text, /<unk>|\u00bf|zq|xx#|%%|\u0416|\u00e6|\u2587/);
    assert.ok((await sim.stats()).garbage_answers >= 1);

    await post(sim, '/sleep?level=2');
    assert.equal((await post(sim, '/wake_up?tags=weights')).status, 200);
    assert.equal(await isSleeping(sim), true, 'partial wake still reports sleeping');
    const rpc = await postJson(`${sim.url}/collective_rpc`, { method: 'reload_weights' });
    assert.equal(rpc.status, 200);
    assert.equal((await post(sim, '/wake_up?tags=kv_cache')).status, 200);
    assert.equal((await post(sim, '/reset_prefix_cache')).status, 200);
    assert.equal(await isSleeping(sim), false);
    const before = (await sim.stats()).garbage_answers;
    const good = await client.completions.create({ model: '', prompt: 'hi', max_tokens: 6 });
    assert.doesNotMatch(good.choices[0]!.text, /<unk>/);
    const stats = await sim.stats();
    assert.equal(stats.garbage_answers, before);
    assert.ok(stats.reload_weights_calls >= 1);
    assert.equal(stats.weights_valid, true);
  });

  test('collective_rpc without method → 400', async () => {
    const r = await postJson(`${sim.url}/collective_rpc`, {});
    assert.equal(r.status, 400);
    assert.match(r.body, /Missing 'method' in request body/);
  });

  test('/pause makes /is_sleeping true; /resume clears it', async () => {
    assert.deepEqual(JSON.parse((await post(sim, '/pause?mode=wait')).body), { status: 'paused' });
    assert.equal(await isSleeping(sim), true);
    assert.deepEqual(JSON.parse((await post(sim, '/resume')).body), { status: 'resumed' });
    assert.equal(await isSleeping(sim), false);
  });
});

describe('simulator: the sleep API of vLLM 0.31 (VLLM_SIM_VERSION, the default)', () => {
  let sim: Sim;
  before(async () => {
    sim = await startSim({ env: { VLLM_SIM_SLEEP_MS: '40', VLLM_SIM_WAKE_MS: '40' }, args: ['--api-key', 'k'] });
  });
  after(() => sim.proc.kill());

  test('JSON answers; typed level and mode (400); a partial wake keeps scheduling paused; component gauges', async () => {
    const s = await post(sim, '/sleep?level=2');
    assert.deepEqual(JSON.parse(s.body), { status: 'sleeping', level: 2 });
    for (const bad of ['/sleep?level=3', '/sleep?level=1&mode=bogus']) {
      const r = await post(sim, bad);
      assert.equal(r.status, 400, bad);
      assert.match(JSON.parse(r.body).error.message, /Input should be/, bad);
    }
    const metrics = () => raw(`${sim.url}/metrics`).then((r) => r.body);
    assert.match(await metrics(), /vllm:engine_sleep_component_state\{[^}]*component="weights",state="discarded"\} 1/);
    assert.match(await metrics(), /^vllm:engine_fully_awake\{[^}]*\} 0$/m);
    const partial = await post(sim, '/wake_up?tags=weights');
    assert.deepEqual(JSON.parse(partial.body), { status: 'sleeping', tags: ['weights'] });
    assert.match(await metrics(), /component="scheduler",state="paused"\} 1/, 'scheduling stays paused after a partial wake');
    await post(sim, '/collective_rpc', { method: 'reload_weights' });
    const full = await post(sim, '/wake_up?tags=kv_cache');
    assert.deepEqual(JSON.parse(full.body), { status: 'awake', tags: ['kv_cache'] });
    assert.match(await metrics(), /^vllm:engine_fully_awake\{[^}]*\} 1$/m);
    assert.match(await metrics(), /vllm:sleep_mode_operation_duration_seconds_count\{[^}]*operation="wake_up"\} 2/);
  });

  test('/release_kv_cache_memory after sleep?level=0&mode=keep; the API key guards /inference too', async () => {
    assert.equal((await post(sim, '/release_kv_cache_memory')).status, 400, 'not paused: refused');
    await post(sim, '/sleep?level=0&mode=keep');
    assert.deepEqual(JSON.parse((await post(sim, '/release_kv_cache_memory')).body), { status: 'kv_cache_released' });
    await post(sim, '/wake_up');
    assert.equal((await raw(`${sim.url}/inference`, { method: 'POST', body: '{}' })).status, 401);
  });
});

describe('simulator: version-dependent behaviour', () => {
  test('before 0.17 a request while asleep crashes the engine (500, /health 503)', async () => {
    const sim = await startSim({ env: { VLLM_SIM_VERSION: '0.16.0' } });
    await post(sim, '/sleep?level=1');
    const r = await postJson(`${sim.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.status, 500);
    assert.equal(r.body, '');
    await waitFor('health 503', async () => (await raw(`${sim.url}/health`)).status === 503);
    await sim.proc.waitOutput(/Engine core proc EngineCore_DP0 died unexpectedly/);
    sim.proc.kill();
  });

  test('VLLM_SIM_REJECT_WHILE_ASLEEP ([unmerged] #51488): a request while asleep is rejected with 503, not parked', async () => {
    const sim = await startSim({ env: { VLLM_SIM_REJECT_WHILE_ASLEEP: '1' } });
    await post(sim, '/sleep?level=1');
    const r = await postJson(`${sim.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).error.code, 503);
    sim.proc.kill();
  });

  test('VLLM_SIM_LEGACY_ERRORS: the pre-0.10.1 flat error body', async () => {
    const sim = await startSim({ env: { VLLM_SIM_LEGACY_ERRORS: '1' } });
    const r = await postJson(`${sim.url}/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), { object: 'error', message: 'The model `nope` does not exist.', type: 'NotFoundError', param: null, code: 404 });
    sim.proc.kill();
  });

  test('VLLM_SIM_SLEEP_FAIL_STATUS makes /sleep fail without sleeping', async () => {
    const sim = await startSim({ env: { VLLM_SIM_SLEEP_FAIL_STATUS: '500' } });
    assert.equal((await post(sim, '/sleep?level=1')).status, 500);
    assert.equal(await isSleeping(sim), false);
    sim.proc.kill();
  });
});
