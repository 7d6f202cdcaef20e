// Graceful shutdown with real signals: drain, cut-off at the deadline, no process of the vLLM tree left.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { lastEventBeforeDone, postJson, raw, sseData } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { groupMembers } from '../helpers/procs.ts';
import { ROOT, startSim } from '../helpers/sim.ts';

const gateway = gatewayFactory();

function stream(gw: Gateway, max: number): Promise<{ status: number; body: string }> {
  return postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: max, ignore_eos: true, stream: true });
}

/** The gateway's exit, or 'still running' after `ms`. */
function exitWithin(gw: Gateway, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'still running'> {
  return Promise.race([gw.proc.exited, new Promise<'still running'>((resolve) => setTimeout(resolve, ms, 'still running').unref())]);
}

async function noVllmLeft(childPgid: number): Promise<void> {
  await waitFor('no vLLM process left', () => groupMembers(childPgid).length === 0, 3000);
}

describe('gateway: graceful shutdown', () => {
  test('SIGTERM with 50 streams in flight: all complete, new requests get 503 at once, exit 0, no vLLM process left', async () => {
    const gw = await gateway({ env: { VLLM_SIM_TOKEN_MS: '40' } });
    const childPgid = (await gw.backend()).child_pid as number;
    const streams = Array.from({ length: 50 }, () => stream(gw, 40));
    await waitFor('50 streams in flight', async () => (await gw.simStats()).inflight === 50, 10_000);
    const t0 = Date.now();
    process.kill(gw.proc.pid, 'SIGTERM');
    await waitFor('draining', async () => (await gw.health()).body.status === 'draining', 2000);
    assert.equal((await gw.health()).status, 503);

    const tLate = Date.now();
    const late = await postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] });
    assert.ok(Date.now() - tLate < 1000, 'a request during drain is answered within a second');
    assert.equal(late.status, 503);
    assert.equal(JSON.parse(late.body).error.code, 'shutting_down');
    assert.ok(late.headers['retry-after'] && late.headers['retry-after-ms']);
    assert.equal(late.headers.connection, 'close');

    for (const r of await Promise.all(streams)) {
      assert.equal(r.status, 200);
      assert.doesNotMatch(r.body, /"error"/);
      assert.equal(lastEventBeforeDone(r.body).choices[0].finish_reason, 'length');
    }
    const { code } = await gw.proc.exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 15_000);
    await noVllmLeft(childPgid);
    const out = gw.proc.output();
    assert.match(out, /"msg":"drain complete"/);
    assert.match(out, /"msg":"vLLM stopped"/);
    assert.match(out, /"msg":"shutdown complete"/);
  });

  test('DRAIN_TIMEOUT_SECONDS=1 with 10 s streams: they end with an SSE error event, non-streaming ones with a 503; exit within drain + stop + 2 s', async () => {
    const gw = await gateway({ env: { DRAIN_TIMEOUT_SECONDS: '1', ENGINE_STOP_TIMEOUT_SECONDS: '3', VLLM_SIM_TOKEN_MS: '100' } });
    const childPgid = (await gw.backend()).child_pid as number;
    const streams = Array.from({ length: 5 }, () => stream(gw, 100));
    const plain = postJson(`${gw.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }], max_tokens: 100, ignore_eos: true });
    const legacy = postJson(`${gw.url}/inference`, { prompt: 'long answer please', max_new_tokens: 100 });
    await waitFor('7 in flight', async () => (await gw.simStats()).inflight === 7, 10_000);
    const t0 = Date.now();
    process.kill(gw.proc.pid, 'SIGTERM');
    for (const r of await Promise.all(streams)) {
      assert.equal(lastEventBeforeDone(r.body).error.code, 'shutting_down');
    }
    for (const p of [await plain, await legacy]) {
      assert.equal(p.status, 503);
      assert.equal(JSON.parse(p.body).error.code, 'shutting_down');
      assert.ok(p.headers['retry-after'] && p.headers['retry-after-ms']);
    }
    assert.equal((await gw.proc.exited).code, 0);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 1000 + 3000 + 2000, `exited after ${elapsed} ms`);
    await noVllmLeft(childPgid);
    assert.match(gw.proc.output(), /drain deadline reached/);
  });

  test('a request whose body completes after the drain deadline is answered 503 with Retry-After, not relayed', async () => {
    const gw = await gateway({ env: { DRAIN_TIMEOUT_SECONDS: '1', ENGINE_STOP_TIMEOUT_SECONDS: '3' } });
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 5 });
    const sock = net.connect(gw.port, '127.0.0.1');
    let text = '';
    sock.setEncoding('utf8').on('data', (d: string) => (text += d));
    sock.on('error', () => {});
    try {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
      await waitFor('the upload counted in flight', async () => (await gw.backend()).in_flight === 1, 5000);
      process.kill(gw.proc.pid, 'SIGTERM');
      // Logged as the gateway cuts what is still running; the upload's request is still in flight then.
      await gw.proc.waitOutput(/drain deadline reached/, 5000);
      sock.write(body.slice(10));
      await waitFor('an answer', () => /\r\n\r\n\{.*\}\}$/s.test(text), 5000);
      assert.match(text, /^HTTP\/1\.1 503 /);
      assert.match(text, /"code":"shutting_down"/);
      assert.match(text, /\r\nretry-after: \d+\r\n/i);
    } finally {
      sock.destroy();
    }
    assert.equal((await gw.proc.exited).code, 0);
  });

  test('SIGTERM while sleeping: vLLM is stopped without waking it', async () => {
    const gw = await gateway();
    const childPgid = (await gw.backend()).child_pid as number;
    assert.equal((await raw(`${gw.url}/sleep`, { method: 'POST' })).status, 200);
    process.kill(gw.proc.pid, 'SIGTERM');
    assert.equal((await gw.proc.exited).code, 0);
    await noVllmLeft(childPgid);
    assert.doesNotMatch(gw.proc.output(), /wake up the engine/);
    assert.doesNotMatch(gw.proc.output(), /sleeping → waking/);
  });

  test('SIGTERM while vLLM is still loading: it is stopped at once, nothing left', async () => {
    const gw = await gateway({ env: { VLLM_SIM_LOAD_SECONDS: '60' }, waitReady: false });
    await gw.proc.waitOutput(/vLLM started; waiting/);
    const childPgid = (await gw.backend()).child_pid as number;
    const t0 = Date.now();
    process.kill(gw.proc.pid, 'SIGTERM');
    assert.equal((await gw.proc.exited).code, 0);
    assert.ok(Date.now() - t0 < 5000);
    await noVllmLeft(childPgid);
  });

  test('SIGTERM with nobody reading stdout any more: the gateway still exits 0, vLLM stopped (launch) or left running (attach)', async () => {
    // The log reader goes away (a log collector that died, `| head`): every later write to stdout is EPIPE.
    // The exit-time log flush used to retry that forever (sonic-boom 4), so the gateway never exited: in
    // attach mode, where the last lines and the exit come in one turn, every time.

    const launched = await gateway({ env: { DRAIN_TIMEOUT_SECONDS: '1', ENGINE_STOP_TIMEOUT_SECONDS: '3', VLLM_SIM_TOKEN_MS: '100' } });
    const childPgid = (await launched.backend()).child_pid as number;
    launched.proc.child.stdout!.destroy();
    const inflight = stream(launched, 100);
    await waitFor('a stream in flight', async () => (await launched.simStats()).inflight === 1, 10_000);
    process.kill(launched.proc.pid, 'SIGTERM');
    assert.deepEqual(await exitWithin(launched, 1000 + 3000 + 5000), { code: 0, signal: null });
    await noVllmLeft(childPgid);
    assert.equal(lastEventBeforeDone((await inflight).body).error.code, 'shutting_down');
    assert.match(launched.proc.output(), /writing the log to stdout failed \(EPIPE\)/, 'said once, on stderr');

    const sim = await startSim();
    const attached = await gateway({ attachTo: sim.url });
    attached.proc.child.stdout!.destroy();
    process.kill(attached.proc.pid, 'SIGTERM');
    assert.deepEqual(await exitWithin(attached, 5000), { code: 0, signal: null });
    assert.equal((await raw(`${sim.url}/health`)).status, 200, 'the attached vLLM is left running');
  });

  for (const kind of ['exception', 'rejection'] as const) {
    test(`a bug nothing catches (an uncaught ${kind}): logged, vLLM stopped, exit 1 so that the platform restarts the gateway`, async () => {
      const gw = await gateway({
        env: { TEST_CRASH_KIND: kind, ENGINE_STOP_TIMEOUT_SECONDS: '3' },
        nodeArgs: ['--import', path.join(ROOT, 'tests/helpers/crash-on-sigusr2.ts')],
      });
      const childPgid = (await gw.backend()).child_pid as number;
      process.kill(gw.proc.pid, 'SIGUSR2');
      assert.deepEqual(await exitWithin(gw, 3000 + 5000), { code: 1, signal: null });
      await noVllmLeft(childPgid);
      assert.match(gw.proc.output(), new RegExp(`"kind":"${kind === 'exception' ? 'uncaughtException' : 'unhandledRejection'}".*"msg":"unexpected error: stopping vLLM and exiting"`));
      assert.match(gw.proc.output(), /test: an (uncaught exception|unhandled rejection)/);
      // vLLM's exit on the way out is expected: it is not a failure, and nothing restarts it.
      assert.doesNotMatch(gw.proc.output(), /"to":"failed"|restarting vLLM/);
      assert.equal(gw.proc.output().match(/"msg":"vLLM started; waiting/g)?.length, 1);
    });
  }

  test('process.exit from anywhere, skipping the shutdown: the exit hook SIGKILLs the vLLM group, nothing is left', async () => {
    const gw = await gateway({ env: { TEST_CRASH_KIND: 'exit' }, nodeArgs: ['--import', path.join(ROOT, 'tests/helpers/crash-on-sigusr2.ts')] });
    const childPgid = (await gw.backend()).child_pid as number;
    process.kill(gw.proc.pid, 'SIGUSR2');
    assert.deepEqual(await gw.proc.exited, { code: 3, signal: null });
    await noVllmLeft(childPgid);
    assert.match(gw.proc.output(), /vLLM was still running at exit: its process group was killed/);
  });

  test('a second signal skips the remaining waits', async () => {
    const gw = await gateway({ env: { DRAIN_TIMEOUT_SECONDS: '30', VLLM_SIM_TOKEN_MS: '100' } });
    const childPgid = (await gw.backend()).child_pid as number;
    const s = stream(gw, 300);
    await waitFor('in flight', async () => (await gw.simStats()).inflight === 1);
    process.kill(gw.proc.pid, 'SIGTERM');
    await waitFor('draining', async () => (await gw.health()).body.status === 'draining', 2000);
    const t0 = Date.now();
    process.kill(gw.proc.pid, 'SIGINT');
    await gw.proc.exited;
    assert.ok(Date.now() - t0 < 4000, 'no 30 s wait');
    const data = sseData((await s).body);
    assert.equal(data.at(-1), '[DONE]');
    assert.match(JSON.parse(data.at(-2)!).error.message, /a second signal ended the drain/, 'the client is told what happened');
    assert.doesNotMatch(JSON.parse(data.at(-2)!).error.message, /DRAIN_TIMEOUT_SECONDS/);
    await noVllmLeft(childPgid);
    assert.match(gw.proc.output(), /second signal/);
    assert.doesNotMatch(gw.proc.output(), /did not stop in time/);
  });

  test('/events: ids count the process\'s transitions on every connection, and draining → stopped arrives before the stream ends', async () => {
    const gw = await gateway({ env: { VLLM_SIM_SLEEP_MS: '20', VLLM_SIM_WAKE_MS: '20' } });
    await raw(`${gw.url}/sleep`, { method: 'POST' });
    const late = raw(`${gw.url}/events`, { timeoutMs: 20_000 }); // opened after three transitions (1 ready, 2, 3 asleep)
    await waitFor('listening', async () => (await gw.health()).status === 200);
    await raw(`${gw.url}/wake`, { method: 'POST' });
    await waitFor('woken', async () => (await gw.health()).body.status === 'ready');
    process.kill(gw.proc.pid, 'SIGTERM');
    const { body } = await late;
    const events = body.split('\n\n').filter((e) => e.includes('data: ')).map((e) => ({ id: Number(/^id: (\d+)$/m.exec(e)![1]), ...JSON.parse(/^data: (.*)$/m.exec(e)![1]!) }));
    assert.deepEqual(events.map((e) => `${e.id} ${e.from}>${e.to}`), ['4 sleeping>waking', '5 waking>ready', '6 ready>draining', '7 draining>stopped']);
    assert.equal((await gw.proc.exited).code, 0);
  });

  test('SIGHUP (the terminal closed) shuts down like SIGTERM: the stream completes, vLLM stopped, exit 0', async () => {
    const gw = await gateway({ env: { VLLM_SIM_TOKEN_MS: '20' } });
    const childPgid = (await gw.backend()).child_pid as number;
    const s = stream(gw, 20);
    await waitFor('in flight', async () => (await gw.simStats()).inflight === 1);
    process.kill(gw.proc.pid, 'SIGHUP');
    assert.equal(lastEventBeforeDone((await s).body).choices[0].finish_reason, 'length');
    assert.deepEqual(await gw.proc.exited, { code: 0, signal: null });
    await noVllmLeft(childPgid);
    assert.match(gw.proc.output(), /"signal":"SIGHUP","msg":"shutting down"/);
  });

  test('idle keep-alive connections are closed when the drain starts', async () => {
    const gw = await gateway();
    const sock = net.connect(gw.port, '127.0.0.1');
    sock.resume();
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('response on the keep-alive socket', () => sock.bytesRead > 0, 3000);
    process.kill(gw.proc.pid, 'SIGTERM');
    await closed;
    assert.equal((await gw.proc.exited).code, 0);
  });
});
