// A bounded loopback fuzz: a few hundred seeded, randomized bad requests against a live gateway while good
// requests keep flowing. No 5xx but 503, no crash, memory flat, every good request served.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, test } from 'node:test';
import { startGateway, type Gateway } from '../helpers/gateway.ts';
import { raw, rawExchange } from '../helpers/net.ts';
import { killAllStarted } from '../helpers/procs.ts';
import { prng } from '../helpers/prng.ts';

let gw: Gateway | undefined;
after(() => {
  gw?.kill();
  killAllStarted();
});

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const COUNT = Number(process.env.FUZZ_COUNT ?? 400);


const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'FOO', 'get'];
const PATHS = [
  '/', '/health', '/backend', '/metrics', '/sleep', '/wake', '/events', '/inference', '/v1/chat/completions', '/v1/completions',
  '/v1/models', '/v1/embeddings', '/v1/../wake_up', '/v1/%2e%2e/collective_rpc', '//reset_prefix_cache', '/v1/%ZZ', '/v1/%00',
  '/v1/\u00e9t\u00e9', '/sleep?level=abc', '/sleep?level=%ZZ&level=2', '/v1/chat/completions?x=' + 'a'.repeat(3000), '/' + 'b'.repeat(6000),
  '/v1/models/../../sleep', '/inference?prompt=x', '*', 'http://evil.example/v1/models',
];
const BODIES = [
  '', '{', '{"messages":', 'null', '[]', '"str"', '12', '{"prompt":5}', '{"prompt":"x","max_new_tokens":"many"}', '{"prompt":"x","temperature":-4}',
  '{"model":123,"messages":"x"}', '{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}', '{"messages":[{"role":"user"}],"stream":"yes"}',
  '{"prompt":"' + 'z'.repeat(10_000) + '"}', '\u0000\u0001\u0002', '{"level":7}', '{"messages":[{"role":"user","content":"x"}],"max_tokens":1e309}',
];
const CONTENT_TYPES = ['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', ''];

function badRequest(r: ReturnType<typeof prng>): { bytes: string; cut: boolean } {
  const method = r.pick(METHODS);
  const path = r.pick(PATHS);
  const body = r.pick(BODIES);
  const headers = [`Host: x`, 'Connection: close'];
  const ct = r.pick(CONTENT_TYPES);
  if (ct) headers.push(`Content-Type: ${ct}`);
  const lenMode = r.int(4);
  if (lenMode === 0) headers.push(`Content-Length: ${Buffer.byteLength(body)}`);
  else if (lenMode === 1) headers.push(`Content-Length: ${r.pick(['abc', '-1', '99999999999', '5, 6'])}`);
  else if (lenMode === 2) headers.push('Transfer-Encoding: chunked');
  if (r.next() < 0.15) headers.push(`X-Junk: ${'j'.repeat(r.pick([10, 1000, 40_000]))}`);
  if (r.next() < 0.2) headers.push(`Authorization: ${r.pick(['Bearer', 'Bearer ', 'Basic Zm9v', 'bearer x y', '\u00ff\u00fe'])}`);
  if (r.next() < 0.1) headers.push(`X-Request-Id: ${r.pick(['', 'a b', 'z'.repeat(300), '../../etc'])}`);
  const payload = lenMode === 2 ? `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n` : body;
  return { bytes: `${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${payload}`, cut: r.next() < 0.15 };
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

function earlyDisconnect(port: number, bytes: string): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(bytes.slice(0, Math.max(1, Math.floor(bytes.length / 2))));
      setImmediate(() => s.destroy());
    });
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

test(`fuzz: ${COUNT} randomized bad requests (seed ${SEED}) while good ones are served`, async () => {
  gw = await startGateway({ env: { ADMIN_TOKEN: 'fuzz-admin', MAX_BODY_BYTES: '8192', CLIENT_TIMEOUT_SECONDS: '2', VLLM_SIM_TOKEN_MS: '2' } });
  const r = prng(SEED);
  const statuses = new Map<number, number>();
  const offenders: string[] = [];
  let goodOk = 0;
  const goodFail: string[] = [];
  let stop = false;
  const good = (async () => {
    const client = gw!.client();
    while (!stop) {
      try {
        const res = await client.chat.completions.create({ model: 'sim/test-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
        if (res.usage?.completion_tokens === 3) goodOk++;
        else goodFail.push('short answer');
      } catch (e) {
        goodFail.push(String(e));
      }
    }
  })();

  const requests = Array.from({ length: COUNT }, () => badRequest(r));
  let rssAfterWarmup = 0;
  const workers = 8;
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < requests.length) {
        const i = next++;
        if (i === 100) rssAfterWarmup = rssKb(gw!.proc.pid);
        const req = requests[i]!;
        if (req.cut) {
          await earlyDisconnect(gw!.port, req.bytes);
          continue;
        }
        const { status } = await rawExchange(gw!.port, req.bytes, { timeoutMs: 8000 });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (status >= 500 && status !== 503) offenders.push(`${status} ← ${req.bytes.slice(0, 160).replace(/\r\n/g, ' | ')}`);
      }
    }),
  );
  stop = true;
  await good;
  const rssEnd = rssKb(gw.proc.pid);

  assert.deepEqual(offenders, [], 'no 5xx but 503');
  assert.equal((await raw(`${gw.url}/health`)).status, 200, 'the gateway is alive and the engine ready');
  assert.equal(gw.proc.child.exitCode, null);
  assert.deepEqual(goodFail, [], 'every good request was served');
  assert.ok(goodOk > 10, `${goodOk} good requests served alongside`);
  const growthMb = (rssEnd - rssAfterWarmup) / 1024;
  assert.ok(growthMb < 40, `RSS grew ${growthMb.toFixed(1)} MB after warm-up`);
  const { status: healthAfter } = await rawExchange(gw.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(healthAfter, 200);
  console.log(`fuzz: statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}; good requests ${goodOk}; RSS ${rssAfterWarmup} → ${rssEnd} kB`);
});
