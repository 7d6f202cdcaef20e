// The clients people pick, against the gateway: the Vercel AI SDK (with @ai-sdk/openai-compatible) and
// LangChain's ChatOpenAI, beside the openai SDK the other tests use. A whole answer, a stream, and a stream
// that vLLM breaks off, as each client reports it.
import assert from 'node:assert/strict';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, streamText } from 'ai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { chatChunk, SSE_HEAD, sseChunk, startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { MODEL, ROOT } from '../helpers/sim.ts';

const gateway = gatewayFactory();
const KEY = 'sk-sdk-test-key';

describe('SDK clients against the gateway and the simulator', () => {
  let gw: Gateway;
  before(async () => {
    gw = await gateway({ env: { API_KEYS: KEY, VLLM_SIM_OUTPUT_TOKENS: '6' } });
  });

  test('Vercel AI SDK: generateText and streamText', async () => {
    const provider = createOpenAICompatible({ name: 'gateway', baseURL: `${gw.url}/v1`, apiKey: KEY });
    const whole = await generateText({ model: provider(MODEL), prompt: 'Hello', maxRetries: 0 });
    assert.ok(whole.text.length > 0);
    assert.equal(whole.finishReason, 'stop');
    const stream = streamText({ model: provider(MODEL), prompt: 'Hello', maxRetries: 0 });
    let text = '';
    for await (const piece of stream.textStream) text += piece;
    assert.ok(text.length > 0);
    assert.equal(await stream.finishReason, 'stop');
  });

  test('LangChain ChatOpenAI: invoke and stream', async () => {
    const chat = new ChatOpenAI({ model: MODEL, apiKey: KEY, maxRetries: 0, configuration: { baseURL: `${gw.url}/v1` } });
    const msg = await chat.invoke('Hello');
    assert.ok(String(msg.content).length > 0);
    let text = '';
    for await (const chunk of await chat.stream('Hello')) text += String(chunk.content);
    assert.ok(text.length > 0);
  });
});

describe('SDK clients when vLLM breaks a stream off', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startScriptedUpstream(async (_req, sock) => {
      sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + sseChunk(chatChunk(' second')));
      await new Promise((r) => setTimeout(r, 20));
      sock.destroy(); // the engine died: the gateway ends the stream with its error event
    });
    gw = await gateway({ attachTo: up.url });
  });
  after(() => up.close());

  test('the openai SDK and LangChain raise; the Vercel AI SDK ends its stream with finishReason "error"', async () => {
    const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'none', maxRetries: 0 });
    const s = await openai.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'x' }], stream: true });
    await assert.rejects(
      (async () => {
        for await (const _ of s);
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && /stream from vLLM broke/.test((e as Error).message),
    );

    const chat = new ChatOpenAI({ model: 'scripted', apiKey: 'none', maxRetries: 0, configuration: { baseURL: `${gw.url}/v1` } });
    await assert.rejects(
      (async () => {
        for await (const _ of await chat.stream('x'));
      })(),
      /stream from vLLM broke/,
    );

    const provider = createOpenAICompatible({ name: 'gateway', baseURL: `${gw.url}/v1`, apiKey: 'none' });
    const errors: unknown[] = [];
    const stream = streamText({ model: provider('scripted'), prompt: 'x', maxRetries: 0, onError: ({ error }) => void errors.push(error) });
    let text = '';
    for await (const piece of stream.textStream) text += piece;
    assert.equal(text, 'first second', 'what came whole was delivered');
    assert.equal(await stream.finishReason, 'error');
    assert.ok(errors.length > 0 && /stream from vLLM broke/.test(JSON.stringify(errors[0], Object.getOwnPropertyNames(errors[0]))), 'onError hears why');
  });
});

describe('the README\'s TypeScript snippet', () => {
  test('runs as written with `node hello.mts` (Node 24 strips the types) and streams an answer', async () => {
    const gw = await gateway({ env: { VLLM_MODEL: 'Qwen/Qwen3-0.6B', API_KEYS: KEY, VLLM_SIM_OUTPUT_TOKENS: '5' } });
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const snippet = /```ts\n([\s\S]*?)```/.exec(readme)![1]!;
    // A new project beside this checkout's packages (`import 'openai'` finds them); only the port differs.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-snippet-'));
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const file = path.join(dir, 'hello.mts');
    fs.writeFileSync(file, snippet.replace('http://localhost:7860', gw.url));
    const run = spawnSync(process.execPath, [file], { env: { ...process.env, OPENAI_API_KEY: KEY }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.ok(run.stdout.trim().length > 0, 'the streamed answer is printed');
  });
});
