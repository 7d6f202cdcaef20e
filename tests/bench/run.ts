// `npm run bench`: the gateway (compiled, attach mode) against nginx and a direct connection, side by side,
// interleaved, on loopback, each figure the median of several rounds with min–max. Prints a table of
// figures and ratios, and writes the results as JSON (bench-results/) for comparing runs.
//
//   npm run bench [-- --rounds 3] [-- --quick] [-- --only plain]   (--only: scenarios whose name starts so)
//   BENCH_BASELINE=/path/to/other/checkout npm run bench    (also measures that checkout's built gateway,
//                                                            as `baseline`: before and after in one run)
import { execSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addedMs, formatVerdicts, judge, median, roundRatios, type Samples } from './targets.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const QUICK = flag('--quick');
const ROUNDS = opt('--rounds', QUICK ? 1 : 3);
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
// Paced streams last 50 chunks (5 s), like a short real answer: with 10-chunk streams the per-chunk figure
// was mostly each stream's set-up (two connections, one request), which the per-request figures measure.
type Sizes = { paced: number; pacedTokens: number; fast: number; fastTokens: number; idle: number; plain: Record<1 | 32 | 256, number> };
const QUICK_SIZES: Sizes = { paced: 200, pacedTokens: 5, fast: 64, fastTokens: 100, idle: 50, plain: { 1: 300, 32: 1000, 256: 1000 } };
const SIZES: Sizes = QUICK ? QUICK_SIZES : { paced: 1000, pacedTokens: 50, fast: 256, fastTokens: 200, idle: 200, plain: { 1: 1000, 32: 4000, 256: 4000 } };
const PROBES = QUICK ? 10 : 30; // sequential probe streams while the paced streams are all open
const PLAIN_SLICES = 4; // full runs: non-streaming requests in four slices per target and round (see Scenario)
const CLK_TCK = Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
const DEADLINE = Date.now() + 15 * 60_000; // the whole run is bounded

// ---- processes --------------------------------------------------------------------------------

const children: ChildProcess[] = [];
function cleanup(): void {
  for (const c of children) {
    try {
      process.kill(c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.on('exit', cleanup);
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => process.exit(130));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`${url} not up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function run(cmd: string, argv: string[], env: Record<string, string> = {}): ChildProcess {
  // Standard output to /dev/null, like nginx's access log: read here, every line of the gateway's access log
  // would be work for the load client, which is this process.
  const c = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(c);
  let err = '';
  c.stderr!.on('data', (d) => (err = (err + d).slice(-2000)));
  c.once('exit', (code) => {
    if (code && code !== 0 && !exiting) console.error(`${cmd} exited ${code}: ${err}`);
  });
  return c;
}
let exiting = false;

function ensureNginx(): string | undefined {
  const found = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].find((p) => fs.existsSync(p));
  if (found) return found;
  if (process.getuid?.() === 0 && fs.existsSync('/usr/bin/apt-get')) {
    console.log('installing nginx (Debian package nginx-light) for the reference figures…');
    const r = spawnSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light'], { stdio: 'ignore' });
    if (r.status === 0 && fs.existsSync('/usr/sbin/nginx')) return '/usr/sbin/nginx';
  }
  console.log('nginx not available: figures against nginx are left out');
  return undefined;
}

async function startNginx(bin: string, upstreamPort: number): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-nginx-'));
  // One process (master_process off) so its CPU is the whole proxy's CPU; buffering off, keep-alive upstream.
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log /dev/null;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream vllm { server 127.0.0.1:${upstreamPort}; keepalive 512; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    keepalive_requests 100000;
    location / {
      proxy_pass http://vllm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
    }
  }
}`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const proc = run(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
  await waitHttp(`http://127.0.0.1:${port}/health`);
  return { proc, port };
}

function productionNodeFlags(): string[] {
  const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(fs.readFileSync(path.join(ROOT, 'hf-space/Dockerfile'), 'utf8'));
  const argv = cmd ? (JSON.parse(cmd[1]!) as string[]) : [];
  return argv.filter((a) => a.startsWith('--'));
}

/**
 * CPU time of a process, all its threads: the scheduler's run time (ns) where the kernel has schedstat, else
 * utime + stime in clock ticks. Ticks are 10 ms: nginx's 1000 requests at concurrency 1 were 7–22 ticks,
 * so a per-request ratio moved by a third on rounding alone.
 */
function cpuMs(pid: number): number {
  try {
    let ns = 0;
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        /* the thread just ended: its time is lost either way */
      }
    }
    if (ns > 0) return ns / 1e6;
  } catch {
    /* no schedstat: ticks below */
  }
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

// ---- load -------------------------------------------------------------------------------------

/** What the gateway is compared with, besides a direct connection. */
const REFERENCES = ['nginx', 'node-min', 'node-raw', 'baseline'] as const;
const BASELINE = process.env.BENCH_BASELINE;

interface Target {
  name: 'direct' | 'gateway' | 'nginx' | 'node-min' | 'node-raw' | 'baseline';
  port: number;
  pid?: number; // the proxy process whose CPU and memory are measured
}

// The load's keep-alive agent: a new one for every scenario and target, destroyed when the scenario ends
// (the round loop hands them out). Idle sockets left from an earlier scenario might be closed by a server
// with a 5 s keep-alive (the upstream, node-min) just as they are reused.
const newAgent = () => new http.Agent({ keepAlive: true, maxSockets: Infinity });
let agent = newAgent();
let failures = 0;

interface StreamResult {
  ttfbMs: number;
  events: number;
}

function oneStream(port: number, tokens: number, gapMs: number, onFirst?: () => void): Promise<StreamResult> {
  const body = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'hi' }], max_tokens: tokens, stream: true });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-bench-chunk-ms': String(gapMs) } },
      (res) => {
        let ttfb = -1;
        let events = 0;
        let tail = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => {
          if (ttfb < 0) {
            ttfb = performance.now() - t0;
            onFirst?.();
          }
          const s = tail + c;
          let i = -1;
          while ((i = s.indexOf('\n\n', i + 1)) >= 0) events++;
          tail = s.slice(-1);
        });
        res.on('end', () => resolve({ ttfbMs: ttfb, events }));
        res.on('error', () => (failures++, resolve({ ttfbMs: ttfb, events })));
      },
    );
    req.on('error', () => (failures++, resolve({ ttfbMs: -1, events: 0 })));
    req.end(body);
  });
}

