// The simulated engine as the API process sees it: scheduler, sleep mode and generation (docs/vllm.md, Sleep mode).
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { pieceAt } from './tokens.ts';
import type { VllmLog } from './log.ts';

export type FinishReason = 'stop' | 'length' | 'abort';
export type SleepMode = 'abort' | 'wait' | 'keep';
type Scheduler = 'running' | 'paused_new' | 'paused_all';

export class EngineDeadError extends Error {
  override readonly name = 'EngineDeadError';
  constructor() {
    super('EngineCore encountered an issue. See stack trace (above) for the root cause.');
  }
}
export class ShutdownRejectedError extends Error {
  override readonly name = 'ShutdownRejectedError';
}

export interface GenerateParams {
  id: string;
  seed: number;
  maxTokens: number;
  minTokens: number;
  ignoreEos: boolean;
  stop: string[];
  signal: AbortSignal; // the client went away
}

export interface GenerateResult {
  finishReason: FinishReason;
  stopReason: string | null;
  completionTokens: number;
  text: string;
}

interface Active {
  id: string;
  ctl: AbortController;
  why?: 'abort' | 'dead' | 'disconnect';
}

export interface EngineTiming {
  ttftMs: number;
  tokenMs: number;
  outputTokens: number;
  sleepMs: number;
  wakeMs: number;
  crashAfterRequests: number;
  queueOnSleep: boolean; // vLLM >= 0.17 holds requests while asleep; older builds crash
  /** vLLM >= 0.31: a partial wake keeps scheduling paused until everything is resident again. */
  pausedUntilFullyAwake: boolean;
  fp8KvCache: boolean;
  sleepFreedGiB: number;
  sleepInUseGiB: number;
}

export interface SimStats {
  requests: number;
  requests_while_asleep: number;
  inflight: number;
  max_concurrency: number;
  aborted_by_disconnect: number;
  aborted_by_sleep: number;
  aborted_by_shutdown: number;
  reload_weights_calls: number;
  garbage_answers: number;
  sleep_calls: { level: number; mode: string; inflight: number; at: number }[];
  wake_calls: { tags: string[] | null; at: number }[];
}

export class SimEngine extends EventEmitter {
  scheduler: Scheduler = 'running';
  sleepingTags = new Set<string>();
  sleepLevel = 0;
  weightsValid = true;
  /** A level-2 wake with an FP8 KV cache: answers are garbage from then on, whatever is reloaded. */
  kvCorrupt = false;
  dead = false;
  shuttingDown = false;
  private readonly active = new Set<Active>();
  private admitted = 0; // requests generating (admitted past the paused scheduler)
  readonly stats: SimStats = {
    requests: 0,
    requests_while_asleep: 0,
    inflight: 0,
    max_concurrency: 0,
    aborted_by_disconnect: 0,
    aborted_by_sleep: 0,
    aborted_by_shutdown: 0,
    reload_weights_calls: 0,
    garbage_answers: 0,
    sleep_calls: [],
    wake_calls: [],
  };

  constructor(
    private readonly timing: EngineTiming,
    private readonly log: VllmLog,
    private readonly onCrash: (reason: string) => void,
  ) {
    super();
    this.setMaxListeners(0);
  }

  isSleeping(): boolean {
    return this.scheduler !== 'running' || this.sleepingTags.size > 0;
  }

  sleepStateLabel(): 'awake' | 'weights_offloaded' | 'discard_all' {
    if (this.sleepingTags.size === 0) return 'awake';
    return this.sleepLevel >= 2 ? 'discard_all' : 'weights_offloaded';
  }

  async generate(p: GenerateParams, onPiece: (piece: string) => void): Promise<GenerateResult> {
    if (this.dead) throw new EngineDeadError();
    if (this.shuttingDown) throw new ShutdownRejectedError('engine is shutting down');
    const n = ++this.stats.requests;
    const entry: Active = { id: p.id, ctl: new AbortController() };
    const onDisconnect = () => this.abortOne(entry, 'disconnect');
    p.signal.addEventListener('abort', onDisconnect, { once: true });
    this.active.add(entry);
    this.stats.inflight = this.active.size;
    try {
      if (this.isSleeping()) {
        if (this.sleepingTags.size > 0) this.stats.requests_while_asleep++;
        if (!this.timing.queueOnSleep && this.sleepingTags.size > 0) {
          this.onCrash('CUDA error: an illegal memory access was encountered');
          throw new EngineDeadError();
        }
      }
      await this.admit(entry);
      this.admitted++;
      this.stats.max_concurrency = Math.max(this.stats.max_concurrency, this.admitted);
      try {
        return await this.run(p, entry, n, onPiece);
      } finally {
        this.admitted--;
      }
    } finally {
      p.signal.removeEventListener('abort', onDisconnect);
      this.active.delete(entry);
      this.stats.inflight = this.active.size;
      if (this.admitted === 0) this.emit('idle');
    }
  }

