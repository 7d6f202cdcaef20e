// The engine lifecycle in process: a fake vLLM (its control API and its child process), node:test's mock
// timers for back-off, polling and deadlines. Every behaviour of docs/contract.md's engine states that the
// integration suite checks through real processes, here in seconds.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import pino from 'pino';
import { ClientGone, EngineError } from '../../src/errors.ts';
import { EngineCallError, type EngineApi, type SleepMode } from '../../src/engine/client.ts';
import { IdleSleeper } from '../../src/engine/idle.ts';
import { Inflight } from '../../src/engine/inflight.ts';
import { EngineLifecycle, type LifecycleOptions, type Transition } from '../../src/engine/lifecycle.ts';
import type { EngineChild, ExitInfo, StopReport } from '../../src/engine/process.ts';
import { ENGINE_STATES, IllegalTransition, StateMachine, TRANSITIONS, type EngineState } from '../../src/engine/states.ts';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

/** A promise the test resolves or rejects when it wants: an operation in progress. */
function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Lets every pending promise continuation run (real setImmediate: only timers are mocked). */
async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
}

class FakeVllm implements EngineApi {
  up = true;
  healthy = true;
  asleep = false;
  calls: string[] = [];
  /** Set to hold the next sleep or wake until the test resolves it. */
  hold: { sleep?: Deferred<void>; wake?: Deferred<void> } = {};
  fail: { sleep?: EngineCallError | Error; wake?: EngineCallError | Error; warmup?: Error } = {};
  reportedLevel: 1 | 2 | undefined;

  private reach(what: string): void {
    if (!this.up) throw new EngineCallError(what, undefined, 'ECONNREFUSED');
  }
  async health() {
    this.reach('GET /health');
    return this.healthy ? 200 : 503;
  }
  async version() {
    return '0.19.1';
  }
  async models() {
    return ['fake/model'];
  }
  async isSleeping() {
    this.reach('GET /is_sleeping');
    return this.asleep;
  }
  async sleep(level: number, mode: SleepMode | undefined) {
    this.calls.push(`sleep ${level} ${mode}`);
    await this.hold.sleep?.promise;
    this.hold.sleep = undefined;
    if (this.fail.sleep) throw this.fail.sleep;
    this.asleep = true;
  }
  async wakeUp(tags: string[] | undefined) {
    this.calls.push(`wake_up${tags ? ` ${tags.join(',')}` : ''}`);
    await this.hold.wake?.promise;
    this.hold.wake = undefined;
    if (this.fail.wake) throw this.fail.wake;
    if (!tags || tags.includes('kv_cache')) this.asleep = false;
    return undefined;
  }
  async reloadWeights() {
    this.calls.push('reload_weights');
  }
  async resetPrefixCache() {
    this.calls.push('reset_prefix_cache');
  }
  async reportedSleepLevel() {
    return this.reportedLevel;
  }
  async warmup() {
    this.calls.push('warmup');
    if (this.fail.warmup) throw this.fail.warmup;
  }
  async routes() {
    return undefined;
  }
  answer = 'Paris.';
  async probe() {
    this.calls.push('probe');
    return this.answer;
  }
}

class FakeChild implements EngineChild {
  static count = 0;
  readonly pid = 1000 + ++FakeChild.count;
  running = true;
  spawnError: NodeJS.ErrnoException | undefined;
  output = ['(fake vLLM output)'];
  private done = deferred<ExitInfo>();
  readonly exited = this.done.promise;
  outputTail() {
    return this.output;
  }
  lines: ((l: string) => void)[] = [];
  onLine(cb: (l: string) => void) {
    this.lines.push(cb);
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (!this.running) return;
    this.running = false;
    this.done.resolve({ code, signal });
  }
  private report(): StopReport {
    return { killed: [], survivors: [], durationMs: 0 };
  }
  async stop() {
    this.exit(0);
    return this.report();
  }
  async kill() {
    this.exit(null, 'SIGKILL');
    return this.report();
  }
  killNow() {
    this.exit(null, 'SIGKILL');
    return true;
  }
}

const OPTS: LifecycleOptions = {
  mode: 'launch',
  model: 'fake/model',
  sleepLevel: 1,
  autoWake: true,
  wakeOnStart: false,
  warmupOnWake: true,
  wakeCheck: 'off',
  sleepMinFreedShare: 0.5,
  sleepDrainTimeoutMs: 30_000,
  startupTimeoutMs: 60_000,
  engineStopTimeoutMs: 8000,
};

interface Rig {
  engine: EngineLifecycle;
  vllm: FakeVllm;
  children: FakeChild[];
  inflight: Inflight;
  states: EngineState[];
  illegal: unknown[];
  logs: string[];
}

