// Nothing a client sends reaches vLLM as anything but one request under /v1/ that means what the gateway
// routed: checked at the upstream, parsed by llhttp, for the audit's smuggling payloads and for thousands of
// generated requests (SEED and SMUGGLE_COUNT make longer runs).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gatewayFactory, type Gateway } from '../helpers/gateway.ts';
import { headerValues, parseStream } from '../helpers/llhttp.ts';
import { collectRaw, rawExchange } from '../helpers/net.ts';
import { prng } from '../helpers/prng.ts';
import { adminRouteHits, startRecordingUpstream, type RecordedRequest, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const gateway = gatewayFactory();

const SEED = Number(process.env.SEED ?? 20261206);
const COUNT = Number(process.env.SMUGGLE_COUNT ?? 2000);
const CLIENT_KEY = 'sk-client-0123456789';
const VLLM_KEY = 'vllm-own-key-42';

/** The audit's payloads: a request line and headers for /collective_rpc, spelled three ways. */
const SMUGGLES = [
  '/v1/models%20HTTP/1.1%0D%0Ahost:%20x%0D%0Acontent-length:%200%0D%0A%0D%0APOST%20/collective_rpc%20HTTP/1.1%0D%0Ax-pad:',
  // U+010D U+010A: their low bytes are CR LF once a head is written as latin1.
  '/v1/models%20HTTP/1.1%C4%8D%C4%8Ahost:%20x%C4%8D%C4%8Acontent-length:%200%C4%8D%C4%8A%C4%8D%C4%8APOST%20/collective_rpc%20HTTP/1.1%C4%8D%C4%8Ax-pad:',
  // U+0120: its low byte is a space.
  '/v1/models%C4%A0HTTP/1.1%C4%8D%C4%8Ahost:%C4%A0x%C4%8D%C4%8A%C4%8D%C4%8APOST%C4%A0/sleep%C4%A0HTTP/1.1%C4%8D%C4%8Ax-pad:',
];

/**
 * vLLM admin routes reached by anything but the gateway's control calls. Those are the contract's: the
 * gateway's own POST /sleep and /wake drive vLLM's (with ADMIN_TOKEN unset, any API key may call them, and
 * generated paths such as `/v1/../sleep` route there).
 */
const adminHits = (up: RecordingUpstream): RecordedRequest[] => adminRouteHits(up.relayed());

describe('gateway: a client cannot reach past /v1 (finding 1)', () => {
  let up: RecordingUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startRecordingUpstream({ apiKey: VLLM_KEY });
    gw = await gateway({ attachTo: up.url, env: { API_KEYS: CLIENT_KEY, VLLM_API_KEY: VLLM_KEY } });
  });
  after(() => up.close());

  test('an encoded CR LF, or a character whose low byte is CR, LF or space, is a 400 and adds no request upstream', async () => {
    for (const path of SMUGGLES) {
      for (const method of ['GET', 'POST']) {
        const before = up.all.length;
        const r = await rawExchange(gw.port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CLIENT_KEY}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        assert.equal(r.status, 400, `${method} ${path.slice(0, 40)}…`);
        assert.equal(JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).error.code, 'invalid_path');
        assert.deepEqual(up.all.slice(before).map((q) => q.url), [], 'nothing reached vLLM');
      }
    }
    assert.deepEqual(adminHits(up), []);
    assert.deepEqual(up.parseErrors, []);
  });

  test('methods vLLM does not speak (TRACE, WebDAV verbs) are 405 and never forwarded', async () => {
    for (const method of ['TRACE', 'PROPFIND', 'CONNECTX']) {
      const before = up.all.length;
      const r = await rawExchange(gw.port, `${method} /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CLIENT_KEY}\r\nConnection: close\r\n\r\n`);
      assert.ok([400, 405].includes(r.status), `${method}: ${r.status}`);
      assert.equal(up.all.length, before, `${method} was not forwarded`);
    }
  });

  test('a #fragment, or a query with bytes outside visible ASCII, is a 400 and never forwarded', async () => {
    for (const target of ['/v1/models#frag', '/v1/models?a=1#frag', '/v1/models?a=%0D%0Ab', '/v1/chat/completions%23x']) {
      const before = up.all.length;
      const r = await rawExchange(gw.port, `GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${CLIENT_KEY}\r\nConnection: close\r\n\r\n`);
      if (target.includes('%0D')) {
        // An encoded CR LF in a query is only data once decoded: vLLM gets it encoded, as sent.
        assert.equal(r.status, 200, target);
        assert.equal(up.all.at(-1)!.url, target);
      } else {
        assert.equal(r.status, 400, target);
        assert.equal(up.all.length, before, `${target} was not forwarded`);
      }
    }
  });
});

// ---- Generated requests ----------------------------------------------------------------------------------

