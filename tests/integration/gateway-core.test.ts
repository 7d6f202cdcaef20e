// The core gateway as a real process with the simulator as its real child, driven by the official SDK.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { abortAfterChunks, GATEWAY_MAIN, gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { lastEventBeforeDone, postJson, raw } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { startProcess } from '../helpers/procs.ts';
import { startSim } from '../helpers/sim.ts';

const gateway = gatewayFactory();

describe('gateway: the OpenAI API through the gateway', () => {
  let gw: Gateway;
  let client: OpenAI;
  before(async () => {
    gw = await gateway({ env: { VLLM_SIM_TOKEN_MS: '10' } });
    client = gw.client();
  });

  test('chat completion, non-streaming', async () => {
    const res = await client.chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.usage!.completion_tokens, 5);
    assert.equal(res.choices[0]!.finish_reason, 'length');
  });

  test('chat completion, streaming: chunks arrive one by one, as vLLM sends them', async () => {
    const stream = await client.chat.completions.create({
      model: 'sim/test-model',
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    const arrivals: number[] = [];
    let text = '';
    let usage;
    for await (const chunk of stream) {
      arrivals.push(performance.now());
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    assert.ok(text.length > 0);
    assert.equal(usage!.completion_tokens, 8);
    // 10 chunks at ~10 ms each: an unbuffered relay spreads them out over time.
    assert.ok(arrivals.at(-1)! - arrivals[0]! >= 40, `chunks spread over ${arrivals.at(-1)! - arrivals[0]!} ms`);
  });

  test('completions, streaming and not', async () => {
    const res = await client.completions.create({ model: 'sim/test-model', prompt: 'a b c', max_tokens: 4 });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.usage!.completion_tokens, 4);
    const stream = await client.completions.create({ model: 'sim/test-model', prompt: 'a b c', max_tokens: 4, stream: true });
    let n = 0;
    for await (const c of stream) if (c.choices[0]?.text) n++;
    assert.equal(n, 4);
  });

  test('models list', async () => {
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => m.id), ['sim/test-model']);
  });

  test('vLLM errors reach the SDK as the right error class, bodies unchanged', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.match(e.message, /The model `no-such-model` does not exist\./);
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: 'sim/test-model', messages: [] }), OpenAI.BadRequestError);
    const r = await postJson(`${gw.url}/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual(JSON.parse(r.body), { error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', param: null, code: 404 } });
  });

  test('non-OpenAI-shaped vLLM errors are wrapped in the envelope with the same status', async () => {
    const r = await raw(`${gw.url}/v1/unknown-thing`);
    assert.equal(r.status, 404);
    const body = JSON.parse(r.body);
    assert.equal(body.error.message, 'Not Found');
    assert.equal(typeof body.error.type, 'string');
  });

  test('x-request-id: taken from the client, passed to vLLM, returned; generated when absent', async () => {
    const res = await client.chat.completions
      .create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }, { headers: { 'x-request-id': 'my-trace-42' } })
      .withResponse();
    assert.equal(res.response.headers.get('x-request-id'), 'my-trace-42');
    assert.equal(res.data.id, 'chatcmpl-my-trace-42'); // vLLM used the same id
    const gen = await client.chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }).withResponse();
    const generated = gen.response.headers.get('x-request-id');
    assert.match(String(generated), /^[0-9a-f]{32}$/);
    assert.equal(gen.data.id, `chatcmpl-${generated}`, 'the generated id is the one vLLM got');
    const r = await raw(`${gw.url}/health`);
    assert.match(String(r.headers['x-request-id']), /^[0-9a-f]{32}$/);
    const odd = await raw(`${gw.url}/v1/models`, { headers: { 'x-request-id': 'req#1:{a}' } });
    assert.equal(odd.headers['x-request-id'], 'req#1:{a}', 'any visible ASCII id the client chose is kept');
    const bad = await raw(`${gw.url}/v1/models`, { headers: { 'x-request-id': 'x'.repeat(500) } });
    assert.notEqual(bad.headers['x-request-id'], 'x'.repeat(500));
  });

  test('a client that goes away aborts the generation in vLLM', async () => {
    const before = (await gw.simStats()).aborted_by_disconnect;
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 1000, ignore_eos: true, stream: true } as any,
      { signal: ac.signal },
    );
    assert.equal(await abortAfterChunks(stream as any, ac, 3), 3);
    await waitFor('abort reached vLLM', async () => (await gw.simStats()).aborted_by_disconnect === before + 1, 5000);
    await waitFor('nothing left in flight', async () => (await gw.health()).body.in_flight === 0, 5000);
  });

  test('POST /inference: the legacy API over the served model; bad bodies are 400 OpenAI-shaped', async () => {
    const r = await postJson(`${gw.url}/inference`, { prompt: 'hello there', max_new_tokens: 3 });
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(body.backend, 'vllm');
    assert.equal(body.model, 'sim/test-model');
    assert.equal(body.usage.completion_tokens, 3);
    assert.ok(body.response.length > 0);
    for (const bad of ['{not json', JSON.stringify({ prompt: 5 }), JSON.stringify({ prompt: 'x', max_new_tokens: -1 }), JSON.stringify({})]) {
      const e = await raw(`${gw.url}/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bad });
      assert.equal(e.status, 400, bad);
      assert.equal(JSON.parse(e.body).error.type, 'invalid_request_error');
    }
  });

  test('routes: unknown 404 and wrong method 405, OpenAI-shaped; GET and HEAD / are 200', async () => {
    const nf = await raw(`${gw.url}/nope`);
    assert.equal(nf.status, 404);
    assert.equal(JSON.parse(nf.body).error.code, 'route_not_found');
    const wm = await raw(`${gw.url}/sleep`);
    assert.equal(wm.status, 405);
    assert.equal(wm.headers.allow, 'POST');
    assert.equal((await raw(`${gw.url}/`, { method: 'HEAD' })).status, 200);
  });

  test('/backend reports the engine', async () => {
    const b = await gw.backend();
    assert.equal(b.backend, 'vllm');
    assert.equal(b.mode, 'launch');
    assert.equal(b.model, 'sim/test-model');
    assert.equal(b.state, 'ready');
    assert.equal(typeof b.child_pid, 'number');
    assert.equal(b.vllm_version, '0.31.0');
  });
});

