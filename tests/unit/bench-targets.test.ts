import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatVerdicts, judge, type Samples } from '../../tests/bench/targets.ts';

const PACED = 'paced: 1000 streams × 50 chunks at 100 ms';
const IDLE = 'idle: 200 sequential streams';

test('ratios are judged round by round against nginx, not from the medians of each', () => {
  // The machine slows down in round 2 for everyone: the medians (300 vs 150 → 2×) hide that the gateway
  // stayed at 1.5× nginx in each round.
  const samples: Samples = { [PACED]: { cpu_ms_per_10k_chunks: { gateway: [150, 600, 300], nginx: [100, 400, 200], 'node-raw': [250, 900, 500] } } };
  const [v] = judge(samples, [{ label: 'cpu', scenarios: ['paced'], metric: 'cpu_ms_per_10k_chunks', rule: { kind: 'ratio', max: 2 } }]);
  assert.equal(v!.results.gateway!.value, 1.5);
  assert.equal(v!.results.gateway!.met, true);
  assert.equal(v!.results['node-raw']!.value, 2.5);
  assert.equal(v!.results['node-raw']!.met, false);
  assert.equal(v!.results['node-min'], undefined, 'a reference that did not run is not judged');
});

test('added time: the median of the per-round differences to the direct connection', () => {
  const samples: Samples = { [PACED]: { ttfb_under_load_ms: { direct: [100, 300, 120], gateway: [140, 420, 190], nginx: [110, 310, 130] } } };
  const [v] = judge(samples, [{ label: 'burst', scenarios: ['paced'], metric: 'ttfb_under_load_ms', rule: { kind: 'added', maxMs: 50 } }]);
  assert.equal(v!.results.gateway!.value, 70); // differences 40, 120, 70
  assert.equal(v!.results.gateway!.met, false);
});

test('added over nginx\'s added: a proxy that adds nothing passes even when nginx adds nothing; anything else cannot', () => {
  const rule = { label: 'idle', scenarios: ['idle'], metric: 'ttfb_idle_ms', rule: { kind: 'added-ratio' as const, max: 1.5 } };
  const within = judge({ [IDLE]: { ttfb_idle_ms: { direct: [0.2, 0.2, 0.2], gateway: [0.35, 0.32, 0.34], nginx: [0.3, 0.3, 0.3] } } }, [rule])[0]!;
  assert.ok(Math.abs(within.results.gateway!.value - 1.4) < 1e-9);
  assert.equal(within.results.gateway!.met, true);
  const zero = judge({ [IDLE]: { ttfb_idle_ms: { direct: [0.2, 0.2, 0.2], gateway: [0.3, 0.3, 0.3], nginx: [0.2, 0.19, 0.2], 'node-raw': [0.2, 0.2, 0.2] } } }, [rule])[0]!;
  assert.equal(zero.results.gateway!.value, Infinity);
  assert.equal(zero.results.gateway!.met, false);
  assert.equal(zero.results['node-raw']!.met, true);
});

test('lossless: every round of every named scenario, chunks and failed requests', () => {
  const fast = 'fast: 256 streams × 200 chunks, full speed';
  const samples: Samples = {
    [PACED]: { chunks_delivered: { gateway: [53000, 53000], 'node-min': [53000, 52990] }, chunks_expected: { gateway: [53000, 53000], 'node-min': [53000, 53000] }, failed_requests: { gateway: [0, 0], 'node-min': [0, 0] } },
    [fast]: { chunks_delivered: { gateway: [51968, 51968], 'node-min': [51968, 51968] }, chunks_expected: { gateway: [51968, 51968], 'node-min': [51968, 51968] }, failed_requests: { gateway: [0, 1], 'node-min': [0, 0] } },
  };
  const [v] = judge(samples, [{ label: 'lossless', scenarios: ['paced', 'fast'], metric: 'chunks_delivered', rule: { kind: 'lossless' } }]);
  assert.equal(v!.results.gateway!.figure, '0 lost, 1 failed');
  assert.equal(v!.results.gateway!.met, false);
  assert.equal(v!.results['node-min']!.figure, '10 lost, 0 failed');
});

test('what cannot be judged says why; a miss that node-raw shares is named as below the Node floor', () => {
  const vs = judge({ [PACED]: { cpu_ms_per_10k_chunks: { gateway: [300] }, ttfb_under_load_ms: { direct: [100], gateway: [300], 'node-raw': [200] } } });
  const byLabel = Object.fromEntries(vs.map((v) => [v.target, v]));
  assert.equal(byLabel['CPU per chunk, 1000 streams at 100 ms']!.unjudged, 'nginx not measured');
  assert.equal(byLabel['CPU per request, concurrency 32']!.unjudged, 'scenario not run');
  const lines = formatVerdicts(vs);
  const burst = lines.find((l) => l.includes('1000 streams at once'))!;
  assert.match(burst, /gateway 200 ms ✗ {3}node-raw 100 ms ✗ {2}\(node-raw misses it too/);
  assert.ok(lines.some((l) => /CPU per chunk, 1000 streams.*not judged: nginx not measured/.test(l)));
});
