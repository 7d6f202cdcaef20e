// Configuration as a user gives it: a .env file in the working directory, under what the environment sets.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { GATEWAY_MAIN, gatewayFactory, tempFile } from '../helpers/gateway.ts';
import { freePort, postJson } from '../helpers/net.ts';
import { killAllStarted, startProcess } from '../helpers/procs.ts';
import { FAST_SIM_ENV, ROOT, SIM_BIN } from '../helpers/sim.ts';

const gateway = gatewayFactory();
after(() => killAllStarted());

test('.env in the working directory is read; a variable the environment sets wins over it', async () => {
  const dir = path.dirname(tempFile('.env'));
  fs.writeFileSync(path.join(dir, '.env'), '# a user\'s .env\nAPI_KEYS=from-dotenv\nMAX_BODY_BYTES=1000000\n');
  const gw = await gateway({ cwd: dir, env: { MAX_BODY_BYTES: '2000' } });
  const chat = { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 };
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chat)).status, 401, 'API_KEYS came from .env');
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chat, { authorization: 'Bearer from-dotenv' })).status, 200);
  const big = { messages: [{ role: 'user', content: 'y'.repeat(3000) }] };
  assert.equal((await postJson(`${gw.url}/v1/chat/completions`, big, { authorization: 'Bearer from-dotenv' })).status, 413, 'MAX_BODY_BYTES from the environment won');
});

describe('gateway: a vLLM that cannot start as configured stops the gateway at once (exit 2)', () => {
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function exitOf(env: Record<string, string>, cwd = ROOT): Promise<{ code: number | null; out: string; ms: number }> {
    const port = await freePort();
    const t0 = Date.now();
    const p = startProcess(process.execPath, ['--import', import.meta.resolve('tsx'), GATEWAY_MAIN], { PORT: String(port), HOST: '127.0.0.1', VLLM_MODEL: 'sim/test-model', LOG_LEVEL: 'info', ...env }, cwd);
    const exited = await Promise.race([p.exited, pause(20_000).then(() => null)]);
    p.kill();
    return { code: exited?.code ?? null, out: p.output(), ms: Date.now() - t0 };
  }

  test('no vLLM executable: one line saying to install vLLM, set VLLM_BIN or run the demo; no restarts', async () => {
    const r = await exitOf({ VLLM_BIN: '/nonexistent/bin/vllm' });
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /vllm-gateway: vLLM could not be started: no executable "\/nonexistent\/bin\/vllm" \(install vLLM, set VLLM_BIN .*npm run demo/);
    assert.doesNotMatch(r.out, /restarting vLLM|vLLM started/);
  });

  test('a .env that cannot be read (here a directory) is one line and exit 2', async () => {
    const dir = path.dirname(tempFile('x'));
    fs.mkdirSync(path.join(dir, '.env'));
    const r = await exitOf({ VLLM_BIN: SIM_BIN }, dir);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /vllm-gateway: cannot read \.env: it is not a file/);
  });

  test('vLLM\'s port taken: one line naming VLLM_PORT; no restarts', async () => {
    const holder = net.createServer().listen(0, '127.0.0.1');
    await once(holder, 'listening');
    try {
      const r = await exitOf({ VLLM_BIN: SIM_BIN, VLLM_PORT: String((holder.address() as net.AddressInfo).port), ...FAST_SIM_ENV });
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /vllm-gateway: vLLM's port is taken .*choose another VLLM_PORT/);
      assert.doesNotMatch(r.out, /restarting vLLM/);
    } finally {
      holder.close();
    }
  });
});
