import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkedFramingError, ChunkedScanner, frameChunk, LAST_CHUNK } from '../../src/proxy/chunked.ts';
import { framingOf, headEnd, parseHead, ResponseHeadError } from '../../src/proxy/response-head.ts';

const sse = (s: string) => frameChunk(`data: ${s}\n\n`);
const wire = sse('{"a":1}') + sse('{"b":2}') + frameChunk('data: [DONE]\n\n') + LAST_CHUNK;

/** Feeds `bytes` in pieces of `size` and returns what a raw relay would write, piece by piece. */
function relayRaw(bytes: Buffer, size: number): { writes: Buffer[]; done: boolean } {
  const sc = new ChunkedScanner();
  const writes: Buffer[] = [];
  let held: Buffer | null = null;
  for (let i = 0; i < bytes.length && !sc.done; i += size) {
    const piece = bytes.subarray(i, i + size);
    const at = sc.scan(piece);
    if (at === 0) {
      held = held ? Buffer.concat([held, piece]) : piece;
      continue;
    }
    writes.push(held ? Buffer.concat([held, piece.subarray(0, at)]) : piece.subarray(0, at));
    held = at === piece.length || sc.done ? null : piece.subarray(at);
  }
  return { writes, done: sc.done };
}

test('chunked: every split of a stream gives back the same bytes, cut only after whole chunks', () => {
  const bytes = Buffer.from(wire, 'latin1');
  for (const size of [1, 2, 3, 5, 7, 16, 33, bytes.length]) {
    const { writes, done } = relayRaw(bytes, size);
    assert.ok(done, `size ${size}: the end is found`);
    assert.equal(Buffer.concat(writes).toString('latin1'), wire, `size ${size}: nothing lost or added`);
    for (const w of writes) {
      // Each write is a run of whole chunks: a fresh scanner reads it to a boundary at its very end.
      const fresh = new ChunkedScanner();
      assert.equal(fresh.scan(w), w.length, `size ${size}: ${JSON.stringify(w.toString('latin1'))} ends on a chunk boundary`);
    }
  }
});

test('chunked: decoding gives the payloads; extensions and trailers are skipped; bytes after the end are not read', () => {
  const body = Buffer.from('5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nEXTRA', 'latin1');
  const sc = new ChunkedScanner();
  const parts: string[] = [];
  const at = sc.scan(body, 0, (d) => parts.push(d.toString('latin1')));
  assert.equal(parts.join(''), 'hello world');
  assert.ok(sc.done);
  assert.equal(body.toString('latin1', at), 'EXTRA');
  sc.reset();
  assert.equal(sc.done, false);
  assert.equal(sc.scan(Buffer.from('A\r\n0123456789\r\n0\r\n\r\n')), 20, 'upper-case hex');
  assert.ok(sc.done);
});

test('chunked: malformed framing is an error, not a guess', () => {
  for (const bad of ['zz\r\n', '\r\n', '5\r\nhelloXX', '5\nhello', '1234567890abc\r\n', '0\r\nx\r']) {
    const sc = new ChunkedScanner();
    assert.throws(() => sc.scan(Buffer.from(bad + 'Z')), ChunkedFramingError, JSON.stringify(bad));
  }
});

test('response head: status, repeated headers, keep-alive, and the body framing', () => {
  const raw = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nTransfer-Encoding: chunked\r\n\r\nbody', 'latin1');
  const end = headEnd(raw);
  assert.equal(raw.toString('latin1', end), 'body');
  const head = parseHead(raw, end);
  assert.equal(head.status, 200);
  assert.equal(head.closes, false);
  assert.equal(head.headers['content-type'], 'text/event-stream');
  assert.deepEqual(head.headers['set-cookie'], ['a=1', 'b=2']);
  assert.deepEqual(framingOf('POST', head), { kind: 'chunked' });
  assert.deepEqual(framingOf('HEAD', head), { kind: 'none' });

  const h = (s: string) => parseHead(Buffer.from(s + '\r\n\r\n'), s.length + 4);
  assert.equal(headEnd(Buffer.from('HTTP/1.1 200 OK\r\nA: b\r\n')), -1, 'incomplete');
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 200 OK\r\ncontent-length: 12')), { kind: 'length', length: 12 });
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 200 OK\r\ncontent-length: 0')), { kind: 'none' });
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 204 No Content')), { kind: 'none' });
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 200 OK')), { kind: 'close' }, 'no length: until the connection closes');
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip')), { kind: 'close' });
  assert.deepEqual(framingOf('POST', h('HTTP/1.1 200 OK\r\ncontent-length: 5, 5')), { kind: 'length', length: 5 });
  assert.throws(() => framingOf('POST', h('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6')), ResponseHeadError);
  assert.throws(() => framingOf('POST', h('HTTP/1.1 200 OK\r\ncontent-length: -1')), ResponseHeadError);
  assert.equal(h('HTTP/1.1 200 OK\r\nConnection: close').closes, true);
  assert.equal(h('HTTP/1.0 200 OK').closes, true);
  assert.equal(h('HTTP/1.0 200 OK\r\nconnection: keep-alive').closes, false);
  assert.equal(h('HTTP/1.1 503').status, 503, 'the reason phrase is optional');
  assert.throws(() => h('HTTP/2 200 OK'), ResponseHeadError);
  assert.throws(() => h('HTTP/1.1 200 OK\r\nno colon here'), ResponseHeadError);
  assert.throws(() => h('HTTP/1.1 200 OK\r\nbad name: x'), ResponseHeadError);
});
