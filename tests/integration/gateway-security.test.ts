// Safe to expose: credentials, unreachable admin routes whatever the spelling, limits, no secrets leaked.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { postJson, raw, rawExchange } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';

const gateway = gatewayFactory();

const API_KEY = 'sk-test-user-key-0123456789';
const ADMIN = 'admin-token-abcdefabcdef';
const chatBody = { messages: [{ role: 'user', content: 'x' }], max_tokens: 2 };

describe('gateway: credentials', () => {
  let gw: Gateway;
  before(async () => {
    gw = await gateway({ env: { API_KEYS: `other-key,${API_KEY}`, ADMIN_TOKEN: ADMIN } });
  });

  test('/v1 without a key: 401 OpenAI-shaped with WWW-Authenticate; the SDK raises AuthenticationError', async () => {
    const r = await postJson(`${gw.url}/v1/chat/completions`, chatBody);
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), /^Bearer/);
    const e = JSON.parse(r.body).error;
    assert.equal(e.type, 'authentication_error');
    assert.equal(typeof e.code, 'string');
    await assert.rejects(gw.client({ apiKey: 'wrong' }).models.list(), OpenAI.AuthenticationError);
    assert.equal((await raw(`${gw.url}/inference`, { method: 'POST', body: '{}' })).status, 401);
  });

  test('Bearer (any case) and x-api-key are accepted', async () => {
    const res = await gw.client({ apiKey: API_KEY }).chat.completions.create({ model: 'sim/test-model', ...chatBody } as any);
    assert.equal(res.usage!.completion_tokens, 2);
    assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chatBody, { authorization: `bEaReR ${API_KEY}` })).status, 200);
    assert.equal((await postJson(`${gw.url}/v1/chat/completions`, chatBody, { 'x-api-key': 'other-key' })).status, 200);
  });

  test('every spelling of a /v1 path is served alike: the fast path (canonical ones) and Hono (the rest)', async () => {
    const body = JSON.stringify({ model: 'sim/test-model', ...chatBody });
    const spellings = ['/v1/chat/completions', '/v1/./chat/completions', '//v1/chat/completions', '/v1/chat%2Fcompletions', 'http://x/v1/chat/completions'];
    for (const [i, path] of spellings.entries()) {
      for (const [auth, want] of [['', 401], [`Authorization: Bearer ${API_KEY}\r\n`, 200]] as const) {
        const id = `spelling-${want}-${i}`;
        const r = await rawExchange(
          gw.port,
          `POST ${path} HTTP/1.1\r\nHost: x\r\n${auth}X-Request-Id: ${id}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        assert.equal(r.status, want, `${path} without/with a key`);
        assert.match(r.text, new RegExp(`\r\nx-request-id: ${id}\r\n`, 'i'), path);
        assert.match(r.text, want === 401 ? /\r\nwww-authenticate: Bearer/i : /"completion_tokens":2/, path);
        await gw.proc.waitOutput(new RegExp(`"request_id":"${id}","method":"POST","path":"/v1/chat/completions","status":${want}`));
      }
    }
  });

  test('admin routes: an API key is 403, the admin token works, nothing is 401', async () => {
    const withKey = await raw(`${gw.url}/sleep`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` } });
    assert.equal(withKey.status, 403);
    assert.equal(JSON.parse(withKey.body).error.type, 'permission_error');
    assert.equal((await raw(`${gw.url}/sleep`, { method: 'POST' })).status, 401);
    assert.equal((await raw(`${gw.url}/events`, { headers: { authorization: 'Bearer nope' } })).status, 401);
    const ok = await raw(`${gw.url}/sleep`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(ok.status, 200);
    assert.equal((await raw(`${gw.url}/wake`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })).status, 200);
  });

  test('status routes stay open', async () => {
    for (const p of ['/', '/health', '/backend', '/metrics']) assert.equal((await raw(`${gw.url}${p}`)).status, 200, p);
  });

  test('keys are never logged, and the gateway\'s secrets never reach vLLM\'s environment', async () => {
    await postJson(`${gw.url}/v1/chat/completions`, chatBody, { authorization: `Bearer ${API_KEY}` });
    await postJson(`${gw.url}/v1/chat/completions`, chatBody, { authorization: 'Bearer guessed-wrong-key' });
    const out = gw.proc.output();
    assert.ok(!out.includes(API_KEY) && !out.includes(ADMIN) && !out.includes('guessed-wrong-key'));
    const child = (await gw.backend()).child_pid as number;
    const env = fs.readFileSync(`/proc/${child}/environ`, 'utf8').split('\0');
    assert.ok(env.includes('VLLM_SERVER_DEV_MODE=1'));
    assert.ok(!env.some((v) => v.startsWith('API_KEYS=') || v.startsWith('ADMIN_TOKEN=')));
    const cmd = fs.readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(cmd.slice(-7, -1), ['sim/test-model', '--host', '127.0.0.1', '--port', String(gw.vllmPort), '--enable-sleep-mode'].slice(0, 6));
  });

  test('the gateway\'s key is not forwarded to vLLM', async () => {
    // vLLM started with --api-key would then reject it; here: the simulator sees no Authorization at all.
    const g2 = await gateway({ env: { API_KEYS: API_KEY, VLLM_ARGS: '--api-key vllm-own-key', VLLM_API_KEY: 'vllm-own-key' } });
    const res = await g2.client({ apiKey: API_KEY }).chat.completions.create({ model: 'sim/test-model', ...chatBody } as any);
    assert.equal(res.usage!.completion_tokens, 2, 'VLLM_API_KEY is what reaches vLLM');
  });
});

