import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';

test('defaults of the contract', () => {
  const c = loadConfig({ VLLM_MODEL: 'm' });
  assert.equal(c.port, 7860);
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.mode, 'launch');
  assert.equal(c.vllmBin, 'vllm');
  assert.deepEqual(c.vllmArgs, []);
  assert.equal(c.vllmPort, 8000);
  assert.equal(c.vllmUrl, 'http://127.0.0.1:8000');
  assert.deepEqual(c.apiKeys, []);
  assert.equal(c.adminToken, undefined);
  assert.equal(c.sleepLevel, 1);
  assert.equal(c.idleSleepMs, 0);
  assert.equal(c.autoWake, true);
  assert.equal(c.wakeOnStart, false);
  assert.equal(c.warmupOnWake, true);
  assert.equal(c.sleepDrainTimeoutMs, 30_000);
  assert.equal(c.queueTimeoutMs, 30_000);
  assert.equal(c.drainTimeoutMs, 20_000);
  assert.equal(c.engineStopTimeoutMs, 8000);
  assert.equal(c.startupTimeoutMs, 1_800_000);
  assert.equal(c.maxBodyBytes, 33_554_432);
  assert.equal(c.maxConcurrentRequests, 0);
  assert.equal(c.logLevel, 'info');
  assert.ok(Object.isFrozen(c));
});

test('VLLM_ARGS is split like a POSIX shell: quotes respected, no expansion', () => {
  const c = loadConfig({ VLLM_MODEL: 'm', VLLM_ARGS: `--max-model-len 4096 --chat-template "a b" --x '$HOME' --y \\$Z` });
  assert.deepEqual(c.vllmArgs, ['--max-model-len', '4096', '--chat-template', 'a b', '--x', '$HOME', '--y', '$Z']);
  assert.throws(() => loadConfig({ VLLM_MODEL: 'm', VLLM_ARGS: '--a "unclosed' }), /VLLM_ARGS/);
});

test('attach mode, keys, booleans and seconds', () => {
  const c = loadConfig({ VLLM_URL: 'http://10.0.0.5:9000/', API_KEYS: ' a, b ,,c', AUTO_WAKE: 'FALSE', IDLE_SLEEP_SECONDS: '1.5', SLEEP_LEVEL: '2' });
  assert.equal(c.mode, 'attach');
  assert.equal(c.vllmUrl, 'http://10.0.0.5:9000');
  assert.deepEqual(c.apiKeys, ['a', 'b', 'c']);
  assert.equal(c.autoWake, false);
  assert.equal(c.idleSleepMs, 1500);
  assert.equal(c.sleepLevel, 2);
});

test('every bad value names its variable', () => {
  const bad: Record<string, string> = {
    PORT: '70000',
    VLLM_PORT: 'x',
    SLEEP_LEVEL: '3',
    IDLE_SLEEP_SECONDS: '-1',
    AUTO_WAKE: 'perhaps',
    WAKE_ON_START: '2',
    VLLM_URL: 'ftp://x',
    MAX_BODY_BYTES: '1.5',
    MAX_CONCURRENT_REQUESTS: '-3',
    LOG_LEVEL: 'loud',
    DRAIN_TIMEOUT_SECONDS: 'soon',
    UPSTREAM_TIMEOUT_SECONDS: 'never',
    VLLM_API_KEY: 'key\r\nx-injected: 1',
  };
  for (const [k, v] of Object.entries(bad)) {
    assert.throws(() => loadConfig({ VLLM_MODEL: 'm', [k]: v }), (e: unknown) => e instanceof ConfigError && e.message.includes(k) && !e.message.includes('\n'), k);
  }
  assert.throws(() => loadConfig({}), /VLLM_MODEL/);
  assert.throws(() => loadConfig({ VLLM_MODEL: 'm', API_KEYS: ' , ,' }), /API_KEYS: no key/);
});

test('settings that are wrong together: one line naming the variable to change', () => {
  const m = { VLLM_MODEL: 'm' };
  assert.throws(() => loadConfig({ ...m, PORT: '9000', VLLM_PORT: '9000' }), /invalid VLLM_PORT: 9000 is the gateway's own PORT/);
  assert.equal(loadConfig({ VLLM_URL: 'http://127.0.0.1:9000', PORT: '9000', VLLM_PORT: '9000' }).mode, 'attach', 'attach mode does not use VLLM_PORT');
  assert.throws(() => loadConfig({ ...m, VLLM_ARGS: '--shutdown-timeout 10' }), /ENGINE_STOP_TIMEOUT_SECONDS: 8 s is shorter .* at least 15/);
  assert.throws(() => loadConfig({ ...m, VLLM_ARGS: '--shutdown-timeout=4' }), /at least 9/);
  assert.equal(loadConfig({ ...m, VLLM_ARGS: '--shutdown-timeout 10', ENGINE_STOP_TIMEOUT_SECONDS: '15' }).engineStopTimeoutMs, 15_000);
  assert.throws(() => loadConfig({ ...m, SLEEP_LEVEL: '2', VLLM_ARGS: '--kv-cache-dtype fp8_e4m3' }), /invalid SLEEP_LEVEL: level 2 with --kv-cache-dtype fp8_e4m3/);
  const allowed = loadConfig({ ...m, SLEEP_LEVEL: '2', VLLM_ARGS: '--kv-cache-dtype=fp8', ALLOW_FP8_KV_SLEEP_LEVEL_2: 'true' });
  assert.equal(allowed.fp8KvCache, true);
  assert.equal(loadConfig({ ...m, SLEEP_LEVEL: '1', VLLM_ARGS: '--kv-cache-dtype fp8' }).fp8KvCache, true, 'level 1 is fine');
  for (const e of [{ ...m, API_KEYS: ',' }, { ...m, PORT: '1', VLLM_PORT: '1' }]) {
    assert.throws(() => loadConfig(e), (err: unknown) => err instanceof ConfigError && !err.message.includes('\n'));
  }
});
