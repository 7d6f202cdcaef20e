// The admission gate: a request waits here until the engine can take it (starting, waking, asleep with
// AUTO_WAKE), up to QUEUE_TIMEOUT_SECONDS, and learns how long to wait before retrying when it cannot.
import { ClientGone, EngineError } from '../errors.ts';
import type { EngineCore } from './lifecycle.ts';
import type { WakeOutcome } from './sleep-wake.ts';
import { acceptsWork, isAsleep, isDown, isStopping } from './states.ts';
import { untilAborted } from './timing.ts';

export class Gate {
  constructor(
    private readonly core: EngineCore,
    private readonly wake: (reason: string) => Promise<WakeOutcome>,
  ) {}

  /** Resolves when a request may be forwarded; throws EngineError, or ClientGone when `client` aborts. */
  async admit(client: AbortSignal, timeoutMs: number): Promise<void> {
    if (acceptsWork(this.core.state)) return;
    const deadline = AbortSignal.any([client, AbortSignal.timeout(Math.max(0, timeoutMs))]);
    try {
      for (;;) {
        const s = this.core.state;
        if (acceptsWork(s)) return;
        if (isStopping(s)) throw new EngineError('unavailable', 'the gateway is shutting down', 5000);
        if (isAsleep(s)) {
          if (this.core.deps.opts.autoWake) {
            await untilAborted(this.wakeForRequest(), deadline);
            continue;
          }
          if (s === 'sleeping') throw new EngineError('unavailable', 'the engine is asleep and AUTO_WAKE is off: POST /wake first', this.expectedWakeMs());
        }
        // starting, waking, failed, or falling asleep without AUTO_WAKE: wait for the next transition
        await this.core.nextTransition(deadline);
      }
    } catch (e) {
      if (client.aborted) throw new ClientGone('the client went away while waiting for the engine');
      if (deadline.aborted) throw new EngineError('timeout', `the engine was not ready within QUEUE_TIMEOUT_SECONDS (state: ${this.core.state})`, this.retryHint());
      throw e;
    }
  }

  private async wakeForRequest(): Promise<void> {
    try {
      await this.wake('a request arrived while asleep (AUTO_WAKE)');
    } catch (e) {
      // The wake failed and the engine is being restarted (a failed wake check): wait for it like any start.
      if (isDown(this.core.state)) return;
      if (e instanceof EngineError && (e.kind === 'timeout' || e.kind === 'unavailable')) throw e;
      throw new EngineError('unavailable', `the engine could not be woken: ${(e as Error).message}`, this.expectedWakeMs());
    }
  }

  expectedWakeMs(): number {
    return (this.core.facts.lastWakeMs ?? 5000) + 1000;
  }

  /** How long a client should wait before retrying, from what the engine is doing now. */
  retryHint(): number {
    const f = this.core.facts;
    switch (this.core.state) {
      case 'sleeping':
      case 'waking':
        return this.expectedWakeMs();
      case 'falling_asleep':
        return (f.lastSleepMs ?? 2000) + this.expectedWakeMs();
      case 'starting':
      case 'failed':
        return 10_000;
      default:
        return 5000;
    }
  }
}