function rig(opts: Partial<LifecycleOptions> = {}): Rig {
  const vllm = new FakeVllm();
  const children: FakeChild[] = [];
  const inflight = new Inflight();
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const o = { ...OPTS, ...opts };
  const engine = new EngineLifecycle({
    opts: o,
    client: vllm,
    inflight,
    log,
    ...(o.mode === 'launch'
      ? {
          spawnEngine: () => {
            const c = new FakeChild();
            children.push(c);
            return c;
          },
        }
      : {}),
  });
  const states: EngineState[] = [engine.state];
  const illegal: unknown[] = [];
  engine.on('transition', (t: Transition) => states.push(t.to));
  engine.on('illegal', (e) => illegal.push(e));
  return { engine, vllm, children, inflight, states, illegal, logs };
}

async function ready(r: Rig): Promise<void> {
  r.engine.start();
  await settle();
  assert.equal(r.engine.state, 'ready');
}

// AbortSignal.timeout is mockable since Node 23 (its type in @types/node lags).
beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date', 'AbortSignal.timeout'] as Parameters<typeof mock.timers.enable>[0] extends { apis?: infer A } ? A : never }));
afterEach(() => mock.timers.reset());

describe('the state table', () => {
  test('every pair in the table moves; every pair not in it is refused (IllegalTransition)', () => {
    let allowed = 0;
    for (const from of ENGINE_STATES) {
      for (const to of ENGINE_STATES) {
        if (from === to) continue;
        const m = new StateMachine(from);
        if (to in TRANSITIONS[from]) {
          assert.deepEqual({ ...m.move(to, 'test'), at: '' }, { from, to, at: '', reason: 'test', seq: 1 }, `${from} → ${to}`);
          assert.equal(m.state, to);
          allowed++;
        } else {
          assert.throws(() => m.move(to, 'test'), IllegalTransition, `${from} → ${to} must be refused`);
          assert.equal(m.state, from, 'a refused transition changes nothing');
        }
      }
    }
    assert.equal(allowed, 21);
  });

  test('every state but stopped can drain, and every state can be left but stopped', () => {
    for (const s of ENGINE_STATES) {
      if (s !== 'stopped' && s !== 'draining') assert.ok('draining' in TRANSITIONS[s], s);
      assert.equal(Object.keys(TRANSITIONS[s]).length === 0, s === 'stopped', s);
    }
  });
});

