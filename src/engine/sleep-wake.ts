// Sleep and wake: overlapping asks serialised in one queue, vLLM's sleep endpoints driven in the right
// order, the warm-up after a wake, and recovery to what vLLM reports when an operation fails
// (docs/contract.md, Engine states; docs/vllm.md, Sleep mode).
import { EngineError } from '../errors.ts';
import { versionAtLeast } from '../version.ts';
import { EngineCallError } from './client.ts';
import type { EngineCore, OpEvent } from './lifecycle.ts';
import { isDown, isStopping, type EngineState } from './states.ts';

export interface SleepOutcome {
  level: 1 | 2;
  durationMs: number;
  already: boolean;
  /** The drain hit SLEEP_DRAIN_TIMEOUT_SECONDS and vLLM was told mode=abort. */
  aborted: boolean;
  message: string;
}

export interface WakeOutcome {
  durationMs: number;
  already: boolean;
  message: string;
}

// vLLM's /sleep and /wake_up block until done and have no server-side timeout: ours.
const SLEEP_CALL_MS = 120_000;
const WAKE_CALL_MS = 120_000;
const RELOAD_CALL_MS = 600_000;
const WARMUP_MS = 60_000;

/** Text from vLLM, cut for the log: the upstream decides its length. */
const clip = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s);

class WakeCheckFailed extends Error {
  override readonly name = 'WakeCheckFailed';
}

export class SleepWake {
  private queue: Promise<unknown> = Promise.resolve();
  private tail: { kind: 'sleep' | 'wake'; p: Promise<unknown> } | null = null;

  constructor(
    private readonly core: EngineCore,
    /** The engine is unhealthy after a failed operation: supervision takes over. */
    private readonly fail: (reason: string, details: Record<string, unknown>) => Promise<void>,
  ) {}

  private get log() {
    return this.core.deps.log;
  }

  private checkCanChange(): void {
    const s = this.core.state;
    if (isDown(s)) throw new EngineError('conflict', `the engine is ${s}; sleep and wake are possible once it is ready`, 10_000);
    if (isStopping(s)) throw new EngineError('unavailable', 'the gateway is shutting down', 5000);
  }

  /** Overlapping asks are serialised; an ask of the same kind as the last queued one joins it. */
  private request<T>(kind: 'sleep' | 'wake', run: () => Promise<T>): Promise<T> {
    try {
      this.checkCanChange();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.tail?.kind === kind) return this.tail.p as Promise<T>;
    const p = this.queue.then(run);
    this.queue = p.catch(() => {});
    const entry = { kind, p };
    this.tail = entry;
    const clear = () => {
      if (this.tail === entry) this.tail = null;
    };
    p.then(clear, clear);
    return p;
  }

  sleep(level: 1 | 2, reason: string): Promise<SleepOutcome> {
    return this.request('sleep', () => this.doSleep(level, reason));
  }

  wake(reason: string): Promise<WakeOutcome> {
    return this.request('wake', () => this.doWake(reason));
  }

  private async doSleep(level: 1 | 2, reason: string): Promise<SleepOutcome> {
    const { core } = this;
    const { client, inflight, opts } = core.deps;
    if (core.state === 'sleeping') {
      const l = core.facts.sleepLevel ?? level;
      return { level: l, durationMs: 0, already: true, aborted: false, message: `the engine is already asleep (level ${l})` };
    }
    this.checkCanChange();
    const t0 = Date.now();
    core.transition('falling_asleep', reason);
    const busy = inflight.forwarded;
    const drained = await inflight.waitForwardedIdle(opts.sleepDrainTimeoutMs);
    if (core.state !== 'falling_asleep') throw new EngineError('unavailable', `sleep interrupted: the engine is ${core.state}`, 5000);
    const left = inflight.forwarded;
    if (!drained) this.log.warn({ in_flight: left, timeout_s: opts.sleepDrainTimeoutMs / 1000 }, 'sleep drain timed out: telling vLLM mode=abort');
    // `mode` exists from vLLM 0.17 (PR #34528): only send it to versions that have it.
    const mode = versionAtLeast(core.facts.version, '0.17.0') ? (drained ? 'wait' : 'abort') : undefined;
    try {
      await client.sleep(level, mode, SLEEP_CALL_MS);
      if (!(await client.isSleeping())) throw new Error('vLLM still reports is_sleeping=false after /sleep');
    } catch (e) {
      return this.opFailed('sleep', 'falling_asleep', level, t0, e);
    }
    const durationMs = Date.now() - t0;
    core.facts.lastSleepMs = durationMs;
    core.facts.sleeps++;
    if (core.state === 'falling_asleep') core.transition('sleeping', reason, level);
    core.emit('sleep', { level, outcome: drained ? 'ok' : 'aborted', durationMs } satisfies OpEvent);
    const message = drained
      ? `the engine is asleep at level ${level}${busy ? ` after ${busy} in-flight request(s) finished` : ''}`
      : `the engine is asleep at level ${level}; ${left} request(s) still running after ${opts.sleepDrainTimeoutMs / 1000} s were aborted`;
    return { level, durationMs, already: false, aborted: !drained, message };
  }

