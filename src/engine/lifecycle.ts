// The engine lifecycle: one engine's coordinator, and the single writer of its state (docs/contract.md,
// Engine states). Its parts — supervision (supervisor.ts), sleep and wake (sleep-wake.ts) and the admission
// gate (gate.ts) — read the state and ask here for transitions, each checked against the table in states.ts.
import { EventEmitter, once } from 'node:events';
import type { Logger } from '../logger.ts';
import type { EngineApi } from './client.ts';
import { Gate } from './gate.ts';
import type { Inflight } from './inflight.ts';
import type { EngineChild, StopReport } from './process.ts';
import type { RouteMatch, RouteTable } from './routes.ts';
import { SleepWake, type SleepOutcome, type WakeOutcome } from './sleep-wake.ts';
import { IllegalTransition, StateMachine, type EngineState, type Transition } from './states.ts';
import { Supervisor } from './supervisor.ts';

export type { EngineState, Transition } from './states.ts';
export type { SleepOutcome, WakeOutcome } from './sleep-wake.ts';

/** A finished sleep or wake, for the metrics. */
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
  wakeCheck: 'restart' | 'warn' | 'off';
  sleepMinFreedShare: number;
  sleepDrainTimeoutMs: number;
  startupTimeoutMs: number;
  engineStopTimeoutMs: number;
}

export interface LifecycleDeps {
  opts: LifecycleOptions;
  client: EngineApi;
  inflight: Inflight;
  log: Logger;
  /** Launch mode: starts a new vLLM process. */
  spawnEngine?: () => EngineChild;
}

/** What the coordinator keeps about the engine besides its state; its parts record into it. */
export interface EngineFacts {
  version: string | undefined;
  servedModel: string | undefined;
  /** The routes vLLM serves, read once it is up (undefined when it does not say). */
  routes: RouteTable | undefined;
  /** Level of the current sleep (null when awake). */
  sleepLevel: 1 | 2 | null;
  sleepSince: number | null;
  lastSleepMs: number | null;
  lastWakeMs: number | null;
  sleeps: number;
  wakes: number;
  restarts: number;
  /** The greedy answer recorded when the engine first became ready, for the wake check. */
  reference: string | undefined;
  wakeCheck: { last: 'ok' | 'mismatch' | null; failures: number };
  /** What the last sleep freed and left in use, as vLLM's worker logged it (launch mode). */
  sleepFreed: { freedGiB: number; inUseGiB: number; at: string } | null;
}

/** The coordinator as its parts see it: the state to read, the one way to change it, the facts to record. */
export interface EngineCore {
  readonly state: EngineState;
  /** Shutdown has begun: nothing restarts, nothing new starts. */
  readonly stopping: boolean;
  readonly facts: EngineFacts;
  readonly deps: LifecycleDeps;
  /**
   * Entering `sleeping` records the sleep's level (`sleepLevel`, else SLEEP_LEVEL) and time, unless a sleep
   * already is (a failed wake goes back to it); entering `ready` or `failed` clears them.
   */
  transition(to: EngineState, reason: string, sleepLevel?: 1 | 2): boolean;
  /** The next transition, or a rejection when `signal` aborts first. */
  nextTransition(signal?: AbortSignal): Promise<Transition>;
  emit(event: 'sleep' | 'wake', e: OpEvent): void;
  emit(event: 'restart'): void;
  emit(event: 'fatal', reason: string): void;
  emit(event: 'misconfigured', reason: string): void;
  emit(event: 'wake-check', ok: boolean): void;
  emit(event: 'sleep-freed', freed: NonNullable<EngineFacts['sleepFreed']>): void;
}

/**
 * Events: 'transition' (Transition), 'sleep' and 'wake' (OpEvent), 'restart', 'fatal' (the reason: too many
 * failures, the platform should restart the gateway), 'misconfigured' (the reason: vLLM cannot start as
 * configured, no restart can help), 'wake-check' (true or false after each checked wake), 'sleep-freed'
 * (what a sleep freed, from vLLM's log), 'illegal' (a refused transition: a bug).
 */
export class EngineLifecycle extends EventEmitter {
  private readonly machine = new StateMachine('starting');
  private shuttingDown = false;
  readonly startedAt = Date.now();
  private readonly facts: EngineFacts = {
    version: undefined,
    servedModel: undefined,
    routes: undefined,
    sleepLevel: null,
    sleepSince: null,
    lastSleepMs: null,
    lastWakeMs: null,
    sleeps: 0,
    wakes: 0,
    restarts: 0,
    reference: undefined,
    wakeCheck: { last: null, failures: 0 },
    sleepFreed: null,
  };
  private readonly supervisor: Supervisor;
  private readonly ops: SleepWake;
  private readonly gate: Gate;