describe('the lifecycle, in process', { timeout: 10_000 }, () => {
  test('launch: starting → ready once the child answers /health; polls until then', async () => {
    const r = rig();
    r.vllm.up = false;
    r.engine.start();
    await settle();
    assert.equal(r.engine.state, 'starting');
    mock.timers.tick(500);
    await settle();
    assert.equal(r.engine.state, 'starting');
    r.vllm.up = true;
    mock.timers.tick(500);
    await settle();
    assert.equal(r.engine.state, 'ready');
    assert.equal(r.engine.version, '0.19.1');
    assert.equal(r.engine.servedModel, 'fake/model');
    assert.equal(r.engine.childPid, r.children[0]!.pid);
  });

  test('attach: a vLLM found asleep is sleeping; WAKE_ON_START wakes it', async () => {
    const r = rig({ mode: 'attach', wakeOnStart: true });
    r.vllm.asleep = true;
    r.vllm.reportedLevel = 2;
    r.engine.start();
    await settle();
    assert.deepEqual(r.states, ['starting', 'sleeping', 'waking', 'ready']);
    assert.deepEqual(r.vllm.calls, ['wake_up weights', 'reload_weights', 'wake_up kv_cache', 'reset_prefix_cache', 'warmup'], 'level 2: weights, reload, kv cache, prefix cache');
  });

  test('sleep: ready → falling_asleep → sleeping; a second /sleep joins the first (one call to vLLM)', async () => {
    const r = rig();
    await ready(r);
    r.vllm.hold.sleep = deferred();
    const a = r.engine.sleep(1, 'first');
    const b = r.engine.sleep(2, 'second');
    await settle();
    assert.equal(r.engine.state, 'falling_asleep');
    r.vllm.hold.sleep.resolve();
    const [oa, ob] = await Promise.all([a, b]);
    assert.equal(oa, ob, 'the same outcome');
    assert.deepEqual(r.vllm.calls, ['sleep 1 wait']);
    assert.equal(r.engine.state, 'sleeping');
    assert.equal(r.engine.snapshot().sleep.level, 1);
    const again = await r.engine.sleep(1, 'again');
    assert.equal(again.already, true);
  });

  test('wake during falling_asleep waits for the sleep, then wakes; sleep during waking waits for the wake, then sleeps', async () => {
    const r = rig();
    await ready(r);
    r.vllm.hold.sleep = deferred();
    const s = r.engine.sleep(1, 'sleep');
    await settle();
    const w = r.engine.wake('wake');
    await settle();
    assert.equal(r.engine.state, 'falling_asleep', 'the wake waits');
    r.vllm.hold.sleep.resolve();
    await s;
    await w;
    assert.equal(r.engine.state, 'ready');
    r.vllm.hold.wake = deferred();
    await r.engine.sleep(1, 'sleep again');
    const w2 = r.engine.wake('wake again');
    await settle();
    assert.equal(r.engine.state, 'waking');
    const w3 = r.engine.wake('joins the wake in progress');
    const s2 = r.engine.sleep(1, 'sleep during waking');
    r.vllm.hold.wake.resolve();
    assert.equal(await w3, await w2, 'one wake, one outcome');
    await s2;
    assert.equal(r.engine.state, 'sleeping');
    assert.deepEqual(r.states.slice(1), ['ready', 'falling_asleep', 'sleeping', 'waking', 'ready', 'falling_asleep', 'sleeping', 'waking', 'ready', 'falling_asleep', 'sleeping']);
  });

  test('sleep or wake while starting or failed is a conflict (409); while draining, unavailable (503)', async () => {
    const r = rig();
    r.vllm.up = false;
    r.engine.start();
    await settle();
    await assert.rejects(r.engine.sleep(1, 'x'), (e: unknown) => e instanceof EngineError && e.kind === 'conflict');
    await assert.rejects(r.engine.wake('x'), (e: unknown) => e instanceof EngineError && e.kind === 'conflict');
    r.engine.beginDrain('test');
    await assert.rejects(r.engine.sleep(1, 'x'), (e: unknown) => e instanceof EngineError && e.kind === 'unavailable');
  });

  test('vLLM without sleep endpoints (404): unsupported (501), and the engine is back to ready', async () => {
    const r = rig();
    await ready(r);
    r.vllm.fail.sleep = new EngineCallError('POST /sleep', 404, '{"detail":"Not Found"}');
    await assert.rejects(r.engine.sleep(1, 'x'), (e: unknown) => e instanceof EngineError && e.kind === 'unsupported');
    assert.equal(r.engine.state, 'ready');
  });

  test('a failed sleep recovers to what vLLM reports: ready when awake, sleeping when it slept anyway (502)', async () => {
    const r = rig();
    await ready(r);
    r.vllm.fail.sleep = new EngineCallError('POST /sleep', 500, '');
    await assert.rejects(r.engine.sleep(1, 'x'), (e: unknown) => e instanceof EngineError && e.kind === 'upstream');
    assert.equal(r.engine.state, 'ready');
    r.vllm.fail.sleep = undefined;
    r.vllm.fail.wake = new EngineCallError('POST /wake_up', 500, '');
    await r.engine.sleep(1, 'x');
    await assert.rejects(r.engine.wake('x'), (e: unknown) => e instanceof EngineError && e.kind === 'upstream');
    assert.equal(r.engine.state, 'sleeping', 'the wake failed and vLLM still sleeps');
    assert.deepEqual(r.illegal, []);
  });

  test('a failed wake with an unhealthy vLLM fails the engine; it restarts after 1 s, 2 s, 4 s, 8 s, then gives up (fatal)', async () => {
    const r = rig();
    const fatal: string[] = [];
    r.engine.on('fatal', (why: string) => fatal.push(why));
    await ready(r);
    await r.engine.sleep(1, 'x');
    r.vllm.fail.wake = new Error('boom');
    r.vllm.healthy = false;
    await assert.rejects(r.engine.wake('x'));
    await settle();
    assert.equal(r.engine.state, 'failed');
    assert.equal(r.children[0]!.running, false, 'what is left of the child is killed');
    r.vllm.healthy = true;
    r.vllm.fail.wake = undefined;
    r.vllm.asleep = false;
    for (const backoff of [1000, 2000, 4000, 8000]) {
      mock.timers.tick(backoff - 1);
      await settle();
      assert.equal(r.engine.state, 'failed', `still waiting before ${backoff} ms`);
      mock.timers.tick(1);
      await settle();
      assert.equal(r.engine.state, 'ready', `restarted after ${backoff} ms`);
      r.children.at(-1)!.exit(0); // vLLM may exit 0 after its engine died: still a failure
      await settle();
      if (backoff < 8000) assert.equal(r.engine.state, 'failed');
    }
    assert.equal(r.engine.restarts, 4);
    assert.deepEqual(fatal, ['vLLM failed 5 times within 10 minutes']);
    assert.equal(r.children.length, 5);
  });

  test('what no restart can mend (no executable, a taken port) is reported once as misconfigured, never restarted', async () => {
    for (const [how, why] of [['enoent', /no executable "\/no\/vllm".*VLLM_BIN.*npm run demo/], ['port', /port is taken.*VLLM_PORT/]] as const) {
      const r = rig();
      const said: string[] = [];
      r.engine.on('misconfigured', (m: string) => said.push(m));
      r.vllm.up = false;
      r.engine.start();
      await settle();
      const child = r.children[0]!;
      if (how === 'enoent') child.spawnError = Object.assign(new Error('spawn /no/vllm ENOENT'), { code: 'ENOENT', path: '/no/vllm' });
      else child.output = ['(APIServer pid=1) ERROR 12-06 10:00:00 [api_server.py:1790] OSError: [Errno 98] Address already in use'];
      child.exit(how === 'enoent' ? 127 : 1);
      await settle();
      mock.timers.tick(120_000);
      await settle();
      assert.equal(said.length, 1, how);
      assert.match(said[0]!, why);
      assert.equal(r.children.length, 1, `${how}: no restart`);
    }
  });

  test('wake check (restart): an engine that wakes to another answer is restarted before a waiting request is served', async () => {
    const r = rig({ wakeCheck: 'restart' });
    const checks: boolean[] = [];
    r.engine.on('wake-check', (ok: boolean) => checks.push(ok));
    await ready(r);
    assert.deepEqual(r.vllm.calls, ['probe'], 'the reference is asked before the gate opens');
    await r.engine.sleep(1, 'x');
    r.vllm.answer = 'garbage garbage';
    const admitted = r.engine.admit(new AbortController().signal, 30_000);
    let served = false;
    void admitted.then(() => (served = true));
    await settle();
    assert.equal(r.engine.state, 'failed');
    assert.equal(served, false, 'nobody is served by the garbled engine');
    r.vllm.answer = 'Paris.'; // the restarted engine answers right again
    mock.timers.tick(1000);
    await settle();
    await admitted;
    assert.equal(r.engine.state, 'ready');
    assert.equal(r.children.length, 2, 'restarted');
    assert.deepEqual(checks, [false]);
    assert.deepEqual(r.engine.snapshot().wake_check, { mode: 'restart', last: 'mismatch', failures: 1 });
  });

  test('wake check (warn): the mismatch is logged and counted, the engine opens anyway; (off): no question asked', async () => {
    const r = rig({ wakeCheck: 'warn' });
    await ready(r);
    await r.engine.sleep(1, 'x');
    r.vllm.answer = 'garbage';
    await r.engine.wake('x');
    assert.equal(r.engine.state, 'ready');
    assert.equal(r.engine.snapshot().wake_check.failures, 1);
    assert.ok(r.logs.some((l) => l.includes('wake check failed')));
    const off = rig({ wakeCheck: 'off' });
    await ready(off);
    await off.engine.sleep(1, 'x');
    await off.engine.wake('x');
    assert.ok(!off.vllm.calls.includes('probe'));
    assert.ok(off.vllm.calls.includes('warmup'), 'the plain warm-up instead');
  });

  test('what a sleep freed, read from vLLM\'s log; a share under SLEEP_MIN_FREED_SHARE is warned about', async () => {
    const r = rig({ sleepMinFreedShare: 0.8 });
    const freed: unknown[] = [];
    r.engine.on('sleep-freed', (f) => freed.push(f));
    await ready(r);
    for (const cb of r.children[0]!.lines) cb('(Worker pid=9) INFO 12-06 10:00:00 [gpu_worker.py:117] Sleep mode freed 3.00 GiB memory, 1.00 GiB memory is still in use.');
    assert.equal(freed.length, 1);
    assert.equal(r.engine.snapshot().sleep.freed_gib, 3);
    assert.ok(r.logs.some((l) => l.includes('sleep freed only 75 %')));
  });

  test('admission: waits while starting; QUEUE timeout is an EngineError with a retry hint; a client that leaves is ClientGone', async () => {
    const r = rig();
    r.vllm.up = false;
    r.engine.start();
    await settle();
    const waiting = r.engine.admit(new AbortController().signal, 30_000);
    const leaving = new AbortController();
    const gone = r.engine.admit(leaving.signal, 30_000);
    leaving.abort();
    await assert.rejects(gone, ClientGone);
    mock.timers.tick(30_000);
    await assert.rejects(waiting, (e: unknown) => e instanceof EngineError && e.kind === 'timeout' && e.retryAfterMs === 10_000);
    const ok = r.engine.admit(new AbortController().signal, 30_000);
    r.vllm.up = true;
    mock.timers.tick(500);
    await settle();
    await ok;
    assert.equal(r.engine.state, 'ready');
  });

  test('admission while asleep: AUTO_WAKE wakes the engine (once for many requests); without it, unavailable', async () => {
    const r = rig();
    await ready(r);
    await r.engine.sleep(1, 'x');
    const admitted = Array.from({ length: 5 }, () => r.engine.admit(new AbortController().signal, 30_000));
    await Promise.all(admitted);
    assert.equal(r.vllm.calls.filter((c) => c.startsWith('wake_up')).length, 1);
    const off = rig({ autoWake: false });
    await ready(off);
    await off.engine.sleep(1, 'x');
    await assert.rejects(off.engine.admit(new AbortController().signal, 30_000), (e: unknown) => e instanceof EngineError && e.kind === 'unavailable');
    assert.equal(off.engine.state, 'sleeping');
  });

  test('sleep drains forwarded requests first (mode=wait); at SLEEP_DRAIN_TIMEOUT it sleeps with mode=abort', async () => {
    const r = rig({ sleepDrainTimeoutMs: 5000 });
    await ready(r);
    const t = r.inflight.begin(true);
    t.forwarded();
    const s = r.engine.sleep(1, 'x');
    await settle();
    assert.deepEqual(r.vllm.calls, [], 'not while a request runs');
    t.end();
    await s;
    assert.deepEqual(r.vllm.calls, ['sleep 1 wait']);
    await r.engine.wake('x');
    const stuck = r.inflight.begin(true);
    stuck.forwarded();
    const s2 = r.engine.sleep(1, 'y');
    await settle();
    mock.timers.tick(5000);
    const o = await s2;
    assert.equal(o.aborted, true);
    assert.equal(r.vllm.calls.at(-1), 'sleep 1 abort');
  });

  test('idle sleep never while a request is in flight; after IDLE time with none, it sleeps', async () => {
    const r = rig();
    await ready(r);
    const idle = new IdleSleeper(r.engine, r.inflight, 10_000, 1, pino({ level: 'silent' }));
    idle.start();
    const t = r.inflight.begin(true);
    mock.timers.tick(60_000);
    await settle();
    assert.equal(r.engine.state, 'ready', 'a request in flight keeps it awake');
    t.end();
    mock.timers.tick(9_999);
    await settle();
    assert.equal(r.engine.state, 'ready');
    mock.timers.tick(1);
    await settle();
    assert.equal(r.engine.state, 'sleeping');
    idle.stop();
  });

  test('shutdown: draining from any state; a child exit then is no failure and nothing restarts', async () => {
    const r = rig();
    await ready(r);
    await r.engine.sleep(1, 'x');
    r.engine.beginDrain('SIGTERM');
    assert.equal(r.engine.state, 'draining');
    const report = await r.engine.stopEngine();
    assert.deepEqual(report?.killed, []);
    assert.equal(r.engine.state, 'stopped');
    assert.equal(r.children[0]!.running, false);
    mock.timers.tick(120_000);
    await settle();
    assert.equal(r.engine.state, 'stopped');
    assert.equal(r.children.length, 1, 'no restart');
    assert.ok(!r.vllm.calls.some((c) => c.startsWith('wake_up')), 'a sleeping engine is stopped without waking it');
    assert.deepEqual(r.illegal, []);
  });

  test('an illegal transition is refused and logged loudly; no path of the lifecycle attempts one', async () => {
    const r = rig();
    await ready(r);
    r.engine.beginDrain('x');
    await r.engine.stopEngine();
    // stopped has no way out: a late wake is refused before it reaches the table.
    await assert.rejects(r.engine.wake('late'), (e: unknown) => e instanceof EngineError && e.kind === 'unavailable');
    assert.deepEqual(r.illegal, []);
    // The guard itself, reached the only way a bug could: the coordinator's transition, off the table.
    const moved = (r.engine as unknown as { transition(to: EngineState, reason: string): boolean }).transition('waking', 'a bug');
    assert.equal(moved, false);
    assert.equal(r.engine.state, 'stopped');
    assert.deepEqual(r.illegal, [{ from: 'stopped', to: 'waking', reason: 'a bug' }]);
    const line = JSON.parse(r.logs.find((l) => l.includes('illegal engine transition'))!);
    assert.equal(line.level, 50, 'logged as an error');
    assert.match(line.stack, /IllegalTransition/);
  });
});
