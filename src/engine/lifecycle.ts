// The engine lifecycle: the single writer of the engine state (gateway contract "Engine states").
// Admin routes, the idle timer, auto-wake, signals and child exits ask it for transitions; it serialises
// them, talks to vLLM through EngineClient, and tells the data path when the gate opens or closes.
import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.ts';
import { EngineHttpError, type EngineClient } from './client.ts';
import type { Inflight } from './inflight.ts';
import type { EngineProcess, ExitInfo, StopReport } from './process.ts';
import { RestartPolicy } from './restart-policy.ts';
import { versionAtLeast } from '../version.ts';

export type EngineState = 'starting' | 'ready' | 'falling_asleep' | 'sleeping' | 'waking' | 'draining' | 'stopped' | 'failed';

export interface Transition {
  from: EngineState;
  to: EngineState;
  at: string;
  reason: string;
}

export type LifecycleErrorKind = 'conflict' | 'unavailable' | 'unsupported' | 'upstream' | 'timeout' | 'aborted';

export class LifecycleError extends Error {
  constructor(
    readonly kind: LifecycleErrorKind,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

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

export interface OpEvent {
  level: 1 | 2;
  outcome: 'ok' | 'aborted' | 'error' | 'unsupported';
  durationMs: number;
}

export interface LifecycleOptions {
  mode: 'launch' | 'attach';
  model: string | undefined;
  sleepLevel: 1 | 2;
  autoWake: boolean;
  wakeOnStart: boolean;
  warmupOnWake: boolean;
  sleepDrainTimeoutMs: number;
  startupTimeoutMs: number;
  engineStopTimeoutMs: number;
}

export interface LifecycleDeps {
  opts: LifecycleOptions;
  client: EngineClient;
  inflight: Inflight;
  log: Logger;
  /** Launch mode: starts a new vLLM process. */
  spawnEngine?: () => EngineProcess;
}

// vLLM's /sleep and /wake_up block until done and have no server-side timeout (§2.1): ours.
const SLEEP_CALL_MS = 120_000;
const WAKE_CALL_MS = 120_000;
const RELOAD_CALL_MS = 600_000;
const WARMUP_MS = 60_000;
const READY_POLL_MS = 500;
const PROGRESS_LOG_MS = 15_000;
const ATTACH_MONITOR_MS = 5_000;

export class EngineLifecycle extends EventEmitter {
  state: EngineState = 'starting';
  stateSince = Date.now();
  /** Level of the current sleep (null when awake). */
  sleepLevel: 1 | 2 | null = null;
  sleepSince: number | null = null;
  lastSleepMs: number | null = null;
  lastWakeMs: number | null = null;
  sleeps = 0;
  wakes = 0;
  restarts = 0;
  version: string | undefined;
  servedModel: string | undefined;
  proc: EngineProcess | null = null;
  readonly startedAt = Date.now();

  private queue: Promise<unknown> = Promise.resolve();
  private tail: { kind: 'sleep' | 'wake'; p: Promise<unknown> } | null = null;
  private readonly policy = new RestartPolicy();
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private monitorTimer: NodeJS.Timeout | undefined;

  constructor(private readonly d: LifecycleDeps) {
    super();
    this.setMaxListeners(0);
  }

  private get log(): Logger {
    return this.d.log;
  }

  private transition(to: EngineState, reason: string): void {
    const from = this.state;
    if (from === to) return;
    this.state = to;
    this.stateSince = Date.now();
    const t: Transition = { from, to, at: new Date(this.stateSince).toISOString(), reason };
    this.log.info({ from, to, reason }, `engine ${from} → ${to}`);
    this.emit('transition', t);
  }

  start(): void {
    void this.boot('gateway start');
  }

  private async boot(reason: string): Promise<void> {
    if (this.stopping) return;
    this.transition('starting', reason);
    let proc: EngineProcess | null = null;
    if (this.d.opts.mode === 'launch' && this.d.spawnEngine) {
      proc = this.d.spawnEngine();
      this.proc = proc;
      this.log.info({ child_pid: proc.pid }, 'vLLM started; waiting for it to load the model');
      proc.once('exit', (info: ExitInfo) => void this.onExit(proc!, info));
    }
    if (!(await this.waitReady(proc))) return;
    await this.onUp();
  }

  private async waitReady(proc: EngineProcess | null): Promise<boolean> {
    const t0 = Date.now();
    const deadline = t0 + this.d.opts.startupTimeoutMs;
    let nextLog = t0 + PROGRESS_LOG_MS;
    let last = 'not contacted yet';
    for (;;) {
      if (this.stopping || this.state !== 'starting' || (proc && (!proc.running || proc !== this.proc))) return false;
      try {
        const status = await this.d.client.health(3000);
        if (status === 200) return this.state === 'starting' && !this.stopping;
        last = `GET /health answered ${status}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) {
        await this.fail(`vLLM was not ready after ${Math.round((Date.now() - t0) / 1000)} s (STARTUP_TIMEOUT_SECONDS)`, { last });
        return false;
      }
      if (Date.now() >= nextLog) {
        nextLog += PROGRESS_LOG_MS;
        this.log.info({ elapsed_s: Math.round((Date.now() - t0) / 1000), last, last_output: proc?.outputTail(1)[0] }, 'still waiting for vLLM to become ready');
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, READY_POLL_MS);
        proc?.exited.then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private async onUp(): Promise<void> {
    const c = this.d.client;
    this.version = await c.version();
    this.servedModel = (await c.models().catch(() => []))[0] ?? this.d.opts.model;
    if (this.stopping || this.state !== 'starting') return;
    let asleep = false;
    if (this.d.opts.mode === 'attach') asleep = await c.isSleeping().catch(() => false);
    this.policy.onReady(Date.now());
    if (asleep) {
      this.sleepLevel = (await c.reportedSleepLevel()) ?? this.d.opts.sleepLevel;
      this.sleepSince = Date.now();
      this.transition('sleeping', 'attached to a vLLM that is asleep');
      if (this.d.opts.wakeOnStart) this.wake('WAKE_ON_START').catch((e) => this.log.error({ err: (e as Error).message }, 'wake on start failed'));
    } else {
      this.transition('ready', `vLLM ${this.version ?? '(version unknown)'} is serving ${this.servedModel ?? 'its model'}`);
    }
    if (this.d.opts.mode === 'attach') this.monitorAttached();
  }

  /** Attach mode has no child to watch: poll the server's health instead. */
  private monitorAttached(): void {
    clearInterval(this.monitorTimer);
    let misses = 0;
    this.monitorTimer = setInterval(async () => {
      if (this.stopping || this.state === 'starting' || this.state === 'failed') return;
      let ok = false;
      try {
        ok = (await this.d.client.health(3000)) === 200;
      } catch {
        ok = false;
      }
      misses = ok ? 0 : misses + 1;
      if (misses >= 2) {
        clearInterval(this.monitorTimer);
        await this.fail('the attached vLLM stopped answering /health', {});
      }
    }, ATTACH_MONITOR_MS);
    this.monitorTimer.unref();
  }

  private async onExit(proc: EngineProcess, info: ExitInfo): Promise<void> {
    if (proc !== this.proc || this.stopping) return;
    // Any exit we did not ask for is a failure, whatever the code: vLLM may exit 0 after its engine died.
    const before = this.state;
    const reason = before === 'starting' ? 'vLLM exited before it was ready' : 'vLLM exited unexpectedly';
    await this.fail(reason, { exit_code: info.code, signal: info.signal, output_tail: proc.outputTail(60).join('\n') });
  }

  private async fail(reason: string, details: Record<string, unknown>): Promise<void> {
    if (this.stopping || this.state === 'failed') return;
    clearInterval(this.monitorTimer);
    this.sleepLevel = null;
    this.sleepSince = null;
    this.transition('failed', reason);
    this.log.error(details, reason);
    // vLLM's EngineCore survives its API server (§1.5): nothing of the old group may hold the GPU
    // when the next one starts.
    if (this.proc) {
      const report = await this.proc.kill();
      if (report.killed.length) this.log.warn({ killed: report.killed }, 'killed leftover vLLM processes');
      if (report.survivors.length) this.log.error({ survivors: report.survivors }, 'vLLM processes survived SIGKILL');
    }
    if (this.stopping) return;
    const delay = this.policy.onFailure(Date.now());
    if (delay === null && this.d.opts.mode === 'launch') {
      this.emit('fatal', `vLLM failed ${this.policy.recentFailures} times within 10 minutes`);
      return;
    }
    const wait = delay ?? 5000;
    this.log.info({ in_s: wait / 1000, recent_failures: this.policy.recentFailures }, this.d.opts.mode === 'launch' ? 'restarting vLLM' : 'polling the attached vLLM again');
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      this.emit('restart');
      void this.boot(`restart after failure: ${reason}`);
    }, wait);
  }

  // ---- the gate -------------------------------------------------------------------------------

  /** Resolves when a request may be forwarded; throws LifecycleError otherwise. */
  async admit(signal: AbortSignal, timeoutMs: number): Promise<void> {
    if (this.state === 'ready') return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      switch (this.state as EngineState) {
        case 'ready':
          return;
        case 'draining':
        case 'stopped':
          throw new LifecycleError('unavailable', 'the gateway is shutting down', 5000);
        case 'sleeping':
        case 'falling_asleep':
          if (!this.d.opts.autoWake) {
            if (this.state === 'sleeping') {
              throw new LifecycleError('unavailable', 'the engine is asleep and AUTO_WAKE is off: POST /wake first', this.expectedWakeMs());
            }
            break;
          }
          try {
            await this.within(this.wake('a request arrived while asleep (AUTO_WAKE)'), deadline, signal);
          } catch (e) {
            if (e instanceof LifecycleError && (e.kind === 'timeout' || e.kind === 'aborted' || e.kind === 'unavailable')) throw e;
            throw new LifecycleError('unavailable', `the engine could not be woken: ${(e as Error).message}`, this.expectedWakeMs());
          }
          continue;
        default:
          break; // starting, waking, failed: wait for the next transition
      }
      await this.within(this.nextTransition(), deadline, signal);
    }
  }

  private nextTransition(): Promise<void> {
    return new Promise((resolve) => this.once('transition', () => resolve()));
  }

  private within<T>(p: Promise<T>, deadline: number, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ms = deadline - Date.now();
      const timer = setTimeout(() => {
        cleanup();
        reject(new LifecycleError('timeout', `the engine was not ready within QUEUE_TIMEOUT_SECONDS (state: ${this.state})`, this.retryHint()));
      }, Math.max(0, ms));
      const onAbort = () => {
        cleanup();
        reject(new LifecycleError('aborted', 'the client went away'));
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          cleanup();
          resolve(v);
        },
        (e) => {
          cleanup();
          reject(e);
        },
      );
    });
  }

  expectedWakeMs(): number {
    return (this.lastWakeMs ?? 5000) + 1000;
  }

  /** How long a client should wait before retrying, from what the engine is doing now. */
  retryHint(): number {
    switch (this.state) {
      case 'sleeping':
      case 'waking':
        return this.expectedWakeMs();
      case 'falling_asleep':
        return (this.lastSleepMs ?? 2000) + this.expectedWakeMs();
      case 'starting':
      case 'failed':
        return 10_000;
      default:
        return 5000;
    }
  }

  // ---- sleep and wake -------------------------------------------------------------------------

  private checkCanChange(): void {
    if (this.state === 'starting' || this.state === 'failed') {
      throw new LifecycleError('conflict', `the engine is ${this.state}; sleep and wake are possible once it is ready`, this.retryHint());
    }
    if (this.state === 'draining' || this.state === 'stopped') throw new LifecycleError('unavailable', 'the gateway is shutting down', 5000);
  }

  /** Overlapping asks are serialised; an ask of the same kind as the last queued one joins it. */
  private request<T>(kind: 'sleep' | 'wake', run: () => Promise<T>): Promise<T> {
    this.checkCanChange();
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
    if (this.state === 'sleeping') {
      const l = this.sleepLevel ?? level;
      return { level: l, durationMs: 0, already: true, aborted: false, message: `the engine is already asleep (level ${l})` };
    }
    this.checkCanChange();
    const t0 = Date.now();
    this.transition('falling_asleep', reason);
    const busy = this.d.inflight.forwarded;
    const drained = await this.d.inflight.waitForwardedIdle(this.d.opts.sleepDrainTimeoutMs);
    if (this.state !== 'falling_asleep') throw new LifecycleError('unavailable', `sleep interrupted: the engine is ${this.state}`, 5000);
    const left = this.d.inflight.forwarded;
    if (!drained) this.log.warn({ in_flight: left, timeout_s: this.d.opts.sleepDrainTimeoutMs / 1000 }, 'sleep drain timed out: telling vLLM mode=abort');
    // `mode` exists from vLLM 0.17 (PR #34528): only send it to versions that have it.
    const mode = versionAtLeast(this.version, '0.17.0') ? (drained ? 'wait' : 'abort') : undefined;
    try {
      await this.d.client.sleep(level, mode, SLEEP_CALL_MS);
      if (!(await this.d.client.isSleeping())) throw new Error('vLLM still reports is_sleeping=false after /sleep');
    } catch (e) {
      return this.opFailed('sleep', 'falling_asleep', level, t0, e);
    }
    const durationMs = Date.now() - t0;
    this.lastSleepMs = durationMs;
    this.sleeps++;
    if (this.state === 'falling_asleep') {
      this.sleepLevel = level;
      this.sleepSince = Date.now();
      this.transition('sleeping', reason);
    }
    this.emit('sleep', { level, outcome: drained ? 'ok' : 'aborted', durationMs } satisfies OpEvent);
    const message = drained
      ? `the engine is asleep at level ${level}${busy ? ` after ${busy} in-flight request(s) finished` : ''}`
      : `the engine is asleep at level ${level}; ${left} request(s) still running after ${this.d.opts.sleepDrainTimeoutMs / 1000} s were aborted`;
    return { level, durationMs, already: false, aborted: !drained, message };
  }

  private async doWake(reason: string): Promise<WakeOutcome> {
    if (this.state === 'ready') return { durationMs: 0, already: true, message: 'the engine is already awake' };
    this.checkCanChange();
    const level = this.sleepLevel ?? this.d.opts.sleepLevel;
    const t0 = Date.now();
    this.transition('waking', reason);
    const c = this.d.client;
    try {
      if (level >= 2) {
        // Level 2 discarded the weights: a plain wake_up would serve garbage (docs/features/sleep_mode.md).
        await c.wakeUp(['weights'], WAKE_CALL_MS);
        await c.reloadWeights(RELOAD_CALL_MS);
        await c.wakeUp(['kv_cache'], WAKE_CALL_MS);
        await c.resetPrefixCache(WAKE_CALL_MS);
      } else {
        await c.wakeUp(undefined, WAKE_CALL_MS);
      }
      if (await c.isSleeping()) throw new Error('vLLM still reports is_sleeping=true after wake_up');
      if (this.d.opts.warmupOnWake) await this.warmup();
    } catch (e) {
      return this.opFailed('wake', 'waking', level, t0, e);
    }
    const durationMs = Date.now() - t0;
    this.lastWakeMs = durationMs;
    this.wakes++;
    if (this.state === 'waking') {
      this.sleepLevel = null;
      this.sleepSince = null;
      this.transition('ready', reason);
    }
    this.emit('wake', { level, outcome: 'ok', durationMs } satisfies OpEvent);
    return { durationMs, already: false, message: `the engine is awake (woke from level ${level}${this.d.opts.warmupOnWake ? ', warmed up' : ''})` };
  }

  private async warmup(): Promise<void> {
    const t0 = Date.now();
    try {
      await this.d.client.warmup(this.servedModel, WARMUP_MS);
      this.log.info({ ms: Date.now() - t0 }, 'warm-up completion done');
    } catch (e) {
      // A failed warm-up only matters if the engine is unhealthy; recover() decides then.
      if ((await this.d.client.health().catch(() => 0)) !== 200) throw e;
      this.log.warn({ err: (e as Error).message }, 'warm-up completion failed; opening anyway');
    }
  }

  /** A sleep or wake that vLLM refused: recover, count it, and say why in terms the caller can act on. */
  private async opFailed(op: 'sleep' | 'wake', during: EngineState, level: 1 | 2, t0: number, e: unknown): Promise<never> {
    const unsupported = e instanceof EngineHttpError && e.status === 404;
    await this.recover(during, op, e);
    this.emit(op, { level, outcome: unsupported ? 'unsupported' : 'error', durationMs: Date.now() - t0 } satisfies OpEvent);
    if (unsupported) {
      const route = op === 'sleep' ? 'POST /sleep' : 'POST /wake_up';
      throw new LifecycleError('unsupported', `vLLM has no sleep endpoints (${route} answered 404): start it with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1`);
    }
    throw new LifecycleError('upstream', `vLLM failed to ${op}: ${(e as Error).message}`);
  }

  /** After a failed sleep or wake: back to what vLLM reports, or failed when it is unhealthy. */
  private async recover(expect: EngineState, op: string, e: unknown): Promise<void> {
    this.log.error({ err: (e as Error).message }, `${op} failed`);
    if (this.state !== expect) return;
    const healthy = (await this.d.client.health().catch(() => 0)) === 200;
    if (this.state !== expect) return;
    if (!healthy) return this.fail(`${op} failed and vLLM is not healthy`, { err: (e as Error).message });
    const asleep = await this.d.client.isSleeping().catch(() => false);
    if (asleep) this.sleepLevel ??= this.d.opts.sleepLevel;
    else {
      this.sleepLevel = null;
      this.sleepSince = null;
    }
    this.transition(asleep ? 'sleeping' : 'ready', `${op} failed: ${(e as Error).message}`);
  }

  // ---- shutdown -------------------------------------------------------------------------------

  beginDrain(reason: string): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.monitorTimer);
    if (this.state !== 'stopped') this.transition('draining', reason);
  }

  /** Stops the vLLM process group (launch mode); a sleeping engine is stopped without waking it. */
  async stopEngine(skipGrace?: AbortSignal): Promise<StopReport | null> {
    const report = this.proc && this.d.opts.mode === 'launch' ? await this.proc.stop(this.d.opts.engineStopTimeoutMs, skipGrace) : null;
    this.transition('stopped', 'shutdown complete');
    return report;
  }

  /** The engine's process group killed at once, synchronously (see EngineProcess.killNow); launch mode only. */
  killEngineNow(): boolean {
    return this.d.opts.mode === 'launch' && !!this.proc?.killNow();
  }

  snapshot() {
    return {
      state: this.state,
      since: new Date(this.stateSince).toISOString(),
      sleep: {
        level: this.sleepLevel,
        since: this.sleepSince ? new Date(this.sleepSince).toISOString() : null,
        last_sleep_ms: this.lastSleepMs,
        last_wake_ms: this.lastWakeMs,
        sleeps: this.sleeps,
        wakes: this.wakes,
      },
    };
  }
}
