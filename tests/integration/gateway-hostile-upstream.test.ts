// What a broken or hostile vLLM can send, byte for byte, and what the gateway's clients must (not) see: one
// regression test per finding of the relay audit (issue 17). The upstream is scripted on a raw socket; the
// clients read with llhttp, strict and lenient, and must agree on where every message ends.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { GATEWAY_MAIN, gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { parseStream, type ParseResult } from '../helpers/llhttp.ts';
import { collectRaw, postJson, raw, rawExchange, sseData } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { startProcess } from '../helpers/procs.ts';
import { chatChunk, postScript, SSE_HEAD, sseChunk, startScriptedUpstream, type Script, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { ROOT } from '../helpers/sim.ts';

const gateway = gatewayFactory();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

const answer = (marker: string) =>
  JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion', created: 1, model: 'scripted', marker, choices: [{ index: 0, message: { role: 'assistant', content: marker }, finish_reason: 'stop' }] });
const lengthAnswer = (marker = 'ok', extra = '') => {
  const body = answer(marker);
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
};
/** A complete response whose body, read by a peer that trusts the wrong length, is a second response. */
const INJECTED = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\nINJECTED';
const frame = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;

const BIG = { size: 32 * 1024 * 1024, written: 0, closedAt: -1 };
const HUGE = { size: 64 * 1024 * 1024, written: 0, closedEarly: false };

/** Resolves when the socket can take more, or is gone (events.once would reject on its 'error'). */
function writable(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}

async function writeAll(sock: net.Socket, total: number, piece: Buffer, track: { written: number }): Promise<boolean> {
  track.written = 0;
  while (track.written < total && !sock.destroyed) {
    const n = Math.min(piece.length, total - track.written);
    track.written += n;
    if (!sock.write(n === piece.length ? piece : piece.subarray(0, n))) await writable(sock);
  }
  return !sock.destroyed;
}

const scripts: Record<string, Script> = {
  plain: (req, sock) => void sock.write(lengthAnswer(req.headers['x-marker'] ?? 'plain')),
  // Finding 2: an error response whose head Node will not send.
  'err-del': (_r, sock) => void sock.write('HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nx-bad: a\x7fb\r\ncontent-length: 2\r\n\r\n{}'),
  'err-nul': (_r, sock) => void sock.write('HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-bad: a\x00b\r\ncontent-length: 2\r\n\r\n{}'),
  'err-cr': (_r, sock) => void sock.write('HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-bad: a\rb\r\ncontent-length: 2\r\n\r\n{}'),
  // Finding 3: bodies not framed by their Content-Length.
  'te-cl': (_r, sock) => void sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n${frame('{}' + INJECTED)}0\r\n\r\n`),
  'te-identity-cl': (_r, sock) => void sock.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\n{}${INJECTED}`),
  'cl-dup': (_r, sock) => void sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\ncontent-length: ${2 + INJECTED.length}\r\n\r\n{}${INJECTED}`),
  'cl-comma': (_r, sock) => void sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2, ${2 + INJECTED.length}\r\n\r\n{}${INJECTED}`),
  // Finding 4: chunk framing llhttp refuses, after a first good chunk.
  'chunk-space': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + `${(20).toString(16)}  \r\n${'data: SECONDSECOND\n\n'}\r\n0\r\n\r\n`),
  'chunk-junk': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + `${(20).toString(16)}zz\r\n${'data: SECONDSECOND\n\n'}\r\n0\r\n\r\n`),
  'chunk-ext-ctl': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + `${(20).toString(16)};a=\x01\r\n${'data: SECONDSECOND\n\n'}\r\n0\r\n\r\n`),
  'chunk-ext-lf': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + `${(20).toString(16)};a\nb\r\n${'data: SECONDSECOND\n\n'}\r\n0\r\n\r\n`),
  'trailer-lf': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + sseChunk('[DONE]') + '0\r\nx-trailer: a\nSECONDSECOND: b\r\n\r\n'),
  'trailer-cl': (_r, sock) => void sock.write(SSE_HEAD + sseChunk(chatChunk('first')) + sseChunk('[DONE]') + `0\r\ncontent-length: ${INJECTED.length}\r\n\r\n`),
  // Finding 5: a reused connection that vLLM drops after reading the request.
  'drop-if-reused': (req, sock) => void (req.onConnection > 1 ? sock.destroy() : sock.write(lengthAnswer('first-on-connection'))),
  // Finding 6: one 32 MiB chunk, written as fast as the gateway takes it.
  'big-chunk': async (_r, sock) => {
    BIG.closedAt = -1;
    sock.once('close', () => (BIG.closedAt = BIG.written));
    sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n${BIG.size.toString(16)}\r\n`);
    if (await writeAll(sock, BIG.size, Buffer.alloc(1 << 20, 'b'), BIG)) sock.write('\r\n0\r\n\r\n');
  },
  // Finding 7: a 64 MiB answer to /inference.
  'huge-json': async (_r, sock) => {
    HUGE.closedEarly = false;
    const head = '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"';
    const tail = '"},"finish_reason":"stop"}]}';
    sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${head.length + HUGE.size + tail.length}\r\n\r\n${head}`);
    if (await writeAll(sock, HUGE.size, Buffer.alloc(1 << 20, 'h'), HUGE)) sock.write(tail);
    else HUGE.closedEarly = true;
  },
  // Finding 8: bytes after a complete response, in the same read or while the connection is idle.
  'stray-same-read': (_r, sock) => void sock.write(lengthAnswer('stray-host') + INJECTED),
  'stray-later': async (_r, sock) => {
    sock.write(lengthAnswer('stray-host'));
    await pause(30);
    sock.write(INJECTED);
  },
  // Finding 9.
  '101': (_r, sock) => void sock.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'),
  '099': (_r, sock) => void sock.write('HTTP/1.1 099 Odd\r\n\r\n' + lengthAnswer('after-099')),
  '103': (_r, sock) => void sock.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n' + lengthAnswer('after-103')),
  'gzip-chunked': (_r, sock) => void sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n${frame('\x1f\x8b\x08\x00gzipped')}0\r\n\r\n`),
  'huge-head': (_r, sock) => {
    let head = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n';
    for (let i = 0; i < 3000; i++) head += `x-h${i}: v\r\n`;
    sock.write(`${head}content-length: 2\r\n\r\n{}`);
  },
  '204-cl': (_r, sock) => void sock.write('HTTP/1.1 204 No Content\r\ncontent-length: 6\r\n\r\n'),
  '205-body': (_r, sock) => void sock.write('HTTP/1.1 205 Reset Content\r\ncontent-length: 6\r\n\r\n"EVIL"'),
  'slow-sse': async (_r, sock) => {
    sock.write(SSE_HEAD);
    for (let i = 0; i < 20 && !sock.destroyed; i++) {
      sock.write(sseChunk(chatChunk(`n${i}`)));
      await pause(100);
    }
    if (!sock.destroyed) sock.write(sseChunk('[DONE]') + '0\r\n\r\n');
  },
  flood: async (_r, sock) => {
    sock.write(SSE_HEAD);
    const event = Buffer.from(sseChunk('x'.repeat(1000)));
    for (let i = 0; i < 64_000 && !sock.destroyed; i++) if (!sock.write(event)) await writable(sock);
    if (!sock.destroyed) sock.write(sseChunk('[DONE]') + '0\r\n\r\n');
  },
};

const chat = { model: 'scripted', messages: [{ role: 'user' as const, content: 'x' }] };
const chatBody = JSON.stringify(chat);
const requestBytes = (script: string, extra = '') =>
  `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-script: ${script}\r\n${extra}content-length: ${Buffer.byteLength(chatBody)}\r\n\r\n${chatBody}`;

/** Two pipelined requests on one connection, read by a strict and a lenient llhttp that must agree. */
async function pipelined(port: number, first: string, second = 'plain'): Promise<{ strict: ParseResult; bytes: Buffer }> {
  const req = requestBytes(first) + requestBytes(second, 'x-marker: second-answer\r\n');
  const done = (b: Buffer) => parseStream(b, { kind: 'response' }).messages.filter((m) => m.complete).length >= 2;
  const { bytes, closed } = await collectRaw(port, req, { done, timeoutMs: 10_000 });
  const strict = parseStream(bytes, { kind: 'response', eof: closed });
  const lenient = parseStream(bytes, { kind: 'response', eof: closed, lenient: true });
  const shape = (r: ParseResult) => r.messages.map((m) => `${m.status} ${m.complete} ${m.body.toString('latin1')}`);
  assert.deepEqual(shape(lenient), shape(strict), `${first}: a strict and a lenient parser read the same messages`);
  assert.equal(strict.error, undefined, `${first}: the client's bytes are valid HTTP/1.1 (${strict.error})`);
  return { strict, bytes };
}