describe('gateway: engine start', () => {
  test('GET / is 200 and /health 503 before vLLM is ready; a request sent then waits and is served', async () => {
    const gw = await gateway({ env: { VLLM_SIM_LOAD_SECONDS: '3' }, waitReady: false });
    assert.equal((await raw(`${gw.url}/`)).status, 200);
    const h = await gw.health();
    assert.equal(h.status, 503);
    assert.equal(h.body.status, 'starting');
    const res = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(res.usage!.completion_tokens, 2);
    assert.equal((await gw.health()).status, 200);
    await gw.proc.waitOutput(/still waiting for vLLM|starting → ready/);
  });

  test('a request waiting for a start longer than QUEUE_TIMEOUT_SECONDS gets 503 with Retry-After', async () => {
    const gw = await gateway({ env: { VLLM_SIM_LOAD_SECONDS: '30', QUEUE_TIMEOUT_SECONDS: '1' }, waitReady: false });
    const t0 = Date.now();
    const r = await postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] });
    assert.equal(r.status, 503);
    assert.ok(Date.now() - t0 < 5000);
    const retry = Number(r.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60);
    assert.ok(Number(r.headers['retry-after-ms']) <= 60_000);
    assert.equal(JSON.parse(r.body).error.code, 'queue_timeout');
  });

  test('a failed load: state failed, /health 503, the root cause in the gateway log', async () => {
    const cause = 'ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.';
    const gw = await gateway({ env: { VLLM_SIM_FAIL_LOAD: cause }, waitReady: false });
    await gw.waitState('failed');
    assert.equal((await gw.health()).status, 503);
    const out = await gw.proc.waitOutput(/"msg":"vLLM exited before it was ready"/);
    assert.ok(out);
    const line = gw.proc.output().split('\n').find((l) => l.includes('"msg":"vLLM exited before it was ready"'))!;
    assert.ok(JSON.parse(line).output_tail.includes(cause), 'the failure report carries the root cause');
    assert.match(line, /Engine core initialization failed/);
  });

  test('STARTUP_TIMEOUT_SECONDS: a vLLM that never gets ready is killed (whole group) and counts as a failure', async () => {
    const gw = await gateway({ env: { VLLM_SIM_LOAD_SECONDS: '60', STARTUP_TIMEOUT_SECONDS: '2' }, waitReady: false });
    await gw.proc.waitOutput(/vLLM started; waiting/);
    const first = (await gw.backend()).child_pid as number;
    await gw.waitState('failed', 15_000);
    await gw.proc.waitOutput(/not ready after \d+ s \(STARTUP_TIMEOUT_SECONDS\)/);
    const { groupMembers } = await import('../helpers/procs.ts');
    await waitFor('old group gone', () => groupMembers(first).length === 0, 5000);
  });

  test('5 failures within 10 minutes: the gateway gives up and exits non-zero, leaving nothing behind', async () => {
    const gw = await gateway({ env: { VLLM_SIM_FAIL_LOAD: 'RuntimeError: simulated load failure' }, waitReady: false });
    const { code } = await gw.proc.exited; // back-offs 1 + 2 + 4 + 8 s between the five attempts
    assert.notEqual(code, 0);
    const out = gw.proc.output();
    assert.equal(out.match(/"msg":"vLLM exited before it was ready"/g)?.length, 5);
    assert.match(out, /giving up/);
    const { groupMembers } = await import('../helpers/procs.ts');
    const children = [...out.matchAll(/"child_pid":(\d+)/g)].map((m) => Number(m[1]));
    assert.equal(new Set(children).size, 5, 'five separate starts');
    for (const pid of children) assert.deepEqual(groupMembers(pid), [], `nothing left of vLLM group ${pid}`);
  });

  test('a bad configuration value stops the gateway with one line naming it, exit code 2', async () => {
    for (const [k, v] of [
      ['SLEEP_LEVEL', '3'],
      ['PORT', 'abc'],
      ['VLLM_URL', 'not a url'],
      ['AUTO_WAKE', 'maybe'],
    ] as const) {
      const p = startProcess(process.execPath, ['--import', 'tsx', GATEWAY_MAIN], { VLLM_MODEL: 'm', [k]: v });
      const { code } = await p.exited;
      assert.equal(code, 2, k);
      const lines = p.output().trim().split('\n');
      assert.equal(lines.length, 1, p.output());
      assert.match(lines[0]!, new RegExp(k));
      p.kill();
    }
    const p = startProcess(process.execPath, ['--import', 'tsx', GATEWAY_MAIN], { VLLM_MODEL: '', VLLM_URL: '' });
    assert.equal((await p.exited).code, 2);
    assert.match(p.output(), /VLLM_MODEL/);
    p.kill();
  });
});

