// The simulator as a process tree: EngineCore child, signals, engine death, orphans (vllm-contract §1.3–1.6).
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import OpenAI from 'openai';
import { lastEventBeforeDone, postJson, raw } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { cmdline, groupMembers, isAlive, killAllStarted, killQuietly } from '../helpers/procs.ts';
import { startSim } from '../helpers/sim.ts';

after(killAllStarted);

const chat = (max: number, stream: boolean) => ({ messages: [{ role: 'user', content: 'x' }], max_tokens: max, ignore_eos: true, stream });

describe('simulator: process tree', () => {
  test('EngineCore is a child in the API server\'s process group, titled VLLM::EngineCore', async () => {
    const sim = await startSim();
    const enginePid = (await sim.stats()).engine_pid as number;
    const members = groupMembers(sim.proc.pid);
    assert.ok(members.includes(sim.proc.pid) && members.includes(enginePid), `group ${members}`);
    assert.match(cmdline(enginePid), /VLLM::EngineCore/);
    sim.proc.kill();
  });

  test('SIGKILL of the API server leaves EngineCore alive (orphan); a new engine then fails with CUDA OOM', async () => {
    const lock = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vllm-sim-')), 'gpu.lock');
    const sim = await startSim({ env: { VLLM_SIM_GPU_LOCK_FILE: lock } });
    const enginePid = (await sim.stats()).engine_pid as number;
    process.kill(sim.proc.pid, 'SIGKILL');
    await sim.proc.exited;
    await new Promise((r) => setTimeout(r, 300)); // give a (wrong) orphan time to die; it must not
    assert.ok(isAlive(enginePid), 'EngineCore survives its parent, like vLLM\'s (#55510)');
    assert.deepEqual(groupMembers(sim.proc.pid), [enginePid]);
    const next = await startSim({ env: { VLLM_SIM_GPU_LOCK_FILE: lock }, waitReady: false });
    const { code } = await next.proc.exited;
    assert.equal(code, 1);
    assert.match(next.proc.output(), new RegExp(`CUDA out of memory.*Process ${enginePid} has`));
    assert.match(next.proc.output(), /Engine core initialization failed/);
    killQuietly(enginePid, 'SIGKILL');
    sim.proc.kill();
    next.proc.kill();
  });

  test('SIGTERM (shutdown-timeout 0): in-flight requests end with abort, every process exits, a second signal is ignored', async () => {
    const sim = await startSim({ env: { VLLM_SIM_TOKEN_MS: '50' } });
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const pending = client.chat.completions.create(chat(200, false) as any);
    await waitFor('in flight', async () => (await sim.stats()).inflight === 1);
    process.kill(sim.proc.pid, 'SIGTERM');
    process.kill(sim.proc.pid, 'SIGTERM');
    const res = await pending;
    assert.equal(res.choices[0]!.finish_reason, 'abort');
    const { code } = await sim.proc.exited;
    assert.equal(code, 0);
    await waitFor('group gone', () => groupMembers(sim.proc.pid).length === 0, 5000);
    const out = sim.proc.output();
    assert.match(out, /\[shutdown\] API server: stopping engine client mode=abort timeout=0s/);
    assert.equal(out.match(/shutdown triggered/g)?.length, 1);
  });

  test('--shutdown-timeout N drains in-flight requests to completion; new ones are rejected (abort), or 503 by switch', async () => {
    const sim = await startSim({ args: ['--shutdown-timeout', '10'], env: { VLLM_SIM_TOKEN_MS: '20' } });
    const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const pending = client.chat.completions.create(chat(30, false) as any);
    await waitFor('in flight', async () => (await sim.stats()).inflight === 1);
    process.kill(-sim.proc.pid, 'SIGTERM'); // the whole group, as systemd or a container runtime does
    await sim.proc.waitOutput(/mode=drain timeout=10s/);
    // Uvicorn still accepts during the drain; the engine rejects new requests with an abort output (#34730).
    const late = await client.chat.completions.create(chat(5, false) as any);
    assert.equal(late.choices[0]!.finish_reason, 'abort');
    const res = await pending;
    assert.equal(res.choices[0]!.finish_reason, 'length');
    assert.equal(res.usage!.completion_tokens, 30);
    assert.equal((await sim.proc.exited).code, 0);
    assert.match(sim.proc.output(), /mode=drain timeout=10s/);
    await waitFor('group gone', () => groupMembers(sim.proc.pid).length === 0, 5000);
  });

  test('VLLM_SIM_SHUTDOWN_REJECT=503: a request during the drain gets 503', async () => {
    const sim = await startSim({ args: ['--shutdown-timeout', '10'], env: { VLLM_SIM_TOKEN_MS: '20', VLLM_SIM_SHUTDOWN_REJECT: '503' } });
    const pending = postJson(`${sim.url}/v1/chat/completions`, chat(30, false));
    await waitFor('in flight', async () => (await sim.stats()).inflight === 1);
    process.kill(sim.proc.pid, 'SIGTERM');
    await sim.proc.waitOutput(/mode=drain/);
    const late = await postJson(`${sim.url}/v1/chat/completions`, chat(5, false));
    assert.equal(late.status, 503);
    assert.equal((await pending).status, 200);
    await sim.proc.exited;
  });

  test('SIGTERM during load: KeyboardInterrupt: terminated, nothing left behind', async () => {
    const sim = await startSim({ env: { VLLM_SIM_LOAD_SECONDS: '30' }, waitReady: false });
    await sim.proc.waitOutput(/Initializing a V1 LLM engine/);
    process.kill(sim.proc.pid, 'SIGTERM');
    await sim.proc.exited;
    assert.match(sim.proc.output(), /KeyboardInterrupt: terminated/);
    await waitFor('group gone', () => groupMembers(sim.proc.pid).length === 0, 5000);
  });
});

