// Starts the vLLM simulator as a real process for tests.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, raw } from './net.ts';
import { waitFor } from './poll.ts';
import { startProcess, type Proc } from './procs.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SIM_BIN = path.join(ROOT, 'bin/vllm-sim.js');
export const MODEL = 'sim/test-model';

/** Fast defaults for tests; each test overrides what it exercises. */
export const FAST_SIM_ENV: Record<string, string> = {
  VLLM_SIM_LOAD_SECONDS: '0.2',
  VLLM_SIM_TTFT_MS: '5',
  VLLM_SIM_TOKEN_MS: '5',
  VLLM_SIM_SLEEP_MS: '50',
  VLLM_SIM_WAKE_MS: '100',
};

export interface Sim {
  proc: Proc;
  port: number;
  url: string;
  stats(): Promise<Record<string, any>>;
}

export async function startSim(
  opts: { env?: Record<string, string>; args?: string[]; devMode?: boolean; sleepMode?: boolean; waitReady?: boolean } = {},
): Promise<Sim> {
  const port = await freePort();
  const args = ['serve', MODEL, '--host', '127.0.0.1', '--port', String(port)];
  if (opts.sleepMode !== false) args.push('--enable-sleep-mode');
  args.push(...(opts.args ?? []));
  const env = { ...FAST_SIM_ENV, VLLM_SERVER_DEV_MODE: opts.devMode === false ? '0' : '1', ...opts.env };
  const proc = startProcess(process.execPath, [SIM_BIN, ...args], env);
  const url = `http://127.0.0.1:${port}`;
  if (opts.waitReady !== false) {
    await waitFor('simulator ready', async () => (await raw(`${url}/health`)).status === 200, 20_000);
  }
  return {
    proc,
    port,
    url,
    stats: async () => JSON.parse((await raw(`${url}/_sim/stats`)).body),
  };
}