  constructor(private readonly d: LifecycleDeps) {
    super();
    this.setMaxListeners(0);
    const self = this;
    const core: EngineCore = {
      get state() {
        return self.machine.state;
      },
      get stopping() {
        return self.shuttingDown;
      },
      facts: this.facts,
      deps: d,
      transition: (to, reason, sleepLevel) => this.transition(to, reason, sleepLevel),
      nextTransition: (signal) => once(this, 'transition', signal ? { signal } : {}).then(([t]) => t as Transition),
      emit: (event: string, arg?: unknown) => void this.emit(event, arg),
    };
    this.ops = new SleepWake(core, (reason, details) => this.supervisor.fail(reason, details));
    this.supervisor = new Supervisor(core, (reason) => this.ops.wake(reason));
    this.gate = new Gate(core, (reason) => this.ops.wake(reason));
  }

  get state(): EngineState {
    return this.machine.state;
  }

  get stateSince(): number {
    return this.machine.since;
  }

  get version(): string | undefined {
    return this.facts.version;
  }

  get servedModel(): string | undefined {
    return this.facts.servedModel;
  }

  /** Whether vLLM serves `method path`, as far as its schema tells; undefined when it did not say. */
  route(path: string, method: string): RouteMatch | undefined {
    return this.facts.routes?.match(path, method);
  }

  get restarts(): number {
    return this.facts.restarts;
  }

  /** The running child's pid (launch mode), else null. */
  get childPid(): number | null {
    const c = this.supervisor.child;
    return c?.running ? c.pid : null;
  }

  /** The only place the state changes: a pair the table does not allow is refused and logged as a bug. */
  private transition(to: EngineState, reason: string, sleepLevel?: 1 | 2): boolean {
    let t: Transition | null;
    try {
      t = this.machine.move(to, reason);
    } catch (e) {
      if (!(e instanceof IllegalTransition)) throw e;
      this.d.log.error({ from: e.from, to, reason, stack: e.stack }, `${e.message} refused (a gateway bug)`);
      this.emit('illegal', { from: e.from, to, reason });
      return false;
    }
    const f = this.facts;
    if (to === 'sleeping') {
      f.sleepLevel ??= sleepLevel ?? this.d.opts.sleepLevel;
      f.sleepSince ??= Date.now();
    } else if (to === 'ready' || to === 'failed') {
      f.sleepLevel = null;
      f.sleepSince = null;
    }
    if (t) {
      this.d.log.info({ from: t.from, to, reason }, `engine ${t.from} → ${to}`);
      this.emit('transition', t);
    }
    return true;
  }

  start(): void {
    this.supervisor.start();
  }

  /** Resolves when a request may be forwarded; throws EngineError (or ClientGone when `signal` aborts). */
  admit(signal: AbortSignal, timeoutMs: number): Promise<void> {
    return this.gate.admit(signal, timeoutMs);
  }

  /** How long a client should wait before retrying, from what the engine is doing now. */
  retryHint(): number {
    return this.gate.retryHint();
  }

  sleep(level: 1 | 2, reason: string): Promise<SleepOutcome> {
    return this.ops.sleep(level, reason);
  }

  wake(reason: string): Promise<WakeOutcome> {
    return this.ops.wake(reason);
  }

  beginDrain(reason: string): void {
    this.shuttingDown = true;
    this.supervisor.stopTimers();
    this.transition('draining', reason);
  }

  /** Stops the vLLM process group (launch mode); a sleeping engine is stopped without waking it. */
  async stopEngine(skipGrace?: AbortSignal): Promise<StopReport | null> {
    if (!this.shuttingDown) this.beginDrain('stop');
    const report = this.d.opts.mode === 'launch' ? await this.supervisor.stop(this.d.opts.engineStopTimeoutMs, skipGrace) : null;
    this.transition('stopped', 'shutdown complete');
    return report;
  }

  /** The engine's process group killed at once, synchronously (see EngineProcess.killNow); launch mode only. */
  killEngineNow(): boolean {
    return this.d.opts.mode === 'launch' && this.supervisor.killNow();
  }

  snapshot() {
    const f = this.facts;
    return {
      state: this.machine.state,
      since: new Date(this.machine.since).toISOString(),
      sleep: {
        level: f.sleepLevel,
        since: f.sleepSince ? new Date(f.sleepSince).toISOString() : null,
        last_sleep_ms: f.lastSleepMs,
        last_wake_ms: f.lastWakeMs,
        sleeps: f.sleeps,
        wakes: f.wakes,
        freed_gib: f.sleepFreed?.freedGiB ?? null,
        in_use_gib: f.sleepFreed?.inUseGiB ?? null,
      },
      wake_check: { mode: this.d.opts.wakeCheck, last: f.wakeCheck.last, failures: f.wakeCheck.failures },
    };
  }
}