describe('simulator: engine death', () => {
  test('EngineCore killed: streams get an error chunk then [DONE], /health 503, new requests 500, the server exits by itself', async () => {
    const sim = await startSim({ env: { VLLM_SIM_TOKEN_MS: '30' } });
    const streamP = postJson(`${sim.url}/v1/chat/completions`, chat(500, true));
    await waitFor('streaming', async () => (await sim.stats()).inflight === 1);
    const enginePid = (await sim.stats()).engine_pid as number;
    process.kill(enginePid, 'SIGKILL');
    const r = await streamP;
    assert.equal(r.status, 200);
    assert.equal(lastEventBeforeDone(r.body).error.code, 500);
    assert.equal((await raw(`${sim.url}/health`)).status, 503);
    const after = await postJson(`${sim.url}/v1/chat/completions`, chat(2, false));
    assert.equal(after.status, 500);
    assert.equal(after.body, '');
    const t0 = Date.now();
    await sim.proc.exited;
    assert.ok(Date.now() - t0 < 8000);
    assert.match(sim.proc.output(), /Engine core proc EngineCore_DP0 died unexpectedly, shutting down client\./);
  });

  test('VLLM_SIM_CRASH_AFTER_REQUESTS=2: the second request dies mid-stream', async () => {
    const sim = await startSim({ env: { VLLM_SIM_CRASH_AFTER_REQUESTS: '2' } });
    const first = await postJson(`${sim.url}/v1/chat/completions`, chat(10, true));
    assert.doesNotMatch(first.body, /"error"/);
    const second = await postJson(`${sim.url}/v1/chat/completions`, chat(10, true));
    assert.match(second.body, /"content":/);
    assert.match(second.body, /data: \{"error"/);
    await sim.proc.exited;
  });

  test('/_sim/crash kills the engine on demand', async () => {
    const sim = await startSim({ env: { VLLM_KEEP_ALIVE_ON_ENGINE_DEATH: '1' } });
    const enginePid = (await sim.stats()).engine_pid as number;
    assert.deepEqual(JSON.parse((await raw(`${sim.url}/_sim/crash`, { method: 'POST' })).body), { killed: enginePid });
    await waitFor('dead', async () => (await raw(`${sim.url}/health`)).status === 503);
    assert.equal((await sim.stats()).dead, true);
    sim.proc.kill();
  });
});