describe('gateway: engine failure and restart', () => {
  test('vLLM crashes → failed → restarted with back-off → served again', async () => {
    const gw = await gateway();
    const first = (await gw.backend()).child_pid;
    await raw(`${gw.simUrl}/_sim/crash`, { method: 'POST' });
    await gw.waitState('failed', 15_000);
    await gw.waitState('ready', 30_000);
    const b = await gw.backend();
    assert.notEqual(b.child_pid, first);
    assert.equal(b.restarts, 1);
    const res = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(res.usage!.completion_tokens, 2);
  });

  test('a stream broken by an engine crash ends with an error the SDK raises, not a silent truncation', async () => {
    // The first request is the wake check's reference question: the second, the client's, dies.
    const gw = await gateway({ env: { VLLM_SIM_CRASH_AFTER_REQUESTS: '2', VLLM_SIM_TOKEN_MS: '10' } });
    const stream = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 40, ignore_eos: true, stream: true } as any);
    let got = 0;
    await assert.rejects(async () => {
      for await (const _ of stream as any) got++;
    }, OpenAI.APIError);
    assert.ok(got > 0);
  });

  test('SIGKILL of vLLM\'s API server mid-stream: SSE error event + [DONE]; the orphaned EngineCore is killed before the restart', async () => {
    const lock = (await import('../helpers/gateway.ts')).tempFile('gpu.lock');
    const gw = await gateway({ env: { VLLM_SIM_TOKEN_MS: '20', VLLM_SIM_GPU_LOCK_FILE: lock } });
    const apiPid = (await gw.backend()).child_pid as number;
    const enginePid = (await gw.simStats()).engine_pid as number;
    let firstChunk!: () => void;
    const streaming = new Promise<void>((resolve) => (firstChunk = resolve));
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 500, ignore_eos: true, stream: true });
    const pending = raw(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, onFirstChunk: firstChunk });
    await streaming; // the 200 is out: what follows is a stream breaking mid-way
    process.kill(apiPid, 'SIGKILL');
    const r = await pending;
    assert.equal(r.status, 200);
    const err = lastEventBeforeDone(r.body);
    assert.equal(typeof err.error.message, 'string');
    // The broken stream can arrive before the gateway sees the exit: wait for the restart itself.
    await waitFor('restarted and ready', async () => {
      const b = await gw.backend();
      return b.restarts === 1 && b.state === 'ready';
    }, 30_000);
    const { isAlive } = await import('../helpers/procs.ts');
    assert.equal(isAlive(enginePid), false, 'the orphaned EngineCore was killed');
    const out = gw.proc.output();
    assert.match(out, /killed leftover vLLM processes/);
    // Had the orphan lived, the new engine would have failed with CUDA OOM on the lock.
    const res = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(res.usage!.completion_tokens, 2);
  });
});

