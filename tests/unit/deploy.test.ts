// The deployment files cannot be run here (no Docker engine, no cluster): their invariants are checked by parsing.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ROOT } from '../helpers/sim.ts';

const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

/** The contract's variables, as listed in .env.example, plus the platform's own. */
const CONTRACT_VARS = new Set(
  read('.env.example')
    .split('\n')
    .map((l) => /^([A-Z_]+)=/.exec(l)?.[1])
    .filter((v): v is string => Boolean(v)),
);
const PLATFORM_VARS = new Set(['HF_TOKEN', 'TINI_SUBREAPER']);

/** Dockerfile instructions, continuation lines joined. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const i = l.indexOf(' ');
      return { op: l.slice(0, i).toUpperCase(), args: l.slice(i + 1).trim() };
    });
}

const GRACE_MARGIN_S = 5;

test('the image\'s own shutdown defaults fit Docker\'s default 10 s stop timeout (the Space gets no documented grace)', () => {
  const env = Object.fromEntries(
    dockerInstructions(read('hf-space/Dockerfile'))
      .filter((i) => i.op === 'ENV')
      .flatMap((i) => i.args.split(/\s+/).map((kv) => kv.split('=') as [string, string])),
  );
  const drain = Number(env.DRAIN_TIMEOUT_SECONDS);
  const stop = Number(env.ENGINE_STOP_TIMEOUT_SECONDS);
  // The drain, the moment the gateway gives error events to flush after it (1 s), and vLLM's stop.
  assert.ok(drain + 1 + stop <= 9, `drain ${drain} s + 1 s + stop ${stop} s must leave a second of Docker's 10`);
});

test('Dockerfile: pinned bases, reset vLLM entrypoint, tini exec form, user 1000, port 7860, production install, no secrets', () => {
  const ins = dockerInstructions(read('hf-space/Dockerfile'));
  const args = Object.fromEntries(ins.filter((i) => i.op === 'ARG').map((i) => i.args.split('=') as [string, string]));
  const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args.split(/\s+/)[0]!.replace(/^\$\{(\w+)\}$/, (_, k) => args[k] ?? k));
  const external = froms.filter((f) => f.includes(':') || f.includes('/'));
  assert.ok(external.length >= 2);
  for (const image of external) {
    const tag = image.split(':')[1];
    assert.ok(tag && tag !== 'latest' && /\d/.test(tag), `${image} is pinned`);
  }
  assert.ok(external.some((f) => /^vllm\/vllm-openai:v?0\.(1[8-9]|[2-9]\d)\./.test(f)), 'vLLM >= 0.18 (mode=wait, --shutdown-timeout)');
  const finalStage = ins.slice(ins.map((i) => i.op).lastIndexOf('FROM'));
  const entrypoints = finalStage.filter((i) => i.op === 'ENTRYPOINT');
  assert.equal(entrypoints[0]!.args, '[]', "vLLM's ENTRYPOINT is reset");
  const entry = JSON.parse(entrypoints.at(-1)!.args) as string[];
  assert.match(entry[0]!, /tini$/);
  const cmd = JSON.parse(finalStage.find((i) => i.op === 'CMD')!.args) as string[];
  assert.equal(cmd[0], 'node', 'exec form: the gateway is tini\'s child, not a shell\'s');
  assert.equal(cmd.at(-1), 'dist/main.js', 'the compiled build runs in production');
  assert.ok(cmd.slice(1, -1).every((f) => f.startsWith('--')), 'only Node flags between node and the script');
  assert.equal(finalStage.filter((i) => i.op === 'USER').at(-1)!.args, '1000');
  assert.ok(finalStage.some((i) => i.op === 'EXPOSE' && i.args === '7860'));
  assert.ok(ins.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args)));
  const env = finalStage.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
  for (const v of ['HOME=', 'HF_HOME=', 'VLLM_CACHE_ROOT=', 'XDG_CACHE_HOME=', 'TRITON_CACHE_DIR=']) assert.ok(env.includes(v), v);
  for (const secret of ['API_KEYS', 'ADMIN_TOKEN', 'HF_TOKEN']) assert.ok(!new RegExp(`\\b${secret}=`).test(env), `${secret} not baked in`);
  for (const src of ins.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).map((i) => i.args.split(/\s+/).slice(0, -1)).flat()) {
    if (src.startsWith('--')) continue;
    assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY ${src} exists in the build context`);
  }
});

test('Space README front matter: docker SDK on 7860, L40S, a startup timeout long enough for a download', () => {
  const text = read('hf-space/README.md');
  const m = /^---\n([\s\S]*?)\n---\n/.exec(text);
  assert.ok(m, 'front matter present');
  const fm = parseYaml(m[1]!) as Record<string, unknown>;
  assert.equal(fm.sdk, 'docker');
  assert.equal(fm.app_port, 7860);
  assert.equal(fm.suggested_hardware, 'l40sx1');
  assert.match(String(fm.startup_duration_timeout), /^(\d+h|[3-9]\dm)$/);
  const allowed = new Set(['title', 'emoji', 'colorFrom', 'colorTo', 'sdk', 'app_port', 'suggested_hardware', 'startup_duration_timeout', 'pinned', 'short_description', 'license', 'models', 'tags']);
  for (const k of Object.keys(fm)) assert.ok(allowed.has(k), `known front matter key ${k}`);
  for (const s of ['API_KEYS', 'ADMIN_TOKEN', 'HF_TOKEN', '/sleep', '/wake', 'SIGTERM']) assert.ok(text.includes(s), s);
});

test('compose: GPU reservation, /health healthcheck, init, grace ≥ drain + stop + margin, known variables', () => {
  const doc = parseYaml(read('deploy/docker-compose.yml')) as any;
  const svc = doc.services.gateway;
  assert.equal(svc.init, true);
  assert.equal(svc.build.dockerfile, 'hf-space/Dockerfile');
  assert.equal(svc.deploy.resources.reservations.devices[0].driver, 'nvidia');
  assert.ok(svc.healthcheck.test.join(' ').includes('/health'));
  const env = svc.environment as Record<string, string>;
  const grace = Number(/^(\d+)s$/.exec(svc.stop_grace_period)![1]);
  assert.ok(grace >= Number(env.DRAIN_TIMEOUT_SECONDS ?? 20) + Number(env.ENGINE_STOP_TIMEOUT_SECONDS ?? 8) + GRACE_MARGIN_S, `grace ${grace}s`);
  for (const k of Object.keys(env)) assert.ok(CONTRACT_VARS.has(k) || PLATFORM_VARS.has(k), `compose sets unknown variable ${k}`);
  assert.ok(svc.ports.includes('7860:7860'));
});

test('kubernetes: GPU limit, probes on the right paths, grace ≥ preStop + drain + stop + margin, secrets from a Secret', () => {
  const docs = ['deployment.yaml', 'service.yaml', 'secret.example.yaml'].flatMap((f) =>
    parseAllDocuments(read(`deploy/kubernetes/${f}`)).map((d) => d.toJS() as any),
  );
  const dep = docs.find((d) => d.kind === 'Deployment');
  const svc = docs.find((d) => d.kind === 'Service');
  assert.ok(dep && svc && docs.find((d) => d.kind === 'Secret'));
  const pod = dep.spec.template.spec;
  const c = pod.containers[0];
  assert.equal(c.resources.limits['nvidia.com/gpu'], 1);
  assert.equal(c.readinessProbe.httpGet.path, '/health');
  assert.equal(c.livenessProbe.httpGet.path, '/');
  assert.equal(c.startupProbe.httpGet.path, '/health');
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= Number(env.STARTUP_TIMEOUT_SECONDS ?? 1800), 'startup probe covers the model load');
  const preStop = Number(c.lifecycle.preStop.exec.command.at(-1));
  const grace = pod.terminationGracePeriodSeconds;
  assert.ok(grace >= preStop + Number(env.DRAIN_TIMEOUT_SECONDS ?? 20) + Number(env.ENGINE_STOP_TIMEOUT_SECONDS ?? 8) + GRACE_MARGIN_S, `grace ${grace}s`);
  for (const k of Object.keys(env)) assert.ok(CONTRACT_VARS.has(k) || PLATFORM_VARS.has(k), `deployment sets unknown variable ${k}`);
  for (const s of ['API_KEYS', 'ADMIN_TOKEN']) assert.ok(env[s].secretKeyRef, `${s} comes from a Secret`);
  assert.equal(svc.spec.selector['app.kubernetes.io/name'], dep.spec.selector.matchLabels['app.kubernetes.io/name']);
  assert.equal(pod.securityContext.runAsUser, 1000);
  assert.ok(c.ports.some((p: any) => p.containerPort === 7860));
});

test('push.sh --dry-run lays out the Space: Dockerfile and README at the root, the gateway beside them', () => {
  const out = execFileSync('bash', [path.join(ROOT, 'hf-space/push.sh'), '--dry-run', 'owner/space'], { encoding: 'utf8' });
  for (const f of ['./Dockerfile', './README.md', './package.json', './package-lock.json', './tsconfig.build.json', './src/main.ts', './bin/vllm-gateway.js']) {
    assert.ok(out.includes(f), f);
  }
  const bad = spawnSync('bash', [path.join(ROOT, 'hf-space/push.sh'), 'not a space'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
});

test('shell scripts pass shellcheck', (t) => {
  const found = spawnSync('shellcheck', ['--version']);
  if (found.error) {
    if (process.env.CI) assert.fail('shellcheck is not installed in CI (.ci/run installs it)');
    t.skip('shellcheck not installed here');
    return;
  }
  const scripts = ['hf-space/push.sh', '.ci/run'].map((p) => path.join(ROOT, p));
  const r = spawnSync('shellcheck', ['-s', 'bash', ...scripts], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('one Node everywhere: the pinned `node` devDependency runs the tests, and the image and engines name its major', () => {
  const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; devDependencies: Record<string, string> };
  const major = pkg.devDependencies.node!.split('.')[0]!;
  console.log(`tests run on Node ${process.version}`);
  assert.equal(process.version.slice(1).split('.')[0], major, 'npm scripts put node_modules/.bin/node first on PATH');
  assert.equal(pkg.engines.node, `>=${major}`);
  const image = /^ARG NODE_IMAGE=node:(\d+)\./m.exec(read('hf-space/Dockerfile'));
  assert.equal(image?.[1], major, 'the Space image runs the same major');
});