function onePlain(port: number): Promise<void> {
  const body = '{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":1}';
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) failures++;
          resolve();
        });
      },
    );
    req.on('error', () => (failures++, resolve()));
    req.end(body);
  });
}

type Figures = Record<string, number>;

/** n streams at once, `gap` ms between chunks: proxy CPU per 10k chunks, TTFB under load, RSS with all open. */
async function paced(t: Target, n: number, tokens: number, gap: number): Promise<Figures> {
  const cpu0 = t.pid ? cpuMs(t.pid) : 0;
  let opened = 0;
  let rss = 0;
  const allOpen = new Promise<void>((resolve) => {
    const check = () => {
      if (++opened === n) resolve();
    };
    void Promise.all(Array.from({ length: n }, () => oneStream(t.port, tokens, gap, check))).then(done);
    function done(rs: StreamResult[]) {
      results = rs;
    }
  });
  let results: StreamResult[] | undefined;
  await allOpen;
  if (t.pid) rss = rssMb(t.pid);
  // A new stream's wait while the n are open and flowing: the probes run one after another, each a
  // one-token stream, well inside the n streams' 5 s (their CPU, under 0.5 % of the scenario's, is counted).
  const probes: number[] = [];
  for (let i = 0; i < PROBES && !results; i++) probes.push((await oneStream(t.port, 1, 0)).ttfbMs);
  while (!results) await new Promise((r) => setTimeout(r, 10));
  const cpu = t.pid ? cpuMs(t.pid) - cpu0 : 0;
  const events = results.reduce((a, r) => a + r.events, 0);
  const expected = n * (tokens + 3);
  return {
    cpu_ms_per_10k_chunks: (cpu / events) * 10_000,
    ttfb_under_load_ms: median(results.map((r) => r.ttfbMs).filter((x) => x >= 0)),
    ttfb_probe_while_open_ms: median(probes.filter((x) => x >= 0)),
    rss_mb_all_open: rss,
    chunks_delivered: events,
    chunks_expected: expected,
  };
}

