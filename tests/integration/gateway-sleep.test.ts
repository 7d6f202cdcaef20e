// Sleep and wake through the gateway, with the simulator as the real child (issue: sleep and wake).
import assert from 'node:assert/strict';
import http from 'node:http';
import OpenAI from 'openai';
import { before, describe, test } from 'node:test';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { postJson, raw } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { startSim } from '../helpers/sim.ts';

const gateway = gatewayFactory();
const post = (gw: Gateway, path: string) => raw(`${gw.url}${path}`, { method: 'POST' });
const json = (r: { body: string }) => JSON.parse(r.body);
const chat = (gw: Gateway, max = 4, extra: Record<string, unknown> = {}) =>
  gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: max, ...extra } as any) as Promise<any>;

async function streamAll(gw: Gateway, max: number): Promise<{ finish: string | null; text: string }> {
  const stream: any = await gw.client().chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: max, ignore_eos: true, stream: true } as any);
  let finish: string | null = null;
  let text = '';
  for await (const c of stream) {
    finish = c.choices[0]?.finish_reason ?? finish;
    text += c.choices[0]?.delta?.content ?? '';
  }
  return { finish, text };
}

/** Collects /events as parsed transitions until `stop()`. */
function watchEvents(gw: Gateway) {
  const events: any[] = [];
  let req: http.ClientRequest;
  const ready = new Promise<void>((resolve) => {
    req = http.get(`${gw.url}/events`, (res) => {
      let buf = '';
      res.on('data', (c) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = ev.split('\n').find((l) => l.startsWith('data: '));
          if (data) events.push(JSON.parse(data.slice(6)));
        }
      });
      resolve();
    });
  });
  return { events, ready, stop: () => req.destroy() };
}