  private async run(p: GenerateParams, entry: Active, n: number, onPiece: (piece: string) => void): Promise<GenerateResult> {
    // A partial wake resumes the scheduler while kv_cache still sleeps: vLLM crashes on the next step (#44395).
    if (this.sleepingTags.size > 0) {
      this.onCrash('CUDA error: an illegal memory access was encountered (scheduled while partially asleep)');
      throw new EngineDeadError();
    }
    const garbage = !this.weightsValid || this.kvCorrupt;
    if (garbage) this.stats.garbage_answers++;
    let text = '';
    let tokens = 0;
    const natural = this.timing.outputTokens;
    const crashAt = this.timing.crashAfterRequests === n ? Math.max(1, Math.floor(Math.min(p.maxTokens, natural) / 2)) : -1;
    let wait = this.timing.ttftMs;
    for (;;) {
      await this.pause(wait, entry);
      while (this.scheduler === 'paused_all' && !entry.ctl.signal.aborted) await this.admit(entry);
      const ended = this.ended(entry);
      if (ended) return { finishReason: 'abort', stopReason: null, completionTokens: tokens, text };
      let piece = pieceAt(p.seed, tokens, garbage);
      tokens++;
      const joined = text + piece;
      let stopHit: string | null = null;
      let cut = -1;
      for (const s of p.stop) {
        const at = s ? joined.indexOf(s, Math.max(0, text.length - s.length + 1)) : -1;
        if (at >= 0 && (cut < 0 || at < cut)) {
          cut = at;
          stopHit = s;
        }
      }
      if (stopHit !== null) piece = joined.slice(text.length, cut);
      text += piece;
      if (piece) onPiece(piece);
      if (stopHit !== null) return { finishReason: 'stop', stopReason: stopHit, completionTokens: tokens, text };
      if (tokens === crashAt) {
        this.onCrash('CUDA error: an illegal memory access was encountered (VLLM_SIM_CRASH_AFTER_REQUESTS)');
        await this.pause(60_000, entry); // interrupted by the death
        throw new EngineDeadError();
      }
      if (tokens >= p.maxTokens) return { finishReason: 'length', stopReason: null, completionTokens: tokens, text };
      if (!p.ignoreEos && tokens >= natural && tokens >= p.minTokens) {
        return { finishReason: 'stop', stopReason: null, completionTokens: tokens, text };
      }
      wait = this.timing.tokenMs;
    }
  }

  /** Returns true when the request was aborted; throws when the engine died. */
  private ended(entry: Active): boolean {
    if (entry.why === 'dead' || this.dead) throw new EngineDeadError();
    return entry.why === 'abort' || entry.why === 'disconnect';
  }

  private async pause(ms: number, entry: Active): Promise<void> {
    if (entry.ctl.signal.aborted) return;
    try {
      await delay(ms, undefined, { signal: entry.ctl.signal });
    } catch {
      /* aborted: the caller reads entry.why */
    }
  }

