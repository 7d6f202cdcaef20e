import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseOptions, UsageError, versionAtLeast } from '../../src/simulator/options.ts';
import { chatPromptTokens, pieceAt, tokenize } from '../../src/simulator/tokens.ts';

test('parses the vLLM command line the gateway builds, skipping unknown flags with their values', () => {
  const o = parseOptions(
    ['serve', 'Qwen/Qwen3-0.6B', '--host', '127.0.0.1', '--port', '8001', '--enable-sleep-mode', '--gpu-memory-utilization', '0.9', '--served-model-name', 'a', 'b', '--shutdown-timeout=5', '--trust-remote-code', '--max-model-len', '1024'],
    { VLLM_SERVER_DEV_MODE: '1' },
  );
  assert.equal(o.model, 'Qwen/Qwen3-0.6B');
  assert.equal(o.host, '127.0.0.1');
  assert.equal(o.port, 8001);
  assert.equal(o.enableSleepMode, true);
  assert.equal(o.devMode, true);
  assert.deepEqual(o.servedModelNames, ['a', 'b']);
  assert.equal(o.shutdownTimeoutSeconds, 5);
  assert.equal(o.maxModelLen, 1024);
});

test('defaults behave like a small model on a real GPU', () => {
  const o = parseOptions(['serve', 'm'], {});
  assert.equal(o.port, 8000);
  assert.equal(o.devMode, false);
  assert.ok(o.loadMs >= 1000 && o.tokenMs >= 10 && o.wakeMs >= 500 && o.sleepMs > 0);
  assert.deepEqual(o.servedModelNames, ['m']);
});

test('usage errors: no model, a flag without value, a bad knob', () => {
  assert.throws(() => parseOptions(['serve'], {}), UsageError);
  assert.throws(() => parseOptions(['serve', 'm', '--port'], {}), UsageError);
  assert.throws(() => parseOptions(['serve', 'm', '--port', 'x'], {}), UsageError);
  assert.throws(() => parseOptions(['run', 'm'], {}), UsageError);
  assert.throws(() => parseOptions(['serve', 'm'], { VLLM_SIM_TOKEN_MS: 'fast' }), /VLLM_SIM_TOKEN_MS/);
});

test('versionAtLeast compares numerically and ignores suffixes', () => {
  assert.equal(versionAtLeast('0.17.0', '0.17.0'), true);
  assert.equal(versionAtLeast('0.16.9', '0.17.0'), false);
  assert.equal(versionAtLeast('0.100.1', '0.17.0'), true);
  assert.equal(versionAtLeast('0.19.1rc1.dev42+cu128', '0.19.1'), true);
  assert.equal(versionAtLeast('1.0', '0.17.0'), true);
  assert.equal(versionAtLeast('v0.17.0', '0.17.0'), true, 'a v prefix is tolerated');
  assert.equal(versionAtLeast(undefined, '0.17.0'), false);
  assert.equal(versionAtLeast('unknown', '0.17.0'), false);
});

test('tokens: words with leading spaces; chat adds template tokens; generation is deterministic', () => {
  assert.deepEqual(tokenize('a bc  d'), ['a', ' bc', '  d']);
  assert.equal(chatPromptTokens([{ role: 'user', content: 'one two' }]), 3 + 4 + 2);
  assert.equal(pieceAt(7, 3, false), pieceAt(7, 3, false));
  assert.notEqual(pieceAt(7, 3, true), pieceAt(7, 3, false));
});
