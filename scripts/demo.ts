// `npm run demo`: the gateway with the bundled vLLM simulator as its engine, no GPU needed.
// Every default can be overridden from the environment (PORT, VLLM_MODEL, IDLE_SLEEP_SECONDS, ...).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const defaults: Record<string, string> = {
  VLLM_BIN: path.join(root, 'bin/vllm-sim.js'),
  VLLM_MODEL: 'Qwen/Qwen3-0.6B',
  PORT: '7860',
  LOG_PRETTY: 'true',
};
for (const [k, v] of Object.entries(defaults)) process.env[k] ??= v;

await import('../src/main.ts');
