// The commands the README gives, run as a newcomer would: `npm start` (twice at once in one checkout) and
// `npm run demo`, each reporting the Node the project pins.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { freePort, raw } from '../helpers/net.ts';
import { waitFor } from '../helpers/poll.ts';
import { descendants, pgidOf } from '../helpers/gateway.ts';
import { killAllStarted, killQuietly, startProcess } from '../helpers/procs.ts';
import { ROOT, startSim } from '../helpers/sim.ts';

// npm starts the gateway, and the gateway starts vLLM (the simulator) in a process group of its own:
// those groups are remembered while they run, and killed with the rest.
const childGroups = new Set<number>();
function rememberGroups(root: number): void {
  for (const pid of descendants(root)) {
    const g = pgidOf(pid);
    if (g && g !== root) childGroups.add(g);
  }
}
after(() => {
  killAllStarted();
  for (const g of childGroups) killQuietly(-g, 'SIGKILL');
});

const pinnedMajor = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { devDependencies: { node: string } }).devDependencies.node.split('.')[0]!;

/** The `node` field of the gateway's "listening" log line. */
async function nodeVersionOf(proc: ReturnType<typeof startProcess>): Promise<string> {
  const line = await proc.waitOutput(/\{[^\n]*vllm-gateway listening[^\n]*\}|vllm-gateway listening[^\n]*/, 60_000);
  const m = /"?node"?[:=]\s*"?(v\d+\.\d+\.\d+)/.exec(line[0]);
  assert.ok(m, `a node version in ${line[0]}`);
  return m[1]!;
}

test('npm start: two at the same moment in one checkout both come up, on the pinned Node', { timeout: 180_000 }, async () => {
  const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stderr);
  const sim = await startSim();
  const ports = [await freePort(), await freePort()];
  const procs = ports.map((port) => startProcess('npm', ['start'], { PORT: String(port), HOST: '127.0.0.1', VLLM_URL: sim.url, LOG_LEVEL: 'info' }, ROOT));
  for (const [i, port] of ports.entries()) {
    await waitFor(`gateway ${i} ready`, async () => JSON.parse((await raw(`http://127.0.0.1:${port}/health`)).body).status === 'ready', 60_000);
    assert.equal((await nodeVersionOf(procs[i]!)).split('.')[0], `v${pinnedMajor}`);
  }
  assert.ok(fs.existsSync(path.join(ROOT, 'dist/main.js')), 'start ran the compiled build');
  assert.deepEqual(fs.readdirSync(ROOT).filter((f) => f.startsWith('dist.')), [], 'no build directory left behind');
});

test('npm run demo: the gateway and the simulator come up on the pinned Node, the simulator on a free port', { timeout: 120_000 }, async () => {
  const port = await freePort();
  const demo = startProcess('npm', ['run', 'demo'], { PORT: String(port), VLLM_SIM_LOAD_SECONDS: '0.2' }, ROOT);
  await waitFor('demo ready', async () => JSON.parse((await raw(`http://127.0.0.1:${port}/health`)).body).status === 'ready', 60_000);
  rememberGroups(demo.pid);
  assert.equal((await nodeVersionOf(demo)).split('.')[0], `v${pinnedMajor}`);
  // A newcomer reads the start: one line per event, vLLM's route list left out.
  const start = (await demo.waitOutput(/[\s\S]*engine starting → ready[^\n]*\n/, 10_000))[0]
    .split('\n')
    .filter((l) => l && !l.includes('INFO: request {')); // the access log of this test's own polling
  assert.ok(start.length <= 25, `${start.length} lines until ready:\n${start.join('\n')}`);
  assert.ok(!start.some((l) => l.includes('Route: ')), 'no per-route lines');
  const backend = JSON.parse((await raw(`http://127.0.0.1:${port}/backend`)).body);
  assert.notEqual(new URL(backend.vllm_url).port, '8000', 'not the default 8000, which a workstation may have taken');
});