  /** Waits while the scheduler admits nothing new (paused) — vLLM parks the request in `waiting`. */
  private async admit(entry: Active): Promise<void> {
    while (this.scheduler !== 'running' && !entry.ctl.signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.off('resumed', done);
          entry.ctl.signal.removeEventListener('abort', done);
          resolve();
        };
        this.on('resumed', done);
        entry.ctl.signal.addEventListener('abort', done, { once: true });
      });
    }
    this.ended(entry);
  }

  private abortOne(entry: Active, why: NonNullable<Active['why']>): void {
    if (entry.why) return;
    entry.why = why;
    if (why === 'disconnect') {
      this.stats.aborted_by_disconnect++;
      this.log('INFO', 'async_llm.py:512', `Request ${entry.id} aborted.`);
    }
    entry.ctl.abort();
  }

  abortAll(cause: 'sleep' | 'shutdown'): number {
    let n = 0;
    for (const e of this.active) {
      if (!e.why) n++;
      this.abortOne(e, 'abort');
    }
    if (cause === 'sleep') this.stats.aborted_by_sleep += n;
    else this.stats.aborted_by_shutdown += n;
    return n;
  }

  markDead(): void {
    if (this.dead) return;
    this.dead = true;
    for (const e of this.active) this.abortOne(e, 'dead');
    this.emit('resumed');
  }

  private resume(): void {
    this.scheduler = 'running';
    this.emit('resumed');
  }

  waitIdle(): Promise<void> {
    if (this.admitted === 0) return Promise.resolve();
    return new Promise((resolve) => this.once('idle', resolve));
  }

  async sleep(level: number, mode: SleepMode): Promise<void> {
    this.stats.sleep_calls.push({ level, mode, inflight: this.admitted, at: Date.now() });
    // sleep = pause_scheduler(mode) then executor.sleep(level) (core.py, PR #34528)
    await this.pauseScheduler(mode);
    if (level < 1) return; // level 0: pause only
    if (this.sleepingTags.size > 0) {
      this.log('WARNING', 'abstract.py:211', 'Executor is already sleeping.');
      return;
    }
    const t0 = Date.now();
    await delay(level >= 2 ? this.timing.sleepMs / 2 : this.timing.sleepMs);
    this.sleepingTags = new Set(['weights', 'kv_cache']);
    this.sleepLevel = level;
    if (level >= 2) this.weightsValid = false;
    const { sleepFreedGiB: freed, sleepInUseGiB: inUse } = this.timing;
    this.log('INFO', 'gpu_worker.py:117', `Sleep mode freed ${freed.toFixed(2)} GiB memory, ${inUse.toFixed(2)} GiB memory is still in use.`);
    this.log('INFO', 'abstract.py:224', `It took ${((Date.now() - t0) / 1000).toFixed(6)} seconds to fall asleep.`);
  }

  async wakeUp(tags: string[] | null): Promise<void> {
    this.stats.wake_calls.push({ tags, at: Date.now() });
    const wanted = tags?.filter((t) => t !== 'scheduling') ?? null;
    const list = wanted && wanted.length ? wanted : null;
    this.log('INFO', 'api_router.py:64', `wake up the engine with tags: ${list ? `[${list.map((t) => `'${t}'`).join(', ')}]` : 'None'}`);
    if (this.sleepingTags.size === 0) {
      this.log('WARNING', 'abstract.py:236', 'Executor is not sleeping.');
    } else {
      const missing = list?.find((t) => !this.sleepingTags.has(t));
      if (missing) {
        this.log('WARNING', 'abstract.py:241', `Tag ${missing} is not in sleeping tags {${[...this.sleepingTags].map((t) => `'${t}'`).join(', ')}}`);
      } else {
        const t0 = Date.now();
        const woken = list ?? [...this.sleepingTags];
        await delay((this.timing.wakeMs * woken.length) / 2);
        for (const t of woken) this.sleepingTags.delete(t);
        if (woken.includes('kv_cache') && this.sleepLevel >= 2 && this.timing.fp8KvCache) this.kvCorrupt = true;
        if (this.sleepingTags.size === 0) this.sleepLevel = 0;
        this.log('INFO', 'abstract.py:252', `It took ${((Date.now() - t0) / 1000).toFixed(6)} seconds to wake up tags {${woken.map((t) => `'${t}'`).join(', ')}}.`);
      }
    }
    // Before 0.31 resume_scheduler() ran unconditionally, even after a partial wake (a crash source, #44395).
    if (!this.timing.pausedUntilFullyAwake || this.sleepingTags.size === 0) this.resume();
  }

  /** What each component is doing, as vLLM >= 0.31's vllm:engine_sleep_component_state reports it. */
  componentStates(): { scheduler: 'running' | 'paused'; weights: 'resident' | 'offloaded' | 'discarded'; kv_cache: 'resident' | 'discarded' } {
    return {
      scheduler: this.scheduler === 'running' ? 'running' : 'paused',
      weights: !this.sleepingTags.has('weights') ? 'resident' : this.sleepLevel >= 2 ? 'discarded' : 'offloaded',
      kv_cache: this.sleepingTags.has('kv_cache') ? 'discarded' : 'resident',
    };
  }

  reloadWeights(): void {
    if (this.sleepingTags.has('weights')) throw new Error('weights are not allocated: wake_up(tags=["weights"]) first');
    this.weightsValid = true;
    this.stats.reload_weights_calls++;
  }

  /** `/pause` and the first half of `/sleep`: abort, wait for, or freeze what is in flight. */
  async pauseScheduler(mode: SleepMode): Promise<void> {
    if (mode === 'keep') {
      this.scheduler = 'paused_all';
      return;
    }
    this.scheduler = 'paused_new';
    if (mode === 'abort') {
      const n = this.abortAll('sleep');
      if (n) this.log('INFO', 'core.py:640', `Aborted ${n} in-flight requests before sleeping.`);
    } else if (this.admitted > 0) {
      this.log('INFO', 'core.py:633', 'Waiting for in-flight requests to complete before sleeping...');
      await this.waitIdle();
    }
  }

  resumeScheduler(): void {
    this.resume();
  }

  /** `--shutdown-timeout`: 0 aborts in-flight requests; N drains up to N seconds, then aborts the rest. */
  async shutdown(timeoutS: number): Promise<void> {
    this.shuttingDown = true;
    if (timeoutS > 0 && this.admitted > 0) {
      this.log('INFO', 'core.py', `[shutdown] EngineCore: draining in-flight requests count=${this.admitted} timeout=${timeoutS}s`);
      await Promise.race([this.waitIdle(), delay(timeoutS * 1000)]);
    }
    const n = this.abortAll('shutdown');
    this.log('INFO', 'core.py', `[shutdown] EngineCore: aborting in-flight requests count=${n}`);
    // Parked requests (scheduler paused) are aborted too; let the abort outputs flush.
    this.resume();
    await this.waitIdle();
  }
}