const post = (port: number, script: string) => postScript(port, script, chat);

describe('gateway: a hostile vLLM cannot break the gateway or a client\'s connection', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startScriptedUpstream((req, sock) => {
      const name = req.headers['x-script'] ?? (req.body.includes('huge-json') ? 'huge-json' : 'plain');
      return scripts[name]!(req, sock);
    });
    gw = await gateway({ attachTo: up.url, env: { CLIENT_STALL_TIMEOUT_SECONDS: '1', UPSTREAM_TIMEOUT_SECONDS: '3' } });
  });
  after(() => up.close());

  test('finding 2: an error response with NUL, DEL or a bare CR in a header is a 502 Bad Gateway, and the gateway stays up', async () => {
    for (const script of ['err-del', 'err-nul', 'err-cr']) {
      const r = await rawExchange(gw.port, requestBytes(script, 'connection: close\r\n'));
      assert.match(r.text, /^HTTP\/1\.1 502 Bad Gateway\r\n/, `${script}: ${JSON.stringify(r.text.slice(0, 60))}`);
      assert.doesNotMatch(r.text, /x-bad/i, script);
      assert.equal(JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).error.code, 'engine_error', script);
      assert.equal(gw.proc.child.exitCode, null, `${script}: the gateway is still running`);
    }
    assert.equal((await post(gw.port, 'plain')).status, 200);
  });

  test('finding 3: a body not framed by its Content-Length never reaches a client with that length; the next pipelined answer is its own', async () => {
    for (const script of ['te-cl', 'te-identity-cl', 'cl-dup', 'cl-comma']) {
      const { strict, bytes } = await pipelined(gw.port, script);
      assert.ok(!bytes.includes('INJECTED'), `${script}: the smuggled response never reaches the client`);
      assert.equal(strict.messages.length, 2, `${script}: two answers for two requests`);
      assert.equal(strict.messages[0]!.status, 502, script);
      assert.equal(JSON.parse(strict.messages[1]!.body.toString()).marker, 'second-answer', `${script}: the second request gets its own answer`);
    }
  });

  test('finding 4: chunk framing llhttp refuses is never forwarded; the stream ends with the error event', async () => {
    for (const script of ['chunk-space', 'chunk-junk', 'chunk-ext-ctl', 'chunk-ext-lf']) {
      const r = await post(gw.port, script);
      assert.equal(r.status, 200, script);
      assert.ok(!r.body.includes('SECOND'), `${script}: nothing after the bad framing is relayed`);
      const data = sseData(r.body);
      assert.equal(data[0], chatChunk('first'), script);
      assert.equal(data.at(-1), '[DONE]', script);
      assert.equal(JSON.parse(data.at(-2)!).error.code, 'engine_stream_broken', script);
      await pipelined(gw.port, script);
    }
    for (const script of ['trailer-lf', 'trailer-cl']) {
      const { bytes } = await pipelined(gw.port, script);
      assert.ok(!bytes.includes('SECONDSECOND') && !bytes.includes(`content-length: ${INJECTED.length}`), `${script}: vLLM's trailers never reach the client`);
    }
  });

  test('finding 5: a POST whose bytes reached vLLM is never sent again, even on a reused connection dropped before any answer', async () => {
    await post(gw.port, 'drop-if-reused'); // opens the connection, then leaves it idle for reuse
    const before = up.requests.length;
    const r = await post(gw.port, 'drop-if-reused');
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, 'engine_connection_lost');
    assert.equal(up.requests.length - before, 1, 'vLLM received the request once');
  });

  test('finding 6: one 32 MiB chunk streams through in pieces, not held whole, and with backpressure', async () => {
    // A reading client gets the chunk's first bytes while vLLM is still writing it.
    const reader = net.connect(gw.port, '127.0.0.1');
    reader.write(requestBytes('big-chunk', 'connection: close\r\n'));
    let head = '';
    const writtenAtFirstByte = await new Promise<number>((resolve) => {
      const onData = (c: Buffer) => {
        head += c.toString('latin1');
        const at = head.indexOf('\r\n\r\n');
        if (at >= 0 && head.length > at + 4 + 16) {
          reader.off('data', onData);
          resolve(BIG.written);
        }
      };
      reader.on('data', onData);
    });
    reader.destroy();
    assert.ok(writtenAtFirstByte < BIG.size / 2, `the client's first body bytes came after vLLM wrote ${writtenAtFirstByte >> 20} MiB of the chunk`);
    await waitFor('vLLM to see the reader gone', () => BIG.closedAt >= 0, 10_000);

    // A client that reads nothing stops vLLM's writes well short of the end.
    const s = net.connect(gw.port, '127.0.0.1');
    s.write(requestBytes('big-chunk', 'connection: close\r\n'));
    s.pause();
    await waitFor('vLLM to start writing', () => BIG.written > 0, 10_000);
    let last = -1;
    for (let i = 0; i < 100 && BIG.written !== last; i++) {
      last = BIG.written;
      await pause(300);
    }
    assert.ok(BIG.written < BIG.size / 2, `vLLM wrote ${BIG.written >> 20} MiB of one 32 MiB chunk to a client that reads nothing`);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.resume();
    await once(s, 'close');
    const res = parseStream(Buffer.concat(chunks), { kind: 'response', eof: true });
    assert.equal(res.error, undefined);
    assert.equal(res.messages[0]!.body.length, BIG.size, 'every byte arrived, framed right');
  });

  test('finding 7: /inference stops reading an answer past its cap: 502, and vLLM\'s connection is cut', async () => {
    const r = await postJson(`${gw.url}/inference`, { prompt: 'huge-json' });
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, 'engine_response_too_large');
    await waitFor('vLLM to see its connection closed', () => HUGE.closedEarly || HUGE.written === HUGE.size, 10_000);
    assert.ok(HUGE.closedEarly, `the gateway read ${HUGE.written >> 20} MiB of a 64 MiB answer`);
  });

  test('finding 8: bytes after a complete response never become the answer to the next request', async () => {
    for (const script of ['stray-same-read', 'stray-later']) {
      assert.equal(JSON.parse((await post(gw.port, script)).body).marker, 'stray-host', script);
      await pause(60);
      for (let i = 0; i < 5; i++) {
        const r = await post(gw.port, 'plain');
        assert.equal(r.status, 200, script);
        assert.equal(JSON.parse(r.body).marker, 'plain', `${script}: request ${i} gets its own answer`);
      }
    }
  });

  test('finding 9: 101 and statuses under 100 are 502, 1xx hints are skipped, gzip transfer coding is refused, a huge head is refused', async () => {
    for (const [script, status] of [['101', 502], ['099', 502], ['gzip-chunked', 502], ['huge-head', 502]] as const) {
      const r = await rawExchange(gw.port, requestBytes(script, 'connection: close\r\n'), { timeoutMs: 5000 });
      assert.equal(r.status, status, `${script}: ${JSON.stringify(r.text.slice(0, 80))}`);
      assert.doesNotMatch(r.text, /gzipped|x-h2999/, script);
    }
    const hinted = await post(gw.port, '103');
    assert.equal(hinted.status, 200);
    assert.equal(JSON.parse(hinted.body).marker, 'after-103');
  });

  test('finding 9: a client that stops reading is cut after CLIENT_STALL_TIMEOUT_SECONDS, counted as a client stall, not a vLLM timeout', async () => {
    const metric = async (re: RegExp) => Number(re.exec((await raw(`${gw.url}/metrics`)).body)?.[1] ?? 0);
    const timeouts0 = await metric(/^gateway_upstream_errors_total\{kind="timeout"\} (\d+)/m);
    const s = net.connect(gw.port, '127.0.0.1');
    s.on('error', () => {});
    s.write(requestBytes('flood', 'x-request-id: stalled-client\r\n'));
    s.pause();
    const t0 = Date.now();
    const line = JSON.parse((await gw.proc.waitOutput(/\{[^\n]*"request_id":"stalled-client"[^\n]*\}/, 10_000))[0]);
    const ms = Date.now() - t0;
    assert.equal(line.upstream_error, 'client_stalled');
    assert.ok(ms < 10_000, `cut after ${ms} ms`);
    // Once it reads again, the client finds its connection closed and its answer incomplete.
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.resume();
    await once(s, 'close');
    const res = parseStream(Buffer.concat(got), { kind: 'response', eof: true });
    assert.equal(res.messages[0]?.complete, false, 'the client can tell its answer was cut');
    assert.equal(await metric(/^gateway_client_stalls_total (\d+)/m), 1);
    assert.equal(await metric(/^gateway_upstream_errors_total\{kind="timeout"\} (\d+)/m), timeouts0, 'not counted as a vLLM timeout');
  });

  test('no content for 204, 205 and 304: vLLM\'s length and body never reach the client', async () => {
    for (const [script, status] of [['204-cl', 204], ['205-body', 205]] as const) {
      const { strict, bytes } = await pipelined(gw.port, script);
      assert.equal(strict.messages[0]!.status, status, script);
      assert.equal(strict.messages[0]!.body.length, 0, script);
      assert.ok(!/content-length: 6/i.test(bytes.toString('latin1')) && !bytes.includes('EVIL'), `${script}: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
    }
  });

  test('bad bytes pipelined behind a stream in progress end the connection; no answer is written into the stream', async () => {
    const s = net.connect(gw.port, '127.0.0.1');
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => {});
    s.write(requestBytes('slow-sse'));
    await waitFor('the first event', () => Buffer.concat(got).includes('n1'), 5000);
    s.write('BROKEN\x01 REQUEST\r\n\r\n');
    await once(s, 'close');
    const text = Buffer.concat(got).toString('latin1');
    assert.equal(text.split('HTTP/1.1 ').length - 1, 1, `one response head only: ${JSON.stringify(text.slice(-200))}`);
    const res = parseStream(Buffer.concat(got), { kind: 'response', eof: true });
    assert.equal(res.messages[0]?.complete, false, 'the stream was cut, and the client can tell');
    assert.ok(res.error === undefined || res.error === 'HPE_INVALID_EOF_STATE', `the client's bytes stay valid HTTP/1.1 (${res.error})`);
  });

  test('headers the gateway writes itself are its own: vLLM\'s Content-Length is never copied when the body is not length-framed', async () => {
    const r = await post(gw.port, 'plain');
    assert.equal(r.headers['content-length'], String(Buffer.byteLength(answer('plain'))));
    assert.equal(r.headers['transfer-encoding'], undefined);
  });
});