describe('gateway: attach mode', () => {
  test('VLLM_URL: serves through an existing vLLM, and leaves it running on SIGTERM', async () => {
    const sim = await startSim();
    const gw = await gateway({ attachTo: sim.url });
    const b = await gw.backend();
    assert.equal(b.mode, 'attach');
    assert.equal(b.child_pid, null);
    const res = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
    assert.equal(res.usage!.completion_tokens, 3);
    process.kill(gw.proc.pid, 'SIGTERM');
    assert.equal((await gw.proc.exited).code, 0);
    assert.equal((await raw(`${sim.url}/health`)).status, 200, 'the attached vLLM still runs');
    assert.match(gw.proc.output(), /external vLLM is left running/);
    sim.proc.kill();
  });

  test('a 503 from vLLM itself reaches the client with both retry hints', async () => {
    const sim = await startSim({ env: { VLLM_SIM_REJECT_WHILE_ASLEEP: '1' } });
    const gw = await gateway({ attachTo: sim.url });
    await raw(`${sim.url}/sleep?level=1`, { method: 'POST' }); // behind the gateway's back
    const r = await postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).error.code, 503, "vLLM's OpenAI-shaped body passes unchanged");
    assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60);
    assert.ok(Number(r.headers['retry-after-ms']) >= 1000 && Number(r.headers['retry-after-ms']) <= 60_000);
    sim.proc.kill();
  });

  test('VLLM_URL unreachable: state starting, requests get 503 with Retry-After after the queue timeout', async () => {
    const { freePort } = await import('../helpers/net.ts');
    const gw = await gateway({ attachTo: `http://127.0.0.1:${await freePort()}`, env: { QUEUE_TIMEOUT_SECONDS: '0.5' }, waitReady: false });
    const r = await postJson(`${gw.url}/v1/completions`, { prompt: 'x' });
    assert.equal(r.status, 503);
    assert.ok(r.headers['retry-after']);
    assert.ok(r.headers['retry-after-ms']);
    assert.equal((await gw.health()).body.status, 'starting');
  });
});