// The oldest vLLM the gateway supports (sleep with mode, requests held while asleep) and the newest.
for (const version of ['0.17.0', '0.31.0']) describe(`gateway: sleep and wake (vLLM ${version})`, () => {
  let gw: Gateway;
  before(async () => {
    gw = await gateway({ env: { VLLM_SIM_VERSION: version, VLLM_SIM_TOKEN_MS: '15', VLLM_SIM_WAKE_MS: '200', VLLM_SIM_SLEEP_MS: '100' } });
  });

  test('POST /sleep and /wake: contract bodies, /health and /backend report it, both idempotent', async () => {
    const s = await post(gw, '/sleep');
    assert.equal(s.status, 200);
    const sb = json(s);
    assert.equal(sb.status, 'sleeping');
    assert.equal(sb.level, 1);
    assert.equal(sb.backend, 'vllm');
    assert.equal(typeof sb.message, 'string');
    assert.equal(typeof sb.duration_ms, 'number');
    assert.equal(json(await raw(`${gw.simUrl}/is_sleeping`)).is_sleeping, true);
    const h = await gw.health();
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'sleeping');
    assert.equal(h.body.sleep.level, 1);
    assert.ok(h.body.sleep.since);
    const again = json(await post(gw, '/sleep'));
    assert.equal(again.status, 'sleeping');
    assert.match(again.message, /already/);

    const w = await post(gw, '/wake');
    assert.equal(w.status, 200);
    const wb = json(w);
    assert.equal(wb.status, 'awake');
    assert.equal(wb.backend, 'vllm');
    assert.ok(wb.duration_ms >= 200);
    assert.match(json(await post(gw, '/wake')).message, /already awake/);
    const b = await gw.backend();
    assert.ok(b.sleep.sleeps >= 1 && b.sleep.wakes >= 1);
    assert.ok(b.sleep.last_wake_ms >= 200);
    assert.equal(json(await raw(`${gw.simUrl}/is_sleeping`)).is_sleeping, false);
  });

  test('bad level → 400; sleep uses ?level=2 from the query string', async () => {
    const r = await post(gw, '/sleep?level=3');
    assert.equal(r.status, 400);
    assert.equal(json(r).error.param, 'level');
    const s = await post(gw, '/sleep?level=2');
    assert.equal(json(s).level, 2);
    const calls = (await gw.simStats()).sleep_calls;
    assert.equal(calls.at(-1).level, 2);
    await post(gw, '/wake');
  });

  test('sleep with 20 streams in flight: all finish normally, vLLM saw 0 in flight at its sleep call', async () => {
    const streams = Array.from({ length: 20 }, () => streamAll(gw, 20));
    await waitFor('20 streams in flight', async () => (await gw.simStats()).inflight === 20);
    const s = await post(gw, '/sleep');
    assert.equal(s.status, 200);
    const results = await Promise.all(streams);
    for (const r of results) assert.equal(r.finish, 'length');
    const call = (await gw.simStats()).sleep_calls.at(-1);
    assert.equal(call.inflight, 0);
    assert.equal(call.mode, 'wait');
    await post(gw, '/wake');
  });

  test('a request while asleep wakes the engine and is served; vLLM never sees a request while asleep', async () => {
    await post(gw, '/sleep');
    const before = (await gw.simStats()).requests_while_asleep;
    const res = await chat(gw, 3);
    assert.equal(res.usage.completion_tokens, 3);
    assert.equal((await gw.health()).body.status, 'ready');
    assert.equal((await gw.simStats()).requests_while_asleep, before);
  });

  test('many requests while asleep share one wake', async () => {
    await post(gw, '/sleep');
    const wakesBefore = (await gw.simStats()).wake_calls.length;
    const results = await Promise.all(Array.from({ length: 10 }, () => chat(gw, 2)));
    assert.equal(results.length, 10);
    assert.equal((await gw.simStats()).wake_calls.length, wakesBefore + 1);
  });

  test('level 2: wake reloads the weights (no garbage); warm-up before the gate opens', async () => {
    await post(gw, '/sleep?level=2');
    const st0 = await gw.simStats();
    const w = await post(gw, '/wake');
    assert.equal(w.status, 200);
    const st = await gw.simStats();
    assert.equal(st.reload_weights_calls, st0.reload_weights_calls + 1);
    assert.deepEqual(st.wake_calls.slice(-2).map((c: any) => c.tags), [['weights'], ['kv_cache']]);
    assert.equal(st.weights_valid, true);
    const res = await chat(gw, 5);
    assert.doesNotMatch(res.choices[0].message.content, /<unk>/);
    assert.equal((await gw.simStats()).garbage_answers, 0);
    assert.equal(st.requests, st0.requests + 1, 'exactly one warm-up completion');
  });

  test('GET /v1/models while asleep is answered without waking', async () => {
    await post(gw, '/sleep');
    const wakes = (await gw.simStats()).wake_calls.length;
    const list = await gw.client().models.list();
    assert.equal(list.data[0]!.id, 'sim/test-model');
    assert.equal((await gw.health()).body.status, 'sleeping');
    assert.equal((await gw.simStats()).wake_calls.length, wakes);
    await post(gw, '/wake');
  });

  test('overlapping asks are serialised: /wake during falling_asleep waits then wakes; two /sleep share one', async () => {
    const slow = streamAll(gw, 20); // makes the drain take a moment
    await waitFor('stream running', async () => (await gw.simStats()).inflight === 1);
    const s1 = post(gw, '/sleep');
    await waitFor('falling asleep', async () => (await gw.health()).body.status === 'falling_asleep');
    const s2 = post(gw, '/sleep');
    const w = post(gw, '/wake');
    const [r1, r2, rw] = await Promise.all([s1, s2, w]);
    assert.equal(r1.status, 200);
    assert.equal(r2.status, 200);
    assert.equal(rw.status, 200);
    assert.equal(json(r1).duration_ms, json(r2).duration_ms, 'the second /sleep joined the first');
    assert.equal(json(rw).status, 'awake');
    assert.equal((await gw.health()).body.status, 'ready');
    assert.equal((await slow).finish, 'length');
  });

  test('/sleep during waking waits for the wake, then sleeps', async () => {
    await post(gw, '/sleep');
    const w = post(gw, '/wake');
    await waitFor('waking', async () => (await gw.health()).body.status === 'waking');
    const s = await post(gw, '/sleep');
    assert.equal(s.status, 200);
    assert.equal(json(await w).status, 'awake');
    assert.equal(json(s).status, 'sleeping');
    assert.equal((await gw.health()).body.status, 'sleeping');
    await post(gw, '/wake');
  });

  test('/events streams the transitions in order', async () => {
    const watch = watchEvents(gw);
    await watch.ready;
    await post(gw, '/sleep');
    await post(gw, '/wake');
    await waitFor('4 events', () => watch.events.length >= 4);
    watch.stop();
    assert.deepEqual(
      watch.events.slice(0, 4).map((e) => `${e.from}>${e.to}`),
      ['ready>falling_asleep', 'falling_asleep>sleeping', 'sleeping>waking', 'waking>ready'],
    );
    for (const e of watch.events) {
      assert.ok(!Number.isNaN(Date.parse(e.at)));
      assert.equal(typeof e.reason, 'string');
    }
  });

  test('metrics: state gauge, sleep and wake counters and histograms', async () => {
    const m = (await raw(`${gw.url}/metrics`)).body;
    assert.match(m, /^gateway_engine_state\{state="ready"\} 1$/m);
    assert.match(m, /^gateway_engine_sleeps_total\{level="1",outcome="ok"\} \d+$/m);
    assert.match(m, /^gateway_engine_wakes_total\{level="2",outcome="ok"\} [1-9]\d*$/m);
    assert.match(m, /^gateway_engine_wake_duration_seconds_count\{level="1"\} \d+$/m);
    assert.match(m, /^gateway_wake_wait_seconds_count \d+$/m);
    // Node's event-loop histogram records each sample as lag + sampling interval: the usual 10 ms interval
    // keeps an idle gateway's median where Node dashboards expect it (a 100 ms interval read 0.1 s).
    const p50 = /^gateway_nodejs_eventloop_lag_p50_seconds ([\d.e+-]+)$/m.exec(m);
    assert.ok(p50, 'the event-loop lag series are exported');
    assert.ok(Number(p50[1]) < 0.05, `event-loop lag p50 ${p50[1]} s: the sampling interval shows through`);
    assert.match(m, /^vllm:engine_sleep_state\{/m, "vLLM's own series follow");
  });
});