const ENCODED = [
  ...Array.from({ length: 32 }, (_, i) => `%${i.toString(16).padStart(2, '0').toUpperCase()}`),
  '%7F', '%20', '%3F', '%23', '%2F', '%2f', '%2E', '%2e', '%5C', '%5c', '%25', '%C4%8A', '%C4%8D', '%C4%A0', '%C3%A9', '%E2%80%A8', '%FF',
  '%252e', '%252F', '%250D%250A', '%25252e', '%%', '%G0', '%',
];
const PLAIN = ['chat', 'completions', 'models', 'embeddings', 'x', 'a-b', 'v1', 'sleep', 'wake_up', 'collective_rpc', '..', '.', '', 'a;b', 'a"b', '{x}', 'a|b', '^', '`', 'A~z', "'", '!$&()*+,=:@'];
const RAW_PREFIX = ['/v1/', '/v1/', '/v1/', '/v1/', '//v1/', '/v1//', '/./v1/', '/v1/../v1/', '/V1/', 'http://evil.example/v1/'];
const METHODS = ['GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'];

// Each entry: the header lines one choice adds. X-Listed is hop-by-hop because a Connection header names it.
const HEADER_POOL: [string, string][][] = [
  [['X-Listed', 'hop-by-hop because Connection names it'], ['Connection', 'keep-alive, X-Listed']],
  [['Connection', 'X-Listed'], ['X-Listed', 'named before or after']],
  [['Keep-Alive', 'timeout=5']],
  [['TE', 'trailers']],
  [['Trailer', 'X-T']],
  [['Upgrade', 'h2c']],
  [['Proxy-Authorization', 'Basic Zm9vOmJhcg==']],
  [['Proxy-Connection', 'keep-alive']],
  [['Expect', '100-continue']],
  [['X_Api_Key', CLIENT_KEY]],
  [['x_forwarded_for', '10.0.0.1']],
  [['Authorization_', 'Bearer smuggled']],
  [['X-Latin1', 'caf\u00e9 na\u00efve \u00ff']],
  [['User-Agent', 'OpenAI/JS 7.60.0']],
  [['X-Custom', 'a\tb']],
  [['Cookie', 'session=1']],
  [['X-Forwarded-For', '192.0.2.1']],
  [['Host', 'other.example']],
];

interface Generated {
  id: string;
  bytes: Buffer;
  method: string;
  target: string;
}

