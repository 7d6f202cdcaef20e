// Waiting, with Node's own tools: AbortSignal for deadlines, events.once for "until this fires".
import { once } from 'node:events';

/** Resolves after `ms` (global timers, so node:test's mock timers drive it). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `p`, or a rejection with `signal.reason` as soon as the signal aborts. */
export async function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  const done = new AbortController();
  try {
    return await Promise.race([
      p,
      once(signal, 'abort', { signal: done.signal }).then(() => {
        throw signal.reason;
      }),
    ]);
  } finally {
    done.abort();
  }
}
