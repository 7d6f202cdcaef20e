// The relay's HTTP/1.1 handling against a scripted upstream that sends exact bytes: chunks split across
// reads, framing broken mid-chunk, malformed heads, every body framing, HTTP/1.0 clients, connection reuse.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { waitFor } from '../helpers/poll.ts';
import { sseData } from '../helpers/net.ts';
import { chatChunk, postScript, SSE_HEAD, sseChunk, startScriptedUpstream, type Script, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';

const gateway = gatewayFactory();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

const WORDS = ['Hel', 'lo', ' wor', 'ld'];
const STREAM = SSE_HEAD + WORDS.map((w) => sseChunk(chatChunk(w))).join('') + sseChunk(chatChunk('', 'stop')) + sseChunk('[DONE]') + '0\r\n\r\n';
const COMPLETION = JSON.stringify({
  id: 'chatcmpl-s',
  object: 'chat.completion',
  created: 1,
  model: 'scripted',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
});
const lengthAnswer = (extra = '') => `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${COMPLETION.length}\r\n${extra}\r\n${COMPLETION}`;

const FLOOD = { chunks: 32_000, written: 0 }; // 1 KB events: 32 MB, more than loopback's socket buffers hold

const scripts: Record<string, Script> = {
  flood: async (_req, sock) => {
    FLOOD.written = 0;
    const event = sseChunk('x'.repeat(1000));
    sock.write(SSE_HEAD);
    for (let i = 0; i < FLOOD.chunks; i++) {
      FLOOD.written++;
      if (!sock.write(event)) await once(sock, 'drain');
    }
    sock.write(sseChunk('[DONE]') + '0\r\n\r\n');
  },
  // Three bytes a write, a timer apart: the gateway reads chunks in pieces, size lines included.
  split: async (_req, sock) => {
    for (let i = 0; i < STREAM.length; i += 3) {
      sock.write(STREAM.slice(i, i + 3));
      await pause(1);
    }
  },
  sse: (_req, sock) => void sock.write(STREAM),
  'drop-mid-chunk': async (_req, sock) => {
    const second = sseChunk(chatChunk('never whole'));
    sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + second.slice(0, 20));
    await pause(50);
    sock.destroy();
  },
  'bad-framing': async (_req, sock) => {
    sock.write(SSE_HEAD + sseChunk(chatChunk('first')));
    await pause(20);
    sock.write('zz\r\nnot chunked at all\r\n');
  },
  'bad-head': (_req, sock) => void sock.write('HTTP/1.1 2x0 Nonsense\r\n\r\n'),
  // A byte Node refuses to send in a header value: the gateway must answer, not crash on it.
  'bad-header-value': (_req, sock) => void sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-odd: a\x01b\r\ncontent-length: 2\r\n\r\n{}`),
  length: (_req, sock) => void sock.write(lengthAnswer()),
  'length-close': (_req, sock) => void sock.write(lengthAnswer('connection: close\r\n')),
  'close-delimited': (_req, sock) => void sock.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n${COMPLETION}`),
  'drop-if-reused': (req, sock) => void (req.onConnection > 1 ? sock.destroy() : sock.write(lengthAnswer())),
  'drop-always': (_req, sock) => void sock.destroy(),
  silent: () => {},
  stall: (_req, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first'))),
};

const chat = { model: 'scripted', messages: [{ role: 'user' as const, content: 'x' }] };

const post = (port: number, script: string, body: unknown = chat, headers: Record<string, string> = {}) => postScript(port, script, body, headers);

