// `npm run demo`: the gateway with the bundled vLLM simulator as its engine, no GPU needed.
// Every default can be overridden from the environment (PORT, VLLM_MODEL, IDLE_SLEEP_SECONDS, ...).
import net from 'node:net';
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
// The simulator gets a free loopback port unless one is given: 8000 is often taken on a workstation.
process.env.VLLM_PORT ??= String(await freePort());

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

await import('../src/main.ts');
