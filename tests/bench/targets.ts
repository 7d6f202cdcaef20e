// The performance targets of the benchmark (issue 8), judged from one run's samples. Pure: run.ts feeds it
// what it measured and prints the verdicts. Each target is judged for the gateway and, by the same rule,
// for the two Node references: a target that even `node-raw` (no HTTP at all) misses on this machine is
// below what any Node relay can do here, which the verdict says.

/** samples[scenario][metric][target] = one figure per round, in round order. */
export type Samples = Record<string, Record<string, Record<string, number[]>>>;

export type Rule =
  /** The proxy's figure over nginx's, per round (both measured back to back), median of the rounds. */
  | { kind: 'ratio'; max: number }
  /** Time added over the direct connection in the same round, median of the rounds, in ms. */
  | { kind: 'added'; maxMs: number }
  /** The added time over nginx's added time, each the median of its per-round differences. */
  | { kind: 'added-ratio'; max: number }
  /** The figure itself, median of the rounds. */
  | { kind: 'value'; max: number; unit: string }
  /** Every expected chunk delivered, no failed request, in every round. */
  | { kind: 'lossless' };

export interface Target {
  label: string;
  /** Scenarios whose name starts so (a lossless target may span several). */
  scenarios: string[];
  metric: string;
  rule: Rule;
}

export const TARGETS: Target[] = [
  { label: 'CPU per chunk, 1000 streams at 100 ms', scenarios: ['paced'], metric: 'cpu_ms_per_10k_chunks', rule: { kind: 'ratio', max: 2 } },
  { label: 'CPU per chunk, 256 streams at full speed', scenarios: ['fast'], metric: 'cpu_ms_per_10k_chunks', rule: { kind: 'ratio', max: 2 } },
  { label: 'added time to first chunk, idle', scenarios: ['idle'], metric: 'ttfb_idle_ms', rule: { kind: 'added-ratio', max: 1.5 } },
  { label: 'added time to first chunk, 1000 streams at once', scenarios: ['paced'], metric: 'ttfb_under_load_ms', rule: { kind: 'added', maxMs: 50 } },
  ...([1, 32, 256] as const).map(
    (c): Target => ({ label: `CPU per request, concurrency ${c}`, scenarios: [`plain: non-streaming at concurrency ${c}`], metric: `cpu_us_per_request_c${c}`, rule: { kind: 'ratio', max: 4 } }),
  ),
  { label: 'RSS with 1000 streams open', scenarios: ['paced'], metric: 'rss_mb_all_open', rule: { kind: 'value', max: 100, unit: 'MB' } },
  { label: 'chunks lost, requests failed', scenarios: ['paced', 'fast'], metric: 'chunks_delivered', rule: { kind: 'lossless' } },
];

export const JUDGED = ['gateway', 'node-min', 'node-raw', 'baseline'] as const;

