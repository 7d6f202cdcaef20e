// Counts requests from arrival to their last byte: all of them (shutdown drain, gauge), those forwarded to
// vLLM (sleep drain), and activity — POST /v1/* and /inference — for the idle timer.
import { EventEmitter } from 'node:events';

export interface Ticket {
  /** The request passed admission and is being sent to vLLM. */
  forwarded(): void;
  /** The last byte was written or the client went away; safe to call more than once. */
  end(): void;
}

export class Inflight extends EventEmitter {
  total = 0;
  forwarded = 0;
  activity = 0;
  lastActivityEnd = Date.now();

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  begin(isActivity: boolean): Ticket {
    this.total++;
    if (isActivity) this.activity++;
    let forwarded = false;
    let ended = false;
    this.emit('change');
    return {
      forwarded: () => {
        if (forwarded || ended) return;
        forwarded = true;
        this.forwarded++;
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.total--;
        if (forwarded) this.forwarded--;
        if (isActivity) {
          this.activity--;
          this.lastActivityEnd = Date.now();
        }
        this.emit('change');
      },
    };
  }

  /** Resolves true when `count()` reaches zero, false at the deadline. */
  private waitZero(count: () => number, timeoutMs: number): Promise<boolean> {
    if (count() === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('change', check);
        resolve(ok);
      };
      const check = () => {
        if (count() === 0) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('change', check);
    });
  }

  waitForwardedIdle(timeoutMs: number): Promise<boolean> {
    return this.waitZero(() => this.forwarded, timeoutMs);
  }

  waitIdle(timeoutMs: number): Promise<boolean> {
    return this.waitZero(() => this.total, timeoutMs);
  }
}