  private async doWake(reason: string): Promise<WakeOutcome> {
    const { core } = this;
    const { client, opts } = core.deps;
    if (core.state === 'ready') return { durationMs: 0, already: true, message: 'the engine is already awake' };
    this.checkCanChange();
    const level = core.facts.sleepLevel ?? opts.sleepLevel;
    const checked = opts.wakeCheck !== 'off' && core.facts.reference !== undefined;
    const t0 = Date.now();
    core.transition('waking', reason);
    let status: 'awake' | 'sleeping' | undefined;
    try {
      if (level >= 2) {
        // Level 2 discarded the weights: a plain wake_up would serve garbage (docs/vllm.md, Sleep mode).
        await client.wakeUp(['weights'], WAKE_CALL_MS);
        await client.reloadWeights(RELOAD_CALL_MS);
        status = await client.wakeUp(['kv_cache'], WAKE_CALL_MS);
        await client.resetPrefixCache(WAKE_CALL_MS);
      } else {
        status = await client.wakeUp(undefined, WAKE_CALL_MS);
      }
      // vLLM >= 0.31 says how the wake went; every version is asked besides.
      if (status === 'sleeping') throw new Error('vLLM answered wake_up with status "sleeping"');
      if (await client.isSleeping()) throw new Error('vLLM still reports is_sleeping=true after wake_up');
      // The check's completion warms the engine up as well; without a check, the plain warm-up does.
      if (checked) await this.check(level);
      else if (opts.warmupOnWake) await this.warmup();
    } catch (e) {
      if (e instanceof WakeCheckFailed) return this.checkFailed(e, level, t0);
      return this.opFailed('wake', 'waking', level, t0, e);
    }
    const durationMs = Date.now() - t0;
    core.facts.lastWakeMs = durationMs;
    core.facts.wakes++;
    if (core.state === 'waking') core.transition('ready', reason);
    core.emit('wake', { level, outcome: 'ok', durationMs } satisfies OpEvent);
    return { durationMs, already: false, message: `the engine is awake (woke from level ${level}${checked ? ', answers checked' : opts.warmupOnWake ? ', warmed up' : ''})` };
  }

  /** Asks the reference question again: a different answer means the engine woke to garbage. */
  private async check(level: 1 | 2): Promise<void> {
    const { core } = this;
    const got = await core.deps.client.probe(core.facts.servedModel, WARMUP_MS);
    const ok = got === core.facts.reference;
    core.facts.wakeCheck.last = ok ? 'ok' : 'mismatch';
    core.emit('wake-check', ok);
    if (ok) return;
    core.facts.wakeCheck.failures++;
    this.log.error({ expected: clip(core.facts.reference!), got: clip(got), sleep_level: level, wake_check: core.deps.opts.wakeCheck }, 'wake check failed: after the wake the engine answers the reference question differently');
    if (core.deps.opts.wakeCheck === 'restart') {
      if (core.deps.opts.mode === 'launch') throw new WakeCheckFailed(`the engine answered "${got.slice(0, 60)}" instead of "${core.facts.reference!.slice(0, 60)}" after a level-${level} wake`);
      this.log.error('an attached vLLM cannot be restarted by the gateway: serving anyway (restart it yourself)');
    }
  }

  /** WAKE_CHECK=restart: the engine is restarted before the gate opens; waiting requests wait for it. */
  private async checkFailed(e: WakeCheckFailed, level: 1 | 2, t0: number): Promise<never> {
    this.core.emit('wake', { level, outcome: 'error', durationMs: Date.now() - t0 } satisfies OpEvent);
    await this.fail(`wake check failed: ${e.message}`, {});
    throw new EngineError('unavailable', `the engine woke to wrong answers and is being restarted (WAKE_CHECK=restart): ${e.message}`, 10_000);
  }

  private async warmup(): Promise<void> {
    const { client } = this.core.deps;
    const t0 = Date.now();
    try {
      await client.warmup(this.core.facts.servedModel, WARMUP_MS);
      this.log.info({ ms: Date.now() - t0 }, 'warm-up completion done');
    } catch (e) {
      // A failed warm-up only matters if the engine is unhealthy; recover() decides then.
      if ((await client.health().catch(() => 0)) !== 200) throw e;
      this.log.warn({ err: (e as Error).message }, 'warm-up completion failed; opening anyway');
    }
  }

  /** A sleep or wake that vLLM refused: recover, count it, and say why in terms the caller can act on. */
  private async opFailed(op: 'sleep' | 'wake', during: EngineState, level: 1 | 2, t0: number, e: unknown): Promise<never> {
    const unsupported = e instanceof EngineCallError && e.status === 404;
    await this.recover(during, op, e);
    this.core.emit(op, { level, outcome: unsupported ? 'unsupported' : 'error', durationMs: Date.now() - t0 } satisfies OpEvent);
    if (unsupported) {
      const route = op === 'sleep' ? 'POST /sleep' : 'POST /wake_up';
      throw new EngineError('unsupported', `vLLM has no sleep endpoints (${route} answered 404): start it with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1`);
    }
    throw new EngineError('upstream', `vLLM failed to ${op}: ${(e as Error).message}`);
  }

  /** After a failed sleep or wake: back to what vLLM reports, or failed when it is unhealthy. */
  private async recover(expect: EngineState, op: string, e: unknown): Promise<void> {
    const { core } = this;
    const { client } = core.deps;
    this.log.error({ err: (e as Error).message }, `${op} failed`);
    if (core.state !== expect) return;
    const healthy = (await client.health().catch(() => 0)) === 200;
    if (core.state !== expect) return;
    if (!healthy) return this.fail(`${op} failed and vLLM is not healthy`, { err: (e as Error).message });
    const asleep = await client.isSleeping().catch(() => false);
    core.transition(asleep ? 'sleeping' : 'ready', `${op} failed: ${(e as Error).message}`);
  }
}
