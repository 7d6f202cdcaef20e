import assert from 'node:assert/strict';
import { test } from 'node:test';
import { credentialOf, KeySet } from '../../src/auth.ts';
import { adminRefusal, apiKeyRefusal } from '../../src/http/middleware.ts';
import { vllmArgv, vllmEnv } from '../../src/engine/args.ts';
import { INVALID_PATH, parseTarget } from '../../src/paths.ts';
import { BadUpstreamResponse, clientResponseHead, requestIdOf, upstreamRequestHeaders } from '../../src/proxy/headers.ts';

const canonicalPath = (raw: string) => parseTarget(raw).path;

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
  assert.equal(canonicalPath('/.well-known/x'), '/.well-known/x');
  assert.equal(canonicalPath('/v1/a..b/c.'), '/v1/a..b/c.');
});

test('targets: what vLLM is sent means the routed path to a server that decodes once, in visible ASCII', () => {
  assert.deepEqual(parseTarget('/v1/chat/completions?x=1&y'), { path: '/v1/chat/completions', query: '?x=1&y', upstreamPath: '/v1/chat/completions' });
  assert.deepEqual(parseTarget('http://h:1/v1/models?y=1'), { path: '/v1/models', query: '?y=1', upstreamPath: '/v1/models' });
  assert.equal(parseTarget('/v1/chat%2Fcompletions').upstreamPath, '/v1/chat/completions');
  assert.equal(parseTarget('/v1/./models/').upstreamPath, '/v1/models/');
  assert.equal(parseTarget('/v1/a%22b%7Bc%7D').path, '/v1/a"b{c}');
  assert.equal(parseTarget('/v1/a%22b%7Bc%7D').upstreamPath, '/v1/a%22b%7Bc%7D');
  assert.equal(parseTarget('/v1/a"b').upstreamPath, '/v1/a"b', 'a canonical raw path is sent as it came');
  // Whatever decodes to a control character, a space, ?, # or a byte outside ASCII is refused.
  for (const bad of ['http://x?/v1/models', 'http://a:b@x/v1/models', 'http://x#/v1/models', '/v1/a%0D%0Ab', '/v1/a%20b', '/v1/a%3Fb', '/v1/a%23b', '/v1/%C4%8A', '/v1/%C3%A9', '/v1/a%7Fb', '/v1/%250D%250A', '/v1/%25', '/v1/models#x', '/v1/models?a#x', '*', 'ftp://h/v1/x', '/v1/a\u00e9']) {
    assert.equal(parseTarget(bad).path, INVALID_PATH, bad);
  }
  // An encoded CR LF in a query stays encoded: data to vLLM, never a line break.
  assert.equal(parseTarget('/v1/models?a=%0D%0A').query, '?a=%0D%0A');
  for (const raw of ['/v1/x', '/v1/%2e%2e/v1/x', '/v1/%252e/x', '/v1//x/', '/v1/a%5B%5D']) {
    const t = parseTarget(raw);
    assert.match(t.upstreamPath, /^[\x21-\x7e]+$/, raw);
    if (t.path !== INVALID_PATH) assert.equal(decodeURIComponent(t.upstreamPath), t.path, `${raw}: decoded once, vLLM sees the routed path`);
  }
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

test('request headers: hop-by-hop, listed, credential and underscore names never reach vLLM; one request id', () => {
  const raw = [
    'Host', 'gw', 'Connection', 'keep-alive, X-Secret', 'X-Secret', '1', 'Authorization', 'Bearer gwkey', 'X-Api-Key', 'k', 'Content-Type', 'application/json',
    'Content-Length', '10', 'TE', 'trailers', 'Accept', '*/*', 'x_api_key', 'k', 'X-Request-Id', 'client-id', 'Proxy-Authorization', 'Basic x', 'X-Dup', 'a', 'X-Dup', 'b',
  ];
  const up = upstreamRequestHeaders(raw, 'rid', undefined);
  assert.deepEqual(up, ['Content-Type', 'application/json', 'Accept', '*/*', 'X-Dup', 'a', 'X-Dup', 'b', 'x-request-id', 'rid']);
  assert.deepEqual(upstreamRequestHeaders([], 'r', 'vkey'), ['x-request-id', 'r', 'authorization', 'Bearer vkey']);
  assert.equal(requestIdOf('abc-123'), 'abc-123');
  assert.match(requestIdOf(undefined), /^[0-9a-f]{32}$/);
  assert.match(requestIdOf('bad id with spaces'), /^[0-9a-f]{32}$/);
});

test('response head: vLLM\'s framing never reaches the client; a head Node would refuse is BadUpstreamResponse', () => {
  const sse = clientResponseHead({ 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked', server: 'uvicorn', date: 'x', connection: 'close' }, 'rid');
  assert.deepEqual({ ...sse.headers }, { 'content-type': 'text/event-stream', 'x-request-id': 'rid' });
  assert.equal(sse.contentLength, undefined);
  const json = clientResponseHead({ 'content-type': 'application/json', 'content-length': '5', 'x-request-id': 'vllm-id' }, 'rid');
  assert.deepEqual({ ...json.headers }, { 'content-type': 'application/json', 'x-request-id': 'rid' });
  assert.equal(json.contentLength, 5);
  for (const bad of [{ 'transfer-encoding': 'gzip, chunked' }, { 'transfer-encoding': 'identity' }, { 'content-length': '1, 2' }, { 'x-bad': 'a\x7fb' }, { 'x-bad': 'a\x00b' }, { 'x bad': 'v' }]) {
    assert.throws(() => clientResponseHead(bad, 'r'), BadUpstreamResponse, JSON.stringify(bad));
  }
  const proto = clientResponseHead(JSON.parse('{"__proto__":"x","a":"b"}'), 'r');
  assert.equal(Object.getPrototypeOf(proto.headers), null, 'a header named __proto__ cannot change the head object');
});

test('modelOf: the top-level model without parsing the body; quoted text inside strings never matches', async () => {
  const { modelOf } = await import('../../src/http/v1.ts');
  assert.equal(modelOf(Buffer.from('{"model":"Qwen/Qwen3-8B","messages":[]}')), 'Qwen/Qwen3-8B');
  assert.equal(modelOf(Buffer.from('{ "messages": [{"content": "say \\"model\\": \\"x\\""}], "model" : "m2" }')), 'm2');
  assert.equal(modelOf(Buffer.from('{"messages":[]}')), undefined);
  assert.equal(modelOf(Buffer.from('{"model":5}')), undefined);
});