async function fast(t: Target, n: number, tokens: number): Promise<Figures> {
  const cpu0 = t.pid ? cpuMs(t.pid) : 0;
  const w0 = performance.now();
  const rs = await Promise.all(Array.from({ length: n }, () => oneStream(t.port, tokens, 0)));
  const wall = performance.now() - w0;
  const cpu = t.pid ? cpuMs(t.pid) - cpu0 : 0;
  const events = rs.reduce((a, r) => a + r.events, 0);
  return { cpu_ms_per_10k_chunks: (cpu / events) * 10_000, chunks_per_s: events / (wall / 1000), chunks_delivered: events, chunks_expected: n * (tokens + 3) };
}

async function idleTtfb(t: Target, count: number): Promise<Figures> {
  const ttfbs: number[] = [];
  for (let i = 0; i < count; i++) ttfbs.push((await oneStream(t.port, 1, 0)).ttfbMs);
  return { ttfb_idle_ms: median(ttfbs.filter((x) => x >= 0)) };
}

/** One slice of non-streaming requests: its figures add up across slices (see `plainFigures`). */
async function plainSlice(t: Target, concurrency: number, total: number): Promise<Figures> {
  const cpu0 = t.pid ? cpuMs(t.pid) : 0;
  const w0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) await onePlain(t.port);
    }),
  );
  return { cpu_ms: t.pid ? cpuMs(t.pid) - cpu0 : 0, wall_ms: performance.now() - w0, requests: total };
}

const plainFigures = (c: number, sum: Figures): Figures => ({
  [`cpu_us_per_request_c${c}`]: (sum.cpu_ms! * 1000) / sum.requests!,
  [`requests_per_s_c${c}`]: sum.requests! / (sum.wall_ms! / 1000),
  failed_requests: sum.failed_requests ?? 0,
});

const REST_QUIET_MS = QUICK ? 1000 : 5000;
const REST_WINDOW_MS = QUICK ? 1000 : 3000;
const REST = `rest: no traffic for ${REST_WINDOW_MS / 1000} s`;

/**
 * What each proxy costs while nobody calls it (a gateway whose GPU sleeps should be quiet too): every proxy
 * measured over the same window, after a quiet spell long enough for the last scenario's keep-alive
 * connections (4–5 s) to have closed, so that their closing is not counted as rest.
 */
