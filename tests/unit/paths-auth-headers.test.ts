import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentialOf, KeySet } from '../../src/auth.ts';
import { adminRefusal, apiKeyRefusal } from '../../src/http/middleware.ts';
import { vllmArgv, vllmEnv } from '../../src/engine/args.ts';
import { canonicalPath, INVALID_PATH, rawPathOf, rawQueryOf } from '../../src/paths.ts';
import { downstreamResponseHeaders, requestIdOf, upstreamRequestHeaders } from '../../src/proxy/headers.ts';

test('canonical paths: no spelling reaches a route it does not name', () => {
  assert.equal(canonicalPath('/v1/chat/completions'), '/v1/chat/completions');
  assert.equal(canonicalPath('/v1/../sleep'), '/sleep');
  assert.equal(canonicalPath('/v1/%2e%2e/wake_up'), '/wake_up');
  assert.equal(canonicalPath('/v1/%252e%252e/collective_rpc'), '/collective_rpc');
  assert.equal(canonicalPath('//collective_rpc'), '/collective_rpc');
  assert.equal(canonicalPath('/v1/./models'), '/v1/models');
  assert.equal(canonicalPath('/v1%2fchat%2fcompletions'), '/v1/chat/completions');
  assert.equal(canonicalPath('/../../etc/passwd'), '/etc/passwd');
  assert.equal(canonicalPath('/v1/%ZZ'), INVALID_PATH);
  assert.equal(canonicalPath('/v1/a%00b'), INVALID_PATH);
  assert.equal(canonicalPath('/v1\\..\\sleep'), INVALID_PATH);
  assert.equal(rawPathOf('http://h:1/v1/x?y=1'), '/v1/x');
  assert.equal(rawQueryOf('http://h:1/v1/x?y=1&z'), '?y=1&z');
});

test('credentials: Bearer (any case) or x-api-key; constant-time set membership', () => {
  assert.equal(credentialOf({ authorization: 'Bearer k1' }), 'k1');
  assert.equal(credentialOf({ authorization: 'bearer   k1 ' }), 'k1');
  assert.equal(credentialOf({ authorization: 'Basic abc' }), undefined);
  assert.equal(credentialOf({ 'x-api-key': 'k2' }), 'k2');
  const keys = new KeySet(['k1', 'k2']);
  assert.equal(keys.has('k1'), true);
  assert.equal(keys.has('k2'), true);
  assert.equal(keys.has('k3'), false);
  assert.equal(keys.has(''), false);
  assert.equal(new KeySet([]).empty, true);
});

test('refusals: API keys on /v1, the admin token (or, without one, any API key) on admin routes', () => {
  const none = new KeySet([]);
  const keys = new KeySet(['user-key']);
  const admin = new KeySet(['admin-token']);
  const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
  assert.equal(apiKeyRefusal(none, {}), undefined, 'no API_KEYS: open');
  assert.equal(apiKeyRefusal(keys, {})?.status, 401);
  assert.equal(apiKeyRefusal(keys, bearer('nope'))?.status, 401);
  assert.equal(apiKeyRefusal(keys, bearer('user-key')), undefined);
  assert.equal(apiKeyRefusal(keys, { 'x-api-key': 'user-key' }), undefined);
  assert.equal(adminRefusal(none, none, {}), undefined, 'neither set: open');
  assert.equal(adminRefusal(none, keys, bearer('user-key')), undefined, 'no ADMIN_TOKEN: an API key will do');
  assert.equal(adminRefusal(none, keys, bearer('nope'))?.status, 401);
  assert.equal(adminRefusal(admin, keys, bearer('admin-token')), undefined);
  assert.equal(adminRefusal(admin, keys, bearer('user-key'))?.status, 403, 'an API key is not the admin token');
  assert.equal(adminRefusal(admin, keys, bearer('nope'))?.status, 401);
  assert.equal(adminRefusal(admin, none, {})?.status, 401);
  assert.equal(apiKeyRefusal(keys, {})?.headers()['www-authenticate'], 'Bearer realm="vllm-gateway"');
});

test('vLLM command line and environment of the contract', () => {
  assert.deepEqual(vllmArgv('Qwen/Qwen3-0.6B', 8001, ['--max-model-len', '4096']), [
    'serve', 'Qwen/Qwen3-0.6B', '--host', '127.0.0.1', '--port', '8001', '--enable-sleep-mode', '--max-model-len', '4096',
  ]);
  const env = vllmEnv({ HF_TOKEN: 'hf', CUDA_VISIBLE_DEVICES: '0', API_KEYS: 'secret', ADMIN_TOKEN: 'admin', X: undefined });
  assert.deepEqual(env, { HF_TOKEN: 'hf', CUDA_VISIBLE_DEVICES: '0', VLLM_SERVER_DEV_MODE: '1' });
});

test('headers: hop-by-hop and gateway credentials never cross; request id everywhere', () => {
  const up = upstreamRequestHeaders(
    { host: 'gw', connection: 'keep-alive, x-secret', 'x-secret': '1', authorization: 'Bearer gwkey', 'x-api-key': 'k', 'content-type': 'application/json', 'content-length': '10', te: 'trailers', accept: '*/*' },
    'rid',
    undefined,
  );
  assert.deepEqual(up, { 'content-type': 'application/json', accept: '*/*', 'x-request-id': 'rid' });
  assert.equal(upstreamRequestHeaders({}, 'r', 'vkey').authorization, 'Bearer vkey');
  const down = downstreamResponseHeaders({ 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked', server: 'uvicorn', date: 'x', 'content-length': '5', connection: 'close' }, 'rid');
  assert.deepEqual(down, { 'content-type': 'text/event-stream', 'content-length': '5', 'x-request-id': 'rid' });
  assert.equal(requestIdOf('abc-123'), 'abc-123');
  assert.match(requestIdOf(undefined), /^[0-9a-f]{32}$/);
  assert.match(requestIdOf('bad id with spaces'), /^[0-9a-f]{32}$/);
});

test('modelOf: the top-level model without parsing the body; quoted text inside strings never matches', async () => {
  const { modelOf } = await import('../../src/http/v1.ts');
  assert.equal(modelOf(Buffer.from('{"model":"Qwen/Qwen3-8B","messages":[]}')), 'Qwen/Qwen3-8B');
  assert.equal(modelOf(Buffer.from('{ "messages": [{"content": "say \\"model\\": \\"x\\""}], "model" : "m2" }')), 'm2');
  assert.equal(modelOf(Buffer.from('{"messages":[]}')), undefined);
  assert.equal(modelOf(Buffer.from('{"model":5}')), undefined);
});
