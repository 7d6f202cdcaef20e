import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_CATALOGUE, GatewayError, retryHeaders, type ErrorCode } from '../../src/errors.ts';
import { RestartPolicy } from '../../src/engine/restart-policy.ts';
import { normalizeErrorBody, sseErrorEvent, transportError } from '../../src/proxy/upstream-errors.ts';

test('OpenAI envelope and retry headers capped at 60 s', () => {
  const e = new GatewayError('engine_asleep', 'asleep', { retryAfterMs: 600_000 });
  assert.equal(e.name, 'GatewayError');
  assert.equal(e.status, 503);
  assert.deepEqual(e.body(), { error: { message: 'asleep', type: 'service_unavailable', param: null, code: 'engine_asleep' } });
  assert.deepEqual(e.headers(), { 'retry-after': '60', 'retry-after-ms': '60000', 'x-should-retry': 'true' });
  assert.deepEqual(retryHeaders(1500), { 'retry-after': '2', 'retry-after-ms': '1500', 'x-should-retry': 'true' });
  assert.equal(new GatewayError('invalid_api_key', 'y').headers()['www-authenticate'], 'Bearer realm="vllm-gateway"');
});

test('the catalogue: every 429 and 503 carries retry hints, nothing else does; 5xx other than 503 are never a bad request', () => {
  for (const code of Object.keys(ERROR_CATALOGUE) as ErrorCode[]) {
    const e = new GatewayError(code, 'm');
    const retry = e.status === 429 || e.status === 503;
    assert.equal(e.retryAfterMs !== undefined, retry, code);
    assert.equal('retry-after' in e.headers(), retry, code);
    if (e.status >= 500 && e.status !== 503 && e.status !== 501) assert.match(e.type, /upstream_error|internal_error/, code);
  }
});

test('transport errors (undici\'s codes): unreachable → 503, timeouts → 504, broken or refused responses → 502', () => {
  assert.equal(transportError({ code: 'ECONNREFUSED' }).status, 503);
  assert.ok(transportError({ code: 'ECONNREFUSED' }).retryAfterMs);
  assert.equal(transportError({ code: 'UND_ERR_HEADERS_TIMEOUT' }).status, 504);
  assert.equal(transportError({ code: 'UND_ERR_BODY_TIMEOUT' }).status, 504);
  assert.equal(transportError({ code: 'UND_ERR_SOCKET', message: 'other side closed' }).code, 'engine_connection_lost');
  assert.equal(transportError({ code: 'UND_ERR_SOCKET', message: 'bad upgrade' }).code, 'engine_error');
  assert.equal(transportError({ code: 'HPE_INVALID_CHUNK_SIZE', message: 'Response does not match the HTTP/1.1 protocol' }).code, 'engine_error');
  assert.equal(transportError({ code: 'UPSTREAM_TOO_LARGE', message: 'too big' }).code, 'engine_response_too_large');
  assert.equal(transportError({ code: 'UND_ERR_INVALID_ARG', message: 'invalid method' }).status, 400, 'a request undici will not write is the client\'s');
  assert.equal(transportError(new Error('weird')).status, 502);
});

test('vLLM error bodies: OpenAI-shaped pass unchanged, others wrapped with the same meaning', () => {
  const shaped = '{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}}';
  assert.equal(normalizeErrorBody(404, shaped), shaped);
  assert.equal(JSON.parse(normalizeErrorBody(404, '{"detail":"Not Found"}')).error.message, 'Not Found');
  assert.equal(JSON.parse(normalizeErrorBody(401, '{"error":"Unauthorized"}')).error.message, 'Unauthorized');
  const flat = JSON.parse(normalizeErrorBody(400, '{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}'));
  assert.deepEqual(flat.error, { message: 'bad', type: 'BadRequestError', param: null, code: 'bad_request' });
  assert.match(JSON.parse(normalizeErrorBody(500, '')).error.message, /engine failed/);
  assert.equal(JSON.parse(normalizeErrorBody(422, '{"detail":[{"loc":["body"]}]}')).error.message, '[{"loc":["body"]}]');
  const ev = sseErrorEvent('broke', 'engine_stream_broken');
  assert.ok(ev.endsWith('data: [DONE]\n\n'));
  assert.equal(JSON.parse(ev.split('\n\n')[0]!.slice(6)).error.code, 'engine_stream_broken');
});

test('restart policy: 1 s, 2 s, 4 s, 8 s, then give up at 5 failures in 10 minutes', () => {
  const p = new RestartPolicy();
  const t = 1_000_000;
  assert.equal(p.onFailure(t), 1000);
  assert.equal(p.onFailure(t + 10_000), 2000);
  assert.equal(p.onFailure(t + 20_000), 4000);
  assert.equal(p.onFailure(t + 30_000), 8000);
  assert.equal(p.onFailure(t + 40_000), null);
});

test('restart policy: failures spread out keep backing off up to 60 s; a long healthy run forgives them', () => {
  const p = new RestartPolicy();
  let t = 0;
  const delays: (number | null)[] = [];
  for (let i = 0; i < 8; i++) {
    t += 4 * 60_000; // a failure every 4 minutes: never 5 within 10
    delays.push(p.onFailure(t));
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  p.onReady(t + 1000);
  assert.equal(p.onFailure(t + 1000 + 11 * 60_000), 1000);
});
