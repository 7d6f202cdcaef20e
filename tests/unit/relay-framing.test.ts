import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frameChunk } from '../../src/proxy/forward.ts';
import { EventBoundary, lastEventEnd } from '../../src/proxy/sse-events.ts';
import { parseStream } from '../helpers/llhttp.ts';

test('frameChunk: one chunk of chunked framing that llhttp reads back as the data', () => {
  for (const size of [1, 15, 16, 255, 4096, 70_000]) {
    const data = Buffer.alloc(size, 'x');
    const wire = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'), frameChunk(data), Buffer.from('0\r\n\r\n')]);
    const res = parseStream(wire, { kind: 'response' });
    assert.equal(res.error, undefined, `size ${size}`);
    assert.equal(res.messages[0]!.body.length, size);
  }
});

test('lastEventEnd: just past the last empty line, across chunk boundaries, for LF and CRLF line ends', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  assert.equal(lastEventEnd(b('data: a\n\ndata: b\n\n'), -1, -1), 18);
  assert.equal(lastEventEnd(b('data: a\n\ndata: b'), -1, -1), 9);
  assert.equal(lastEventEnd(b('data: a\r\n\r\n'), -1, -1), 11);
  assert.equal(lastEventEnd(b('data: a'), -1, -1), -1);
  assert.equal(lastEventEnd(b('\ndata'), 10, 97), 1, 'the empty line began in the previous chunk');
  assert.equal(lastEventEnd(b('\r\nx'), 10, 97), 2);
  assert.equal(lastEventEnd(b('\nx'), 13, 10), 1);
  assert.equal(lastEventEnd(b('a\nb\n'), -1, -1), -1, 'line ends without an empty line end no event');
});

test('EventBoundary: every split of a stream lets through the same bytes, only ever whole events', () => {
  const stream = Buffer.from('data: {"a":1}\n\ndata: {"b":2}\r\n\r\n: comment\n\ndata: [DONE]\n\n', 'latin1');
  for (let size = 1; size <= stream.length; size++) {
    const eb = new EventBoundary(1 << 20);
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i += size) {
      const got = eb.push(stream.subarray(i, i + size));
      if (got) {
        assert.ok(/\n\r?\n$/.test(got.toString('latin1')), `size ${size}: ${JSON.stringify(got.toString('latin1'))} ends an event`);
        out.push(got);
      }
    }
    assert.equal(eb.flush(), null, `size ${size}: nothing left held`);
    assert.equal(Buffer.concat(out).toString('latin1'), stream.toString('latin1'), `size ${size}`);
  }
});

test('EventBoundary: an unfinished event is held up to the limit, then passed on as it comes', () => {
  const eb = new EventBoundary(10);
  assert.equal(eb.push(Buffer.from('data: 1234')), null);
  assert.equal(eb.push(Buffer.from('5')!)?.toString(), 'data: 12345');
  assert.equal(eb.push(Buffer.from('67'))?.toString(), '67');
  const held = new EventBoundary(100);
  held.push(Buffer.from('data: x\n\ndata: half'));
  assert.equal(held.flush()?.toString(), 'data: half');
});