describe('gateway: the relay against a scripted vLLM', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  let client: OpenAI;
  before(async () => {
    up = await startScriptedUpstream((req, sock) => scripts[req.headers['x-script'] ?? 'sse']!(req, sock));
    gw = await gateway({ attachTo: up.url });
    client = gw.client();
  });
  after(() => up.close());

  test('chunks that arrive in pieces reach the client whole and in order (SDK and a framing-checking client)', async () => {
    const stream = await client.chat.completions.create({ ...chat, stream: true }, { headers: { 'x-script': 'split' } });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(text, 'Hello world');
    assert.equal(finish, 'stop');
    const r = await post(gw.port, 'split');
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(sseData(r.body), [...WORDS.map((w) => chatChunk(w)), chatChunk('', 'stop'), '[DONE]']);
  });

  test('vLLM dropping the connection mid-chunk: the client gets a complete body ending with the error event', async () => {
    const r = await post(gw.port, 'drop-mid-chunk');
    assert.equal(r.status, 200);
    const data = sseData(r.body);
    assert.equal(data[0], chatChunk('first'), 'what came whole was relayed');
    assert.ok(!r.body.includes('never whole'), 'the partial chunk was held back, not cut into the error event');
    assert.equal(data.at(-1), '[DONE]');
    assert.match(JSON.parse(data.at(-2)!).error.message, /stream from vLLM broke/);
    const stream = await client.chat.completions.create({ ...chat, stream: true }, { headers: { 'x-script': 'drop-mid-chunk' } });
    await assert.rejects(
      (async () => {
        for await (const _ of stream);
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && /broke/.test((e as Error).message),
    );
  });

  test('broken chunked framing from vLLM ends the stream with the error event', async () => {
    const r = await post(gw.port, 'bad-framing');
    const data = sseData(r.body);
    assert.equal(data[0], chatChunk('first'));
    assert.equal(data.at(-1), '[DONE]');
    assert.equal(JSON.parse(data.at(-2)!).error.code, 'engine_stream_broken');
  });

  test('a client that stops reading stops vLLM\'s writes (backpressure), and then gets every byte', async () => {
    const body = JSON.stringify(chat);
    const s = net.connect(gw.port, '127.0.0.1');
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nx-script: flood\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    s.pause();
    // Once the buffers between are full, vLLM's side stalls: the count stops moving well short of the end.
    let last = -1;
    for (let i = 0; i < 100 && FLOOD.written !== last; i++) {
      last = FLOOD.written;
      await pause(100);
    }
    assert.ok(FLOOD.written < FLOOD.chunks * 0.75, `vLLM wrote ${FLOOD.written} of ${FLOOD.chunks} events to a client that reads nothing`);
    let events = 0;
    let tail = '';
    s.on('data', (c: Buffer) => {
      const t = tail + c.toString('latin1');
      events += t.split('data: ').length - 1;
      tail = t.slice(-5); // shorter than 'data: ': a match is never counted twice
    });
    s.resume();
    await once(s, 'end');
    assert.equal(FLOOD.written, FLOOD.chunks);
    assert.equal(events, FLOOD.chunks + 1, 'every event and [DONE]');
  });

  test('a malformed response head, or one Node will not send on, is a 502 in the OpenAI envelope', async () => {
    for (const script of ['bad-head', 'bad-header-value']) {
      const r = await post(gw.port, script);
      assert.equal(r.status, 502, script);
      assert.equal(JSON.parse(r.body).error.code, 'engine_error', script);
      assert.equal(r.headers['x-odd'], undefined, script);
      assert.match(r.headers['content-type'] ?? '', /application\/json/, script);
    }
    assert.equal((await post(gw.port, 'length')).status, 200, 'and the gateway still serves');
  });

  test('length-delimited and close-delimited bodies pass unchanged', async () => {
    for (const script of ['length', 'close-delimited']) {
      const r = await post(gw.port, script);
      assert.equal(r.status, 200, script);
      assert.equal(r.body, COMPLETION, script);
      const res = await client.chat.completions.create(chat, { headers: { 'x-script': script } });
      assert.equal(res.choices[0]!.message.content, 'ok', script);
    }
    assert.equal((await post(gw.port, 'length')).headers['content-length'], String(COMPLETION.length));
  });

  test('an HTTP/1.0 client gets the stream decoded, without chunked framing', async () => {
    const body = JSON.stringify(chat);
    const text = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = net.connect(gw.port, '127.0.0.1', () =>
        s.write(`POST /v1/chat/completions HTTP/1.0\r\nhost: x\r\ncontent-type: application/json\r\nx-script: sse\r\ncontent-length: ${body.length}\r\n\r\n${body}`),
      );
      s.on('data', (c) => (got += c.toString('latin1')));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    const [head, payload] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.doesNotMatch(head, /transfer-encoding/i);
    assert.deepEqual(sseData(payload), [...WORDS.map((w) => chatChunk(w)), chatChunk('', 'stop'), '[DONE]']);
  });

  test('keep-alive: sequential requests share one connection; vLLM\'s `connection: close` is honoured; a request vLLM received is never sent again', async () => {
    const connOf = async (script: string, id: string) => {
      const r = await post(gw.port, script, chat, { 'x-request-id': id });
      return { status: r.status, body: r.body, conns: up.requests.filter((q) => q.headers['x-request-id'] === id).map((q) => q.connection) };
    };
    const a = await connOf('length', 'ka-1');
    const b = await connOf('length', 'ka-2');
    const c = await connOf('length-close', 'ka-3');
    assert.deepEqual(b.conns, a.conns, 'the second request reused the first one\'s connection');
    assert.deepEqual(c.conns, a.conns);
    const d = await connOf('length', 'ka-4');
    assert.notDeepEqual(d.conns, c.conns, 'after `connection: close` a new connection');

    // vLLM read the request, then the connection dropped: it may be generating, so it is not sent again.
    const dropped = await connOf('drop-if-reused', 'ka-5');
    assert.equal(dropped.status, 502);
    assert.equal(JSON.parse(dropped.body).error.code, 'engine_connection_lost');
    assert.deepEqual(dropped.conns, d.conns, 'sent once, on the reused connection');
    const lost = await connOf('drop-always', 'ka-6');
    assert.equal(lost.status, 502);
    assert.equal(lost.conns.length, 1);
  });

  test('UPSTREAM_TIMEOUT_SECONDS: silence before the head is a 504, in mid-stream the error event; idle connections close after 4 s', async () => {
    const quick = await gateway({ attachTo: up.url, env: { UPSTREAM_TIMEOUT_SECONDS: '1' } });
    const t0 = Date.now();
    const idle = (async () => {
      await post(quick.port, 'length', chat, { 'x-request-id': 'idle-close' });
      const conn = up.requests.find((q) => q.headers['x-request-id'] === 'idle-close')!.connection;
      await waitFor('the idle connection to close', () => up.closed.has(conn), 15_000);
      return Date.now() - t0;
    })();
    const [silent, stalled, idleMs] = await Promise.all([post(quick.port, 'silent'), post(quick.port, 'stall'), idle]);
    assert.equal(silent.status, 504);
    assert.equal(JSON.parse(silent.body).error.code, 'engine_timeout');
    const data = sseData(stalled.body);
    assert.equal(data[0], chatChunk('first'));
    assert.equal(data.at(-1), '[DONE]');
    assert.match(JSON.parse(data.at(-2)!).error.message, /vLLM sent nothing for 1 s in the middle of its response \(UPSTREAM_TIMEOUT_SECONDS\)/);
    assert.ok(idleMs >= 3500, `an idle connection lives its keep-alive time (closed after ${idleMs} ms)`);
    assert.ok(Date.now() - t0 < 12_000, 'a 1 s timeout is enforced within one 4 s period of granularity');
  });
});