describe('gateway: vLLM\'s admin routes are unreachable, however spelled', () => {
  let gw: Gateway;
  before(async () => {
    gw = await gateway();
  });

  const tricks = [
    '/wake_up', '/is_sleeping', '/collective_rpc', '/reset_prefix_cache', '/pause', '/resume', '/start_profile', '/server_info',
    '/v1/../wake_up', '/v1/../collective_rpc', '/v1/%2e%2e/wake_up', '/v1/%2E%2E/collective_rpc', '/v1/%252e%252e/wake_up',
    '//wake_up', '/v1//../wake_up', '/v1/..%2fwake_up', '/v1%2f..%2fcollective_rpc', '/./wake_up', '/v1/chat/../../collective_rpc',
    '/V1/../WAKE_UP', '/v1/%5c..%5cwake_up', '/v1/..;/wake_up', '/v1/%2e%2e%2fpause', '/v1/./../is_sleeping', '/%77ake_up',
    '/v1/models/../../reset_prefix_cache', '/v1/%00/../wake_up', '/v1/..\\wake_up',
  ];

  test(`${tricks.length} spellings: never forwarded (404/400/405), vLLM's admin state untouched`, async () => {
    const before = await gw.simStats();
    for (const path of tricks) {
      for (const method of ['POST', 'GET']) {
        const { status, text } = await rawExchange(gw.port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        assert.ok([400, 404, 405].includes(status), `${method} ${path} → ${status}`);
        if (status !== 400 || text.includes('{')) assert.match(text, /"error":\{"message"/, `${method} ${path} is OpenAI-shaped`);
      }
    }
    const after = await gw.simStats();
    assert.equal(after.wake_calls.length, before.wake_calls.length);
    assert.equal(after.sleep_calls.length, before.sleep_calls.length);
    assert.equal(after.reload_weights_calls, before.reload_weights_calls);
    assert.equal(after.is_sleeping, false);
  });

  test('/v1/../sleep is the gateway\'s own /sleep (with its auth), never vLLM\'s', async () => {
    const g2 = await gateway({ env: { ADMIN_TOKEN: ADMIN } });
    const { status } = await rawExchange(g2.port, 'POST /v1/../sleep HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    assert.equal(status, 401);
    assert.equal((await g2.simStats()).sleep_calls.length, 0);
  });
});

describe('gateway: limits', () => {
  let gw: Gateway;
  before(async () => {
    gw = await gateway({ env: { MAX_BODY_BYTES: '2000', MAX_CONCURRENT_REQUESTS: '2', CLIENT_TIMEOUT_SECONDS: '1', VLLM_SIM_TOKEN_MS: '50' } });
  });

  test('a body over MAX_BODY_BYTES: 413 OpenAI-shaped, declared or chunked', async () => {
    const before = (await gw.simStats()).requests;
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    const r = await postJson(`${gw.url}/v1/chat/completions`, JSON.parse(big));
    assert.equal(r.status, 413);
    assert.equal(r.headers.connection, 'close', 'the unread body makes the connection unusable');
    assert.equal(JSON.parse(r.body).error.code, 'request_too_large');
    const chunk = 'y'.repeat(1500);
    const chunked = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
    const c = await rawExchange(gw.port, chunked);
    assert.equal(c.status, 413);
    assert.equal((await gw.simStats()).requests, before, 'nothing reached vLLM');
  });

  test('oversized headers (431) and malformed requests (400) get an OpenAI-shaped answer with a request id', async () => {
    const r = await rawExchange(gw.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`);
    assert.equal(r.status, 431);
    assert.match(r.text, /\r\nx-request-id: [0-9a-f]{32}\r\n/);
    assert.equal(JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).error.code, 'headers_too_large');
    const bad = await rawExchange(gw.port, 'GARBAGE\r\n\r\n');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /"error":\{"message"/);
  });

  test('a client that trickles its body cannot hold a slot: cut after CLIENT_TIMEOUT_SECONDS', async () => {
    const sock = net.connect(gw.port, '127.0.0.1');
    sock.resume();
    const closed = new Promise<number>((resolve) => {
      const t0 = Date.now();
      sock.once('close', () => resolve(Date.now() - t0));
    });
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"messages":');
    const ms = await closed;
    assert.ok(ms < 5000, `closed after ${ms} ms`);
    await waitFor('slot freed', async () => (await gw.health()).body.in_flight === 0, 5000);
  });

  test('MAX_CONCURRENT_REQUESTS: the request over the limit gets 429 with Retry-After', async () => {
    const long = { messages: [{ role: 'user', content: 'x' }], max_tokens: 30, ignore_eos: true };
    const a = postJson(`${gw.url}/v1/chat/completions`, long);
    const b = postJson(`${gw.url}/v1/chat/completions`, long);
    await waitFor('two in flight', async () => (await gw.health()).body.in_flight === 2);
    const c = await postJson(`${gw.url}/v1/chat/completions`, long);
    assert.equal(c.status, 429);
    assert.equal(JSON.parse(c.body).error.type, 'rate_limit_error');
    assert.ok(c.headers['retry-after'] && c.headers['retry-after-ms']);
    assert.equal((await a).status, 200);
    assert.equal((await b).status, 200);
  });

  test('malformed JSON on admin routes is 400', async () => {
    const r = await raw(`${gw.url}/sleep`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"level":' });
    assert.equal(r.status, 400);
    assert.equal((await gw.health()).body.status, 'ready');
  });

  test('the access log has one line per request with id, status, duration, model and bytes', async () => {
    await postJson(`${gw.url}/v1/chat/completions`, { model: 'sim/test-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }, { 'x-request-id': 'log-check-1' });
    const line = await gw.proc.waitOutput(/\{[^\n]*"request_id":"log-check-1"[^\n]*\}/);
    const entry = JSON.parse(line[0]);
    assert.equal(entry.status, 200);
    assert.equal(entry.path, '/v1/chat/completions');
    assert.equal(entry.model, 'sim/test-model');
    assert.equal(typeof entry.duration_ms, 'number');
    assert.equal(typeof entry.ttfb_ms, 'number');
    assert.ok(entry.bytes > 0);
  });
});