export interface Verdict {
  target: string;
  limit: string;
  /** Per proxy: its figure (formatted) and whether it meets the target; absent where it was not measured. */
  results: Partial<Record<(typeof JUDGED)[number], { figure: string; value: number; met: boolean }>>;
  /** Why nothing could be judged (a reference missing, the scenario not run). */
  unjudged?: string;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

/** Round-by-round pairs of two targets' figures, where both were measured. */
function paired(a: number[] | undefined, b: number[] | undefined, f: (x: number, y: number) => number): number[] {
  if (!a || !b) return [];
  return a.map((x, i) => (i < b.length ? f(x, b[i]!) : NaN)).filter(Number.isFinite);
}

/** One proxy's figure over another's, round by round (both measured back to back in each round). */
export const roundRatios = (mine: number[] | undefined, other: number[] | undefined): number[] => paired(mine, other, (x, y) => (y > 0 ? x / y : NaN));

/** Time a proxy added over the direct connection: the median of the rounds' differences. */
export const addedMs = (mine: number[] | undefined, direct: number[] | undefined): number => median(paired(mine, direct, (x, y) => x - y));

const limitOf = (r: Rule): string =>
  r.kind === 'ratio' ? `≤ ${r.max}× nginx` : r.kind === 'added' ? `≤ ${r.maxMs} ms added` : r.kind === 'added-ratio' ? `≤ ${r.max}× nginx's added` : r.kind === 'value' ? `≤ ${r.max} ${r.unit}` : '0 lost, 0 failed';

const num = (x: number) => (Math.abs(x) >= 10 ? x.toFixed(0) : x.toFixed(2));

export function judge(samples: Samples, targets: Target[] = TARGETS): Verdict[] {
  const scenarioOf = (prefix: string) => Object.keys(samples).find((s) => s.startsWith(prefix));
  return targets.map((t) => {
    const v: Verdict = { target: t.label, limit: limitOf(t.rule), results: {} };
    const names = t.scenarios.map(scenarioOf);
    if (names.some((n) => !n)) return { ...v, unjudged: 'scenario not run' };
    const m = samples[names[0]!]![t.metric];
    if (!m) return { ...v, unjudged: `no ${t.metric} figure` };
    const r = t.rule;
    if ((r.kind === 'ratio' || r.kind === 'added-ratio') && !m.nginx) return { ...v, unjudged: 'nginx not measured' };
    if ((r.kind === 'added' || r.kind === 'added-ratio') && !m.direct) return { ...v, unjudged: 'direct not measured' };
    const ngxAdded = r.kind === 'added-ratio' ? addedMs(m.nginx, m.direct) : NaN;
    if (r.kind === 'added-ratio') v.limit += ` (${num(ngxAdded)} ms)`;
    for (const who of JUDGED) {
      const mine = m[who];
      if (!mine?.length) continue;
      let value: number;
      let figure: string;
      let met: boolean;
      switch (r.kind) {
        case 'ratio':
          value = median(roundRatios(mine, m.nginx));
          figure = `${value.toFixed(2)}×`;
          met = value <= r.max;
          break;
        case 'added':
          value = addedMs(mine, m.direct);
          figure = `${num(value)} ms`;
          met = value <= r.maxMs;
          break;
        case 'added-ratio': {
          const own = addedMs(mine, m.direct);
          // nginx adding nothing measurable: no finite multiple of it can be met, unless the proxy adds nothing either.
          value = ngxAdded > 0 ? own / ngxAdded : own <= 0 ? 0 : Infinity;
          figure = `${num(own)} ms (${Number.isFinite(value) ? value.toFixed(2) : '∞'}×)`;
          met = value <= r.max;
          break;
        }
        case 'value':
          value = median(mine);
          figure = `${num(value)} ${r.unit}`;
          met = value <= r.max;
          break;
        case 'lossless': {
          let lost = 0;
          let failed = 0;
          for (const n of names) {
            const s = samples[n!]!;
            const got = s.chunks_delivered?.[who] ?? [];
            const want = s.chunks_expected?.[who] ?? [];
            got.forEach((g, i) => (lost += Math.max(0, (want[i] ?? g) - g)));
            for (const f of s.failed_requests?.[who] ?? []) failed += f;
          }
          value = lost + failed;
          figure = `${lost} lost, ${failed} failed`;
          met = value === 0;
          break;
        }
      }
      v.results[who] = { figure, value, met };
    }
    return v;
  });
}

/** The verdicts as lines for the terminal. */
export function formatVerdicts(vs: Verdict[]): string[] {
  const lines = ['targets (issue 8; the same rule applied to the Node references):'];
  for (const v of vs) {
    const head = `  ${v.target.padEnd(48)} ${v.limit.padEnd(31)}`;
    if (v.unjudged) {
      lines.push(`${head} not judged: ${v.unjudged}`);
      continue;
    }
    const cells = JUDGED.filter((w) => v.results[w]).map((w) => `${w} ${v.results[w]!.figure} ${v.results[w]!.met ? '✓' : '✗'}`);
    const g = v.results.gateway;
    const raw = v.results['node-raw'];
    const floor = g && !g.met && raw && !raw.met ? '  (node-raw misses it too: below what a Node relay does here)' : '';
    lines.push(`${head} ${cells.join('   ')}${floor}`);
  }
  return lines;
}