describe('gateway: 20 sleep/wake cycles under concurrent load', () => {
  test('no request fails, none is aborted, none reaches a sleeping engine', async () => {
    const gw = await gateway({ env: { VLLM_SIM_TOKEN_MS: '5', VLLM_SIM_WAKE_MS: '60', VLLM_SIM_SLEEP_MS: '30' } });
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (!stop) {
        try {
          const r = await streamAll(gw, 6);
          if (r.finish !== 'length') failures.push(`finish ${r.finish}`);
          else ok++;
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    for (let i = 0; i < 20; i++) {
      assert.equal((await post(gw, '/sleep')).status, 200);
      assert.equal((await post(gw, '/wake')).status, 200);
    }
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, []);
    assert.ok(ok > 20, `${ok} requests served`);
    const st = await gw.simStats();
    assert.equal(st.requests_while_asleep, 0);
    assert.equal(st.aborted_by_sleep, 0);
    assert.ok(st.sleep_calls.every((c: any) => c.inflight === 0));
  });
});

describe('gateway: idle sleep', () => {
  test('fires after IDLE_SLEEP_SECONDS, never during a stream, and the next request is served', async () => {
    const gw = await gateway({ env: { IDLE_SLEEP_SECONDS: '1', VLLM_SIM_TOKEN_MS: '50' } });
    // A 2.5 s stream: the engine must stay awake while it runs.
    const long = streamAll(gw, 50);
    await waitFor('stream running', async () => (await gw.simStats()).inflight === 1);
    const watch = setInterval(async () => {
      const s = (await gw.health().catch(() => null))?.body.status;
      if (s && s !== 'ready') states.push(s);
    }, 50);
    const states: string[] = [];
    assert.equal((await long).finish, 'length');
    clearInterval(watch);
    assert.deepEqual(states, [], 'no sleep while the stream was open');
    await gw.waitState('sleeping', 5000);
    assert.match(gw.proc.output(), /engine idle: going to sleep/);
    const res = await chat(gw, 2);
    assert.equal(res.usage.completion_tokens, 2);
  });
});

describe('gateway: refusals and failures', () => {
  test('AUTO_WAKE=false: a request while asleep gets 503 at once with both retry headers; nothing wakes', async () => {
    const gw = await gateway({ env: { AUTO_WAKE: 'false' } });
    await post(gw, '/sleep');
    const t0 = Date.now();
    const r = await postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] });
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(r.status, 503);
    assert.equal(json(r).error.code, 'engine_asleep');
    const ra = Number(r.headers['retry-after']);
    const ram = Number(r.headers['retry-after-ms']);
    assert.ok(ra >= 1 && ra <= 60 && ram >= 1000 && ram <= 60_000);
    assert.equal(r.headers['x-should-retry'], 'false', 'nothing changes by itself: clients are told not to retry');
    // The openai SDK with its default retries gives up at once instead of retrying for 12 s.
    const sdk = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'none' });
    const t1 = Date.now();
    await assert.rejects(sdk.chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 503);
    assert.ok(Date.now() - t1 < 2000, `the SDK gave up after ${Date.now() - t1} ms`);
    assert.equal((await gw.health()).body.status, 'sleeping');
    assert.equal((await gw.simStats()).wake_calls.length, 0);
  });

  test('a route vLLM does not have is answered at once while asleep, without waking it (its /openapi.json)', async () => {
    const gw = await gateway({ env: { VLLM_SIM_WAKE_MS: '2000' } });
    await post(gw, '/sleep');
    const t0 = Date.now();
    const missing = await postJson(`${gw.url}/v1/no/such/route`, { x: 1 });
    assert.equal(missing.status, 404);
    assert.equal(json(missing).error.code, 'route_not_found');
    const wrong = await raw(`${gw.url}/v1/chat/completions`, { method: 'PUT', body: '{}' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.allow, 'POST');
    assert.ok(Date.now() - t0 < 1500, 'no wake was waited for');
    assert.equal((await gw.simStats()).wake_calls.length, 0);
    assert.equal((await gw.health()).body.status, 'sleeping');
    assert.equal((await postJson(`${gw.url}/v1/completions`, { prompt: 'x', max_tokens: 1 })).status, 200, 'a known route still wakes it');
  });

  test('wake check: an engine that wakes to garbage (level 2, FP8 KV cache) is restarted before the waiting request is served', async () => {
    const gw = await gateway({ env: { SLEEP_LEVEL: '2', ALLOW_FP8_KV_SLEEP_LEVEL_2: 'true', VLLM_ARGS: '--kv-cache-dtype fp8' } });
    const ask = { prompt: 'Name a colour.', max_tokens: 6, temperature: 0, seed: 1 };
    const before = json(await postJson(`${gw.url}/v1/completions`, ask)).choices[0].text;
    const pid0 = (await gw.backend()).child_pid;
    await post(gw, '/sleep');
    const after = await postJson(`${gw.url}/v1/completions`, ask); // wakes it; the check fails; restart
    assert.equal(after.status, 200);
    assert.equal(json(after).choices[0].text, before, 'the client got a right answer, from the restarted engine');
    const backend = await gw.backend();
    assert.notEqual(backend.child_pid, pid0, 'a new vLLM process');
    assert.equal(backend.restarts, 1);
    assert.deepEqual(backend.wake_check, { mode: 'restart', last: 'mismatch', failures: 1 });
    assert.equal((await gw.health()).body.wake_check.failures, 1);
    assert.match((await raw(`${gw.url}/metrics`)).body, /^gateway_wake_check_failures_total 1$/m);
    assert.match(gw.proc.output(), /wake check failed/);
  });

  test('what a sleep freed is read from vLLM\'s log: /backend, metrics, and a warning under SLEEP_MIN_FREED_SHARE', async () => {
    const gw = await gateway({ env: { VLLM_SIM_SLEEP_FREED_GIB: '1.00', VLLM_SIM_SLEEP_IN_USE_GIB: '3.00' } });
    await post(gw, '/sleep');
    await waitFor('the freed line read', async () => (await gw.backend()).sleep.freed_gib === 1);
    assert.equal((await gw.backend()).sleep.in_use_gib, 3);
    assert.match((await raw(`${gw.url}/metrics`)).body, /^gateway_engine_sleep_freed_bytes 1073741824$/m);
    await gw.proc.waitOutput(/sleep freed only 25 % of the engine's GPU memory \(SLEEP_MIN_FREED_SHARE 0.5\)/);
  });

  test('level 2 with an FP8 KV cache is refused (vLLM wakes it to garbage) unless allowed', async () => {
    const gw = await gateway({ env: { VLLM_ARGS: '--kv-cache-dtype fp8' } });
    const r = await post(gw, '/sleep?level=2');
    assert.equal(r.status, 400);
    assert.match(json(r).error.message, /FP8 KV cache.*ALLOW_FP8_KV_SLEEP_LEVEL_2/);
    assert.equal((await gw.simStats()).sleep_calls.length, 0);
    assert.equal((await post(gw, '/sleep?level=1')).status, 200, 'level 1 is fine');
  });

  test('a wake longer than QUEUE_TIMEOUT_SECONDS: the waiting request gets 503 with retry headers', async () => {
    const gw = await gateway({ env: { VLLM_SIM_WAKE_MS: '4000', QUEUE_TIMEOUT_SECONDS: '0.5' } });
    await post(gw, '/sleep');
    const r = await postJson(`${gw.url}/v1/completions`, { prompt: 'x', max_tokens: 2 });
    assert.equal(r.status, 503);
    assert.equal(json(r).error.code, 'queue_timeout');
    assert.ok(r.headers['retry-after'] && r.headers['retry-after-ms']);
    await gw.waitState('ready', 15_000);
  });

  test('a failing vLLM sleep: 502 with details, and the engine stays usable', async () => {
    const gw = await gateway({ env: { VLLM_SIM_SLEEP_FAIL_STATUS: '500' } });
    const r = await post(gw, '/sleep');
    assert.equal(r.status, 502);
    assert.match(json(r).error.message, /500/);
    assert.equal((await gw.health()).body.status, 'ready');
    const res = await chat(gw, 2);
    assert.equal(res.usage.completion_tokens, 2);
  });

  test('vLLM without sleep endpoints: 501 saying how to enable them', async () => {
    const sim = await startSim({ devMode: false });
    const gw = await gateway({ attachTo: sim.url });
    const r = await post(gw, '/sleep');
    assert.equal(r.status, 501);
    assert.match(json(r).error.message, /--enable-sleep-mode and VLLM_SERVER_DEV_MODE=1/);
    assert.equal((await gw.health()).body.status, 'ready');
  });

  test('/sleep and /wake while starting → 409', async () => {
    const gw = await gateway({ env: { VLLM_SIM_LOAD_SECONDS: '30' }, waitReady: false });
    assert.equal((await post(gw, '/sleep')).status, 409);
    assert.equal((await post(gw, '/wake')).status, 409);
  });

  test('the sleep drain is bounded: past SLEEP_DRAIN_TIMEOUT_SECONDS vLLM sleeps with mode=abort, and the answer says so', async () => {
    const gw = await gateway({ env: { SLEEP_DRAIN_TIMEOUT_SECONDS: '0.5', VLLM_SIM_TOKEN_MS: '50' } });
    const long = streamAll(gw, 200);
    await waitFor('stream running', async () => (await gw.simStats()).inflight === 1);
    const r = await post(gw, '/sleep');
    assert.equal(r.status, 200);
    assert.equal(json(r).aborted_in_flight, true);
    assert.match(json(r).message, /aborted/);
    assert.equal((await gw.simStats()).sleep_calls.at(-1).mode, 'abort');
    assert.equal((await long).finish, 'abort');
    await gw.proc.waitOutput(/sleep drain timed out/);
  });

  test('vLLM before 0.17: /sleep is sent without mode', async () => {
    const gw = await gateway({ env: { VLLM_SIM_VERSION: '0.16.0' } });
    assert.equal((await post(gw, '/sleep')).status, 200);
    await gw.proc.waitOutput(/POST \/sleep\?level=1|engine ready → falling_asleep/);
    assert.doesNotMatch(gw.proc.output(), /mode=wait/);
    const res = await chat(gw, 2); // auto-wake: never forwarded while asleep (it would crash this vLLM)
    assert.equal(res.usage.completion_tokens, 2);
  });
});

describe('gateway: attach mode and sleep', () => {
  test('attached to a sleeping vLLM: state sleeping (level from its metrics, old gauge or new); WAKE_ON_START wakes it', async () => {
    for (const version of ['0.19.1', '0.31.0']) {
      const sim = await startSim({ env: { VLLM_SIM_VERSION: version } });
      await raw(`${sim.url}/sleep?level=2`, { method: 'POST' });
      const gw = await gateway({ attachTo: sim.url, waitReady: false });
      await gw.waitState('sleeping');
      assert.equal((await gw.health()).body.sleep.level, 2, version);
      const gw2 = await gateway({ attachTo: sim.url, env: { WAKE_ON_START: 'true' }, waitReady: false });
      await gw2.waitState('ready');
      const st = JSON.parse((await raw(`${sim.url}/_sim/stats`)).body);
      assert.equal(st.reload_weights_calls, 1, `${version}: level 2 wake reloads the weights`);
      sim.proc.kill();
    }
  });
});
