// Simulators sharing one GPU (VLLM_SIM_GPU_MEMORY_FILE): a load or a wake that would take the GPU past
// 100 % fails the way vLLM's does; a sleep gives the share back but for a residue. The multi-model gateway
// is tested against this.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import { tempFile } from '../helpers/gateway.ts';
import { raw } from '../helpers/net.ts';
import { killAllStarted } from '../helpers/procs.ts';
import { startSim } from '../helpers/sim.ts';

after(() => killAllStarted());

test('a shared GPU: a second 0.6 share cannot load or wake while another is awake; sleeping frees it', async () => {
  const ledger = tempFile('gpu.json');
  const env = { VLLM_SIM_GPU_MEMORY_FILE: ledger, VLLM_SIM_SLEEP_MS: '20', VLLM_SIM_WAKE_MS: '20' };
  const args = ['--gpu-memory-utilization', '0.6'];
  const a = await startSim({ env, args });
  const b = await startSim({ env, args, waitReady: false });
  assert.equal((await b.proc.exited).code, 1, 'the second engine cannot load');
  assert.match(b.proc.output(), /CUDA out of memory\. Tried to allocate 26\.63 GiB\. .* of which 17\.76 GiB is free/);

  assert.equal((await raw(`${a.url}/sleep?level=1`, { method: 'POST' })).status, 200);
  const c = await startSim({ env, args });
  const wakeA = await raw(`${a.url}/wake_up`, { method: 'POST' });
  assert.equal(wakeA.status, 500, 'A cannot wake while C holds its share');
  assert.equal(JSON.parse((await raw(`${a.url}/is_sleeping`)).body).is_sleeping, true);
  await a.proc.waitOutput(/CUDA out of memory while waking up/);

  assert.equal((await raw(`${c.url}/sleep?level=1`, { method: 'POST' })).status, 200);
  assert.equal((await raw(`${a.url}/wake_up`, { method: 'POST' })).status, 200, 'once C sleeps, A wakes');
  const l = JSON.parse(fs.readFileSync(ledger, 'utf8'));
  assert.ok(l.peak <= 1 + 1e-9, `the GPU never held more than all of it (${l.peak})`);
  assert.equal(l.peakAwake, 1, 'never two engines awake at once');
  assert.equal(Object.keys(l.claims).length, 2, 'the failed engine left no claim');
});