function generate(r: ReturnType<typeof prng>, i: number): Generated {
  const segs: string[] = [];
  for (let n = 1 + r.int(4); n > 0; n--) {
    let seg = r.pick(PLAIN);
    for (let k = r.next() < 0.3 ? 1 + r.int(2) : 0; k > 0; k--) seg = r.next() < 0.5 ? seg + r.pick(ENCODED) : r.pick(ENCODED) + seg;
    segs.push(seg);
  }
  let target = r.pick(RAW_PREFIX) + segs.join('/');
  if (r.next() < 0.3) target += '?' + r.pick(['a=1', 'x=%0D%0A', 'q=%C4%8A', 'a=b&c=d', 'e=%ZZ', '']) + (r.next() < 0.2 ? r.pick(ENCODED) : '');
  if (r.next() < 0.05) target += '#frag';
  const method = r.pick(METHODS);
  const id = `prop-${i}`;
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: gw.example', `X-Request-Id: ${id}`];
  lines.push(r.next() < 0.5 ? `Authorization: Bearer ${CLIENT_KEY}` : `X-Api-Key: ${CLIENT_KEY}`);
  if (r.next() < 0.3) lines.push(`Authorization: Bearer ${CLIENT_KEY}`);
  for (let k = r.int(5); k > 0; k--) for (const h of r.pick(HEADER_POOL)) lines.push(h.join(': '));
  const body = method === 'GET' || method === 'HEAD' ? '' : JSON.stringify({ model: 'recorded', messages: [{ role: 'user', content: `m${i}` }] });
  if (body) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`);
  lines.push('Connection: close');
  return { id, bytes: Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1'), method, target };
}

// `connection` is undici's own, for its hop to vLLM: checked apart.
const HOP = new Set(['keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'x-listed']);

/** Everything a relayed request may look like at vLLM; returns what is wrong with it. */
function violations(q: RecordedRequest, upstreamHost: string, vllmKey: string | undefined): string[] {
  const out: string[] = [];
  if (!/^[\x21-\x7e]+$/.test(q.url)) out.push(`target not visible ASCII: ${JSON.stringify(q.url)}`);
  if (!q.url.startsWith('/v1/')) out.push(`target outside /v1/: ${q.url}`);
  const path = q.url.split('?')[0]!;
  let once: string;
  try {
    once = decodeURIComponent(path);
  } catch {
    once = '<undecodable>';
  }
  // vLLM decodes once: it must see a canonical path, and one that a second decoding would not change.
  if (once.includes('%') || /\/\.{1,2}(\/|$)|\/\/|\\/.test(once) || /[\x00-\x20\x7f-\uffff?#]/.test(once)) out.push(`path ${path} decodes to ${JSON.stringify(once)}`);
  if (q.url.includes('#')) out.push('fragment forwarded');
  const names = q.rawHeaders.filter((_, k) => k % 2 === 0).map((n) => n.toLowerCase());
  for (const n of names) {
    if (HOP.has(n)) out.push(`hop-by-hop header ${n}`);
    if (n.includes('_')) out.push(`underscore header ${n}`);
    if (n === 'x-api-key' || n === 'cookie2') out.push(`client credential ${n}`);
  }
  const conn = headerValues(q.rawHeaders, 'connection');
  if (conn.length > 1 || (conn.length === 1 && !/^(keep-alive|close)$/.test(conn[0]!))) out.push(`connection ${JSON.stringify(conn)}`);
  const auth = headerValues(q.rawHeaders, 'authorization');
  if (vllmKey ? auth.length !== 1 || auth[0] !== `Bearer ${vllmKey}` : auth.length !== 0) out.push(`authorization ${JSON.stringify(auth)}`);
  const hosts = headerValues(q.rawHeaders, 'host');
  if (hosts.length !== 1 || hosts[0] !== upstreamHost) out.push(`host ${JSON.stringify(hosts)}`);
  if (headerValues(q.rawHeaders, 'x-request-id').length !== 1) out.push('x-request-id not exactly once');
  if (headerValues(q.rawHeaders, 'content-length').length > 1) out.push('content-length more than once');
  return out;
}

/** The final status of the answer (after any 100 Continue), or 0 when none came. */
async function finalStatus(port: number, bytes: Buffer, method: string): Promise<number> {
  const parse = (b: Buffer, eof: boolean) => parseStream(b, { kind: 'response', methods: [method], eof });
  const { bytes: got, closed } = await collectRaw(port, bytes, { done: (b) => parse(b, false).messages.some((m) => m.complete) });
  return parse(got, closed).messages[0]?.status ?? 0;
}

for (const vllmKey of [VLLM_KEY, undefined]) {
  describe(`gateway: ${COUNT / 2} generated requests (seed ${SEED}), VLLM_API_KEY ${vllmKey ? 'set' : 'unset'}`, () => {
    let up: RecordingUpstream;
    let gw: Gateway;
    before(async () => {
      up = await startRecordingUpstream(vllmKey ? { apiKey: vllmKey } : {});
      gw = await gateway({ attachTo: up.url, env: { API_KEYS: CLIENT_KEY, ...(vllmKey ? { VLLM_API_KEY: vllmKey } : {}), LOG_LEVEL: 'warn' } });
    });
    after(() => up.close());

    test('at most one request reaches vLLM per client request, visible ASCII under /v1/, with only the headers the contract allows', async () => {
      const r = prng(SEED + (vllmKey ? 0 : 1));
      const reqs = Array.from({ length: COUNT / 2 }, (_, i) => generate(r, i));
      const statuses = new Map<number, number>();
      const problems: string[] = [];
      let next = 0;
      const worker = async () => {
        while (next < reqs.length) {
          const g = reqs[next++]!;
          const status = await finalStatus(gw.port, g.bytes, g.method);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === 0 || (status >= 500 && status !== 503)) problems.push(`${g.method} ${g.target} → ${status}`);
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      const host = new URL(up.url).host;
      const byId = new Map<string, RecordedRequest[]>();
      for (const q of up.relayed()) {
        const id = headerValues(q.rawHeaders, 'x-request-id')[0] ?? '<none>';
        byId.set(id, [...(byId.get(id) ?? []), q]);
        for (const v of violations(q, host, vllmKey)) problems.push(`${id} ${q.method} ${q.url}: ${v}`);
      }
      for (const [id, qs] of byId) if (qs.length > 1) problems.push(`${id} reached vLLM ${qs.length} times`);
      for (const g of reqs) {
        const got = byId.get(g.id);
        if (got && g.method === 'HEAD' && got[0]!.method !== 'HEAD') problems.push(`${g.id}: method changed`);
      }
      assert.deepEqual(adminHits(up), [], 'no vLLM admin route reached');
      assert.deepEqual(up.parseErrors, [], 'everything the gateway sent parsed as HTTP/1.1');
      assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems`);
      const relayed = [...byId.keys()].filter((k) => k.startsWith('prop-')).length;
      const ownCalls = adminRouteHits(up.control()).filter((q) => q.url !== '/is_sleeping').length;
      console.log(`smuggling property: ${reqs.length} requests, ${relayed} relayed, ${ownCalls} vLLM admin calls by the gateway's own /sleep and /wake; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
      assert.ok(relayed > reqs.length / 10, 'the generator reaches vLLM often enough to mean something');
      assert.equal(gw.proc.child.exitCode, null);
    });
  });
}
