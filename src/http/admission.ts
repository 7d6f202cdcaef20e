// The gate between a request and vLLM: wait for the engine (starting, waking, asleep with AUTO_WAKE)
// up to QUEUE_TIMEOUT_SECONDS, counting the request in flight from arrival to its last byte.
import type { ServerResponse } from 'node:http';
import type { Ticket } from '../engine/inflight.ts';
import { acceptsWork, servesReads } from '../engine/states.ts';
import type { AppDeps } from './types.ts';

export function begin(d: AppDeps, out: ServerResponse, isActivity: boolean): Ticket {
  const ticket = d.inflight.begin(isActivity);
  out.on('close', ticket.end); // emitted once: `on` spares `once`'s wrapper
  return ticket;
}

export async function admit(d: AppDeps, out: ServerResponse, passive: boolean): Promise<void> {
  const state = d.lifecycle.state;
  // GETs never generate: vLLM's API process answers them while the engine sleeps (docs/vllm.md), so they
  // do not wake it.
  if (acceptsWork(state) || (passive && servesReads(state))) return;
  const ac = new AbortController();
  const onClose = () => ac.abort();
  out.once('close', onClose);
  const t0 = performance.now();
  try {
    await d.lifecycle.admit(ac.signal, d.config.queueTimeoutMs);
    d.metrics.wakeWait.observe((performance.now() - t0) / 1000);
  } finally {
    out.off('close', onClose);
  }
}