async function atRest(targets: Target[]): Promise<Array<[Target, Figures]>> {
  await new Promise((r) => setTimeout(r, REST_QUIET_MS));
  const measured = targets.filter((t) => t.pid);
  const cpu0 = measured.map((t) => cpuMs(t.pid!));
  await new Promise((r) => setTimeout(r, REST_WINDOW_MS));
  return measured.map((t, i) => [t, { at_rest_cpu_ms_per_s: ((cpuMs(t.pid!) - cpu0[i]!) * 1000) / REST_WINDOW_MS }]);
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist/main.js'))) throw new Error('run `npm run build` first (npm run bench does)');
  const upPort = await freePort();
  const up = run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tests/bench/upstream.ts'), String(upPort)]);
  await waitHttp(`http://127.0.0.1:${upPort}/health`);

  const gwPort = await freePort();
  // The Node flags production runs with (the Space's CMD); GATEWAY_NODE_FLAGS overrides them to compare V8 settings.
  const gwFlags = process.env.GATEWAY_NODE_FLAGS !== undefined ? process.env.GATEWAY_NODE_FLAGS.split(' ').filter(Boolean) : productionNodeFlags();
  const gw = run(process.execPath, [...gwFlags, path.join(ROOT, 'dist/main.js')], {
    PORT: String(gwPort),
    HOST: '127.0.0.1',
    VLLM_URL: `http://127.0.0.1:${upPort}`,
    LOG_LEVEL: 'info',
    WARMUP_ON_WAKE: 'false',
  });
  await waitHttp(`http://127.0.0.1:${gwPort}/health`);

  const targets: Target[] = [
    { name: 'direct', port: upPort },
    { name: 'gateway', port: gwPort, pid: gw.pid! },
  ];
  if (BASELINE) {
    const main = path.join(path.resolve(BASELINE), 'dist/main.js');
    if (!fs.existsSync(main)) throw new Error(`BENCH_BASELINE: no ${main} (run npm ci and npm run build there)`);
    const port = await freePort();
    const base = run(process.execPath, [...gwFlags, main], { PORT: String(port), HOST: '127.0.0.1', VLLM_URL: `http://127.0.0.1:${upPort}`, LOG_LEVEL: 'info', WARMUP_ON_WAKE: 'false' });
    await waitHttp(`http://127.0.0.1:${port}/health`);
    targets.push({ name: 'baseline', port, pid: base.pid! });
  }
  const nginxBin = ensureNginx();
  if (nginxBin) {
    const ng = await startNginx(nginxBin, upPort);
    targets.push({ name: 'nginx', port: ng.port, pid: ng.proc.pid! });
  }
  void up;
  const nodeReference = async (name: Target['name'], script: string) => {
    const port = await freePort();
    const proc = run(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tests/bench', script), String(port), `http://127.0.0.1:${upPort}`]);
    await waitHttp(`http://127.0.0.1:${port}/health`);
    targets.push({ name, port, pid: proc.pid! });
  };
  // The thinnest possible Node HTTP relay, as a floor for what any Node gateway can cost.
  await nodeReference('node-min', 'min-proxy.ts');
  // Below any HTTP relay: bytes piped between two sockets, what a Node relay costs with no parsing at all.
  await nodeReference('node-raw', 'raw-relay.ts');

  /**
   * A scenario runs `slices` times per target and round, the targets taking turns slice by slice, and its
   * figures are summed over the slices, then `finish`ed. Non-streaming requests are sliced: a run of 1000
   * takes under a second, so a slow spell of the machine fell on whichever target ran then. Its host's steal
   * time tracked the gateway's CPU per request at concurrency 1, run after run on one process (34 → 167
   * ticks of steal, 350 → 567 µs per request); in slices, every target gets its share of such a spell.
   */
  type Scenario = [name: string, run: (t: Target) => Promise<Figures>, slices: number, finish: (sum: Figures) => Figures];
  const asIs = (f: Figures) => f;
  const scenariosOf = (z: Sizes, slices: number): Scenario[] => {
    const all: Scenario[] = [
      [`paced: ${z.paced} streams × ${z.pacedTokens} chunks at 100 ms`, (t) => paced(t, z.paced, z.pacedTokens, 100), 1, asIs],
      [`fast: ${z.fast} streams × ${z.fastTokens} chunks, full speed`, (t) => fast(t, z.fast, z.fastTokens), 1, asIs],
      [`idle: ${z.idle} sequential streams`, (t) => idleTtfb(t, z.idle), 1, asIs],
      ...([1, 32, 256] as const).map(
        (c): Scenario => [`plain: non-streaming at concurrency ${c}`, (t) => plainSlice(t, c, z.plain[c] / slices), slices, (sum) => plainFigures(c, sum)],
      ),
    ];
    return all.filter(([name]) => !ONLY || name.startsWith(ONLY));
  };
  const scenarios = scenariosOf(SIZES, QUICK ? 1 : PLAIN_SLICES);
  if (!scenarios.length && !(ONLY && REST.startsWith(ONLY))) throw new Error(`--only ${ONLY}: no scenario's name starts so (rest, paced, fast, idle, plain)`);

  // Warm-up, not measured: every scenario once at the quick sizes, in the order of a round, for every target.
  // With a short warm-up (200 requests), the first round's run at concurrency 1 came right after the first
  // streams and still compiled its code: 31 % of the gateway's CPU samples in that phase were TurboFan's
  // threads (4 % in round 2), and the round cost 702 µs per request against 339 µs in round 2.
  for (const [, fn] of scenariosOf(QUICK_SIZES, 1)) {
    for (const t of targets) {
      agent = newAgent();
      await fn(t);
      agent.destroy();
    }
  }
  console.log('warm-up done (one quick round, not measured)');

  const samples: Samples = {};
  const record = (scenario: string, t: Target, figs: Figures) => {
    for (const [k, v] of Object.entries(figs)) ((samples[scenario] ??= {})[k] ??= {})[t.name] = [...(samples[scenario]![k]![t.name] ?? []), v];
  };
  for (let round = 1; round <= ROUNDS; round++) {
    if (!ONLY || REST.startsWith(ONLY)) for (const [t, figs] of await atRest(targets)) record(REST, t, figs);
    for (const [name, fn, slices, finish] of scenarios) {
      const order = round % 2 ? targets : [...targets].reverse();
      // One agent per target for the whole scenario: its keep-alive connections serve slice after slice.
      const agents = new Map(order.map((t) => [t, newAgent()]));
      const sums = new Map<Target, Figures>();
      for (let slice = 0; slice < slices; slice++) {
        for (const t of slice % 2 ? [...order].reverse() : order) {
          if (Date.now() > DEADLINE) throw new Error('benchmark exceeded its 15 minute bound');
          agent = agents.get(t)!;
          failures = 0;
          const figs: Figures = { ...(await fn(t)), failed_requests: failures };
          const sum = sums.get(t) ?? {};
          for (const [k, v] of Object.entries(figs)) sum[k] = (sum[k] ?? 0) + v;
          sums.set(t, sum);
        }
      }
      for (const a of agents.values()) a.destroy();
      for (const t of order) record(name, t, finish(sums.get(t)!));
    }
    console.log(`round ${round}/${ROUNDS} done`);
  }

  const stats = (xs: number[] | undefined) => (xs?.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) } : undefined);
  const fmt = (s: ReturnType<typeof stats>) => (s ? `${s.median.toFixed(s.median < 10 ? 2 : 0)} [${s.min.toFixed(s.min < 10 ? 2 : 0)}–${s.max.toFixed(s.max < 10 ? 2 : 0)}]` : '–');
  const rows: Record<string, unknown>[] = [];
  console.log(`\nvllm-gateway benchmark — gateway flags: ${gwFlags.join(' ') || '(none)'}`);
  console.log(`vllm-gateway benchmark — ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), Node ${process.version}, ${ROUNDS} round(s), median [min–max]\n`);
  for (const [scenario, metrics] of Object.entries(samples)) {
    console.log(scenario);
    for (const [metric, byTarget] of Object.entries(metrics)) {
      const d = stats(byTarget.direct);
      const g = stats(byTarget.gateway);
      const n = stats(byTarget.nginx);
      const isCpuOrRss = metric.startsWith('cpu') || metric.startsWith('rss');
      let ratio = '';
      if (g && n && n.median > 0) ratio += `  gateway/nginx ${(g.median / n.median).toFixed(2)}×`;
      // Each round measures the targets back to back, so a round's ratio is immune to the machine's slow
      // spells that move a whole round: the median of those ratios is the steadier figure.
      const perRound = (other: string) => {
        const rs = roundRatios(byTarget.gateway, byTarget[other]);
        return rs.length > 1 ? ` ${median(rs).toFixed(2)}× [${Math.min(...rs).toFixed(2)}–${Math.max(...rs).toFixed(2)}]` : '';
      };
      if (isCpuOrRss && ROUNDS > 1) {
        ratio += `; per round: ${REFERENCES.filter((k) => byTarget[k]).map((k) => `/${k}${perRound(k)}`).join(', ')}`;
      }
      if (metric.startsWith('ttfb') && d && g) {
        // Each round's difference to the direct connection, as the targets judge it.
        const addG = addedMs(byTarget.gateway, byTarget.direct);
        ratio += `  added (per round): gateway ${addG.toFixed(2)} ms`;
        if (n) {
          const addN = addedMs(byTarget.nginx, byTarget.direct);
          ratio += `, nginx ${addN.toFixed(2)} ms (${addN > 0 ? (addG / addN).toFixed(2) : '∞'}×)`;
        }
      } else if (!isCpuOrRss && d && g && d.median > 0) ratio += `  gateway/direct ${(g.median / d.median).toFixed(2)}×`;
      const cells = [...(isCpuOrRss ? [] : ['direct']), 'gateway', ...REFERENCES]
        .filter((k) => byTarget[k])
        .map((k) => `${k} ${fmt(stats(byTarget[k]))}`);
      console.log(`  ${metric.padEnd(26)} ${cells.join('  ')}${ratio}`);
      rows.push({ scenario, metric, direct: d, gateway: g, nginx: n, node_min: stats(byTarget['node-min']), node_raw: stats(byTarget['node-raw']), baseline: stats(byTarget.baseline), samples: byTarget });
    }
  }
  // The targets are set for the full sizes: a quick run's small counts are not judged.
  const verdicts = QUICK ? [] : judge(samples);
  console.log('');
  if (QUICK) console.log('targets: judged on full runs only (not --quick)');
  else for (const line of formatVerdicts(verdicts)) console.log(line);
  const outDir = path.join(ROOT, 'bench-results');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), node: process.version, cpus: os.cpus().length, rounds: ROUNDS, quick: QUICK, gateway_flags: gwFlags, rows, targets: verdicts }, null, 2));
  console.log(`\nresults written to ${path.relative(ROOT, file)}`);
}

main()
  .then(() => {
    exiting = true;
    process.exit(0);
  })
  .catch((e) => {
    exiting = true;
    console.error(e);
    process.exit(1);
  });
