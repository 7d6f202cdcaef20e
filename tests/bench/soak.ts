// `npm run soak -- --minutes N`: sleep/wake cycles and streams against the simulator for N minutes, printing
// the gateway's RSS and open handles (file descriptors) each minute, then the RSS slope. Loopback only,
// bounded in time, every process it starts is stopped by pid.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const i = process.argv.indexOf('--minutes');
const MINUTES = Math.min(60, Math.max(0.25, i >= 0 ? Number(process.argv[i + 1]) : 2));

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

function request(port: number, method: string, p: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: data ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const fds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;

async function main(): Promise<void> {
  const port = await freePort();
  const vllmPort = await freePort();
  const gwMain = fs.existsSync(path.join(ROOT, 'dist/main.js')) ? [path.join(ROOT, 'dist/main.js')] : ['--import', 'tsx', path.join(ROOT, 'src/main.ts')];
  const gw = spawn(process.execPath, gwMain, {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      VLLM_PORT: String(vllmPort),
      VLLM_MODEL: 'sim/soak',
      VLLM_BIN: path.join(ROOT, 'bin/vllm-sim.js'),
      VLLM_SIM_LOAD_SECONDS: '0.5',
      VLLM_SIM_TOKEN_MS: '5',
      VLLM_SIM_SLEEP_MS: '50',
      VLLM_SIM_WAKE_MS: '100',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const stop = () => {
    try {
      process.kill(gw.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
  };
  process.on('SIGINT', () => (stop(), process.exit(130)));
  for (let t = Date.now(); ; ) {
    const h = await request(port, 'GET', '/health').catch(() => ({ status: 0, text: '' }));
    if (h.status === 200) break;
    if (Date.now() - t > 30_000) throw new Error('gateway not ready');
    await new Promise((r) => setTimeout(r, 200));
  }

  const end = Date.now() + MINUTES * 60_000;
  let served = 0;
  let failed = 0;
  let cycles = 0;
  const streamer = async () => {
    while (Date.now() < end) {
      const r = await request(port, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'soak' }], max_tokens: 20, stream: true }).catch(() => ({ status: 0, text: '' }));
      if (r.status === 200 && r.text.endsWith('data: [DONE]\n\n') && !r.text.includes('"error"')) served++;
      else failed++;
    }
  };
  const cycler = async () => {
    while (Date.now() < end) {
      const s = await request(port, 'POST', '/sleep').catch(() => ({ status: 0, text: '' }));
      const w = await request(port, 'POST', '/wake').catch(() => ({ status: 0, text: '' }));
      if (s.status === 200 && w.status === 200) cycles++;
      else failed++;
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const samples: [number, number][] = [];
  const t0 = Date.now();
  const sample = () => {
    const min = (Date.now() - t0) / 60_000;
    const rss = rssMb(gw.pid!);
    samples.push([min, rss]);
    console.log(`t=${min.toFixed(1)} min  rss=${rss.toFixed(1)} MB  open fds=${fds(gw.pid!)}  served=${served}  sleep/wake cycles=${cycles}  failed=${failed}`);
  };
  sample();
  const timer = setInterval(sample, Math.min(60_000, (MINUTES * 60_000) / 4));
  await Promise.all([...Array.from({ length: 8 }, streamer), cycler()]);
  clearInterval(timer);
  sample();
  // Least-squares slope of RSS over time, ignoring the first quarter (warm-up: JIT, pools).
  const pts = samples.filter(([m]) => m >= MINUTES / 4);
  const n = pts.length;
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  const slope = pts.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / (pts.reduce((a, [x]) => a + (x - mx) ** 2, 0) || 1);
  console.log(`RSS slope after warm-up: ${slope.toFixed(2)} MB/min over ${n} samples; ${served} streams served, ${cycles} sleep/wake cycles, ${failed} failures`);
  stop();
  await new Promise((r) => gw.once('exit', r));
  process.exit(failed ? 1 : 0);
}

void main();
