// Idle sleep: after IDLE_SLEEP_SECONDS with no activity in flight, put the engine to sleep at SLEEP_LEVEL.
// The idle time counts from the end of the last activity (POST /v1/*, /inference), or from the moment the
// engine became ready when nothing has happened since.
import type { Logger } from '../logger.ts';
import type { Inflight } from './inflight.ts';
import type { EngineLifecycle, Transition } from './lifecycle.ts';

export class IdleSleeper {
  private timer: NodeJS.Timeout | undefined;
  private readySince = 0;

  constructor(
    private readonly lifecycle: EngineLifecycle,
    private readonly inflight: Inflight,
    private readonly idleMs: number,
    private readonly level: 1 | 2,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.idleMs <= 0) return;
    this.inflight.on('change', () => this.schedule());
    this.lifecycle.on('transition', (t: Transition) => {
      if (t.to === 'ready') this.readySince = Date.now();
      this.schedule();
    });
    this.schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.lifecycle.state !== 'ready' || this.inflight.total > 0) return;
    const idleSince = Math.max(this.inflight.lastActivityEnd, this.readySince);
    const wait = Math.max(0, idleSince + this.idleMs - Date.now());
    this.timer = setTimeout(() => this.fire(), wait);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    if (this.lifecycle.state !== 'ready' || this.inflight.total > 0) return;
    this.log.info({ idle_s: this.idleMs / 1000, sleep_level: this.level }, 'engine idle: going to sleep');
    this.lifecycle.sleep(this.level, `idle for ${this.idleMs / 1000} s`).catch((e) => this.log.error({ err: (e as Error).message }, 'idle sleep failed'));
  }
}
