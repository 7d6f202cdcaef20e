// A differential fuzz of the response side: seeded upstream responses (heads, framing, chunk sizes,
// extensions, trailers, Content-Length and Transfer-Encoding combinations), written in pieces split at random
// read boundaries, each answering the first of two pipelined client requests on one connection. llhttp, as
// Node builds it, is the reference for what the upstream bytes mean. SEED and RESPONSE_FUZZ_COUNT set longer runs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { normalizeErrorBody } from '../../src/proxy/upstream-errors.ts';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { generate, policyOf, reference, type Case } from '../helpers/fuzz-responses.ts';
import { parseStream } from '../helpers/llhttp.ts';
import { collectRaw, raw } from '../helpers/net.ts';
import { prng } from '../helpers/prng.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';

const gateway = gatewayFactory();
const SEED = Number(process.env.SEED ?? 20261206);
const COUNT = Number(process.env.RESPONSE_FUZZ_COUNT ?? 2000);

const SSE_ERROR_TAIL = /data: \{"error":\{[^\n]*\}\}\n\ndata: \[DONE\]\n\n$/;

describe(`gateway: ${COUNT} seeded upstream responses (seed ${SEED}), each to two pipelined requests`, () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  const cases = new Map<number, Case>();
  before(async () => {
    up = await startScriptedUpstream(async (req, sock) => {
      if (req.headers['x-script'] === 'plain') {
        const text = JSON.stringify({ marker: req.headers['x-marker'] });
        sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\n\r\n${text}`);
        return;
      }
      const c = cases.get(Number(req.headers['x-case']))!;
      for (const p of c.pieces) {
        if (sock.destroyed) return;
        sock.write(p);
        await new Promise((r) => setImmediate(r));
      }
      if (c.needsEof) sock.end();
    });
    gw = await gateway({ attachTo: up.url, env: { UPSTREAM_TIMEOUT_SECONDS: '2', LOG_LEVEL: 'warn' } });
  });
  after(() => up.close());

  test('llhttp-refused bytes never reach a client in a 2xx; accepted bodies arrive equal; the second request gets its own answer', async () => {
    const r = prng(SEED);
    const all = Array.from({ length: COUNT }, (_, i) => generate(r, i));
    for (const c of all) cases.set(c.id, c);
    const problems: string[] = [];
    const tally = { passed: 0, refusedByPolicy: 0, brokenMidway: 0, refusedBroken: 0 };
    const body = '{"model":"m"}';
    const request = (headers: string) => `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${headers}content-length: ${body.length}\r\n\r\n${body}`;
    let next = 0;
    const worker = async () => {
      while (next < all.length) {
        const c = all[next++]!;
        const ref = reference(c);
        const marker = `second-${c.id}`;
        const bytes = request(`x-case: ${c.id}\r\n`) + request(`x-script: plain\r\nx-marker: ${marker}\r\n`);
        const done = (b: Buffer) => parseStream(b, { kind: 'response' }).messages.filter((m) => m.complete).length >= 2;
        const got = await collectRaw(gw.port, bytes, { done, timeoutMs: 8000 });
        const strict = parseStream(got.bytes, { kind: 'response', eof: got.closed });
        const lenient = parseStream(got.bytes, { kind: 'response', eof: got.closed, lenient: true });
        const shape = (p: typeof strict) => p.messages.map((m) => `${m.status}/${m.complete}/${m.body.length}`).join(' ');
        const where = `case ${c.id} (${JSON.stringify(c.bytes.toString('latin1').slice(0, 90))})`;
        if (shape(strict) !== shape(lenient)) problems.push(`${where}: strict ${shape(strict)} ≠ lenient ${shape(lenient)}`);
        // A connection closed in the middle of an answer is how a client learns that a body was cut.
        const cut = strict.error === 'HPE_INVALID_EOF_STATE' && strict.messages.at(-1)?.complete === false;
        if (strict.error && !cut) problems.push(`${where}: the client's bytes are not valid HTTP/1.1 (${strict.error})`);
        // Bytes after vLLM's message end are never an answer (in a body read until close they are body).
        if (strict.messages.length > 2 || strict.messages.some((m) => m.body.toString() === 'INJECTED')) problems.push(`${where}: stray upstream bytes became an answer`);
        const [first, second] = strict.messages;
        if (!first) {
          problems.push(`${where}: no answer (closed ${got.closed})`);
          continue;
        }
        if (second) {
          if (!second.complete || !second.body.toString().includes(`"marker":"${marker}"`)) problems.push(`${where}: the second request got ${second.body.toString().slice(0, 80)}`);
        } else if (first.complete) problems.push(`${where}: the second request got no answer after a complete first one`);
        const firstBody = first.body.toString('latin1');
        if (ref.ok) {
          const m = ref.message!;
          if (first.status === m.status && first.complete) {
            const want = m.status >= 400 ? normalizeErrorBody(m.status, m.body.toString('utf8')) : m.body.toString('latin1');
            const have = m.status >= 400 ? first.body.toString('utf8') : firstBody;
            if (have !== want) problems.push(`${where}: body ${JSON.stringify(have.slice(0, 80))} ≠ ${JSON.stringify(want.slice(0, 80))}`);
            else tally.passed++;
          } else if (first.status === 502 && policyOf(c, m).length) {
            tally.refusedByPolicy++;
          } else {
            problems.push(`${where}: llhttp read ${m.status}, the client got ${first.status} (complete ${first.complete}) ${firstBody.slice(0, 100)}`);
          }
        } else if (first.status >= 200 && first.status < 300) {
          // Refused bytes: the client may have the part before the error, never what follows, and it can tell.
          const prefix = ref.message?.body.toString('latin1') ?? '';
          const kept = firstBody.replace(SSE_ERROR_TAIL, '');
          if (!prefix.startsWith(kept)) problems.push(`${where}: a 2xx carried bytes llhttp refused: ${JSON.stringify(kept.slice(prefix.length > 40 ? prefix.length - 40 : 0, 120))}`);
          else if (first.complete && kept === firstBody) problems.push(`${where}: a broken body (${ref.error}) looked complete to the client`);
          else tally.brokenMidway++;
        } else {
          tally.refusedBroken++;
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    console.log(`response fuzz: ${JSON.stringify(tally)}`);
    assert.deepEqual(problems.slice(0, 15), [], `${problems.length} problems`);
    assert.equal((await raw(`${gw.url}/health`)).status, 200, 'the gateway is still up');
    assert.equal(gw.proc.child.exitCode, null);
    assert.ok(tally.passed > COUNT / 4 && tally.brokenMidway + tally.refusedBroken > COUNT / 20, 'the cases cover both sides');
  });
});