describe('gateway: configuration that would put a non-ASCII byte on the wire', () => {
  test('finding 9: VLLM_API_KEY with a character outside visible ASCII stops the gateway at start (exit 2)', async () => {
    const p = startProcess(process.execPath, ['--import', 'tsx', GATEWAY_MAIN], { VLLM_URL: 'http://127.0.0.1:9', VLLM_API_KEY: 'ключ', PORT: '0' }, ROOT);
    const exited = await Promise.race([p.exited, pause(10_000).then(() => null)]);
    p.kill();
    assert.equal(exited?.code, 2, 'exit 2 at start');
    assert.match(p.output(), /VLLM_API_KEY/);
  });
});

// The SDK sees every one of these as an error it can handle, never a hang or a silently short answer.
describe('gateway: the openai SDK against a hostile vLLM', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startScriptedUpstream((req, sock) => scripts[req.headers['x-script'] ?? 'plain']!(req, sock));
    gw = await gateway({ attachTo: up.url });
  });
  after(() => up.close());

  test('bad framing mid-stream raises an APIError from the error event; a refused head is an InternalServerError (502)', async () => {
    const client = gw.client();
    const stream = await client.chat.completions.create({ ...chat, stream: true }, { headers: { 'x-script': 'chunk-junk' } });
    await assert.rejects(
      (async () => {
        for await (const _ of stream);
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && /broke/.test((e as Error).message),
    );
    await assert.rejects(client.chat.completions.create(chat, { headers: { 'x-script': 'err-del' } }), (e: unknown) => e instanceof OpenAI.InternalServerError && (e as InstanceType<typeof OpenAI.APIError>).status === 502);
  });
});
