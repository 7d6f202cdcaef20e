// SIGTERM/SIGINT (and SIGHUP): drain in-flight requests, end what is left cleanly, stop the vLLM process group.
import type { Server } from 'node:http';
import type { Inflight } from './engine/inflight.ts';
import type { EngineLifecycle } from './engine/lifecycle.ts';
import type { IdleSleeper } from './engine/idle.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { untilAborted } from './engine/timing.ts';
import type { Forwarder } from './proxy/forward.ts';

export interface ShutdownDeps {
  server: Server;
  lifecycle: EngineLifecycle;
  inflight: Inflight;
  forwarder: Forwarder;
  idle: IdleSleeper;
  metrics: Metrics;
  log: Logger;
  drainTimeoutMs: number;
  /** Launch mode: how long vLLM gets after SIGTERM (for the log); undefined in attach mode. */
  engineStopTimeoutMs?: number;
}


/** Returns the exit code. `hurry` aborts when a second signal arrives: the remaining waits are skipped. */
export async function shutdown(d: ShutdownDeps, reason: string, hurry: AbortSignal): Promise<number> {
  const t0 = Date.now();
  const log = d.log.child({ component: 'shutdown' });
  d.lifecycle.beginDrain(reason);
  d.idle.stop();
  // The listener stays open so new requests get a prompt 503 (with Connection: close) instead of a refused
  // connection; idle keep-alive sockets are closed now and whenever the in-flight count drops.
  d.server.closeIdleConnections();
  const reap = () => d.server.closeIdleConnections();
  d.inflight.on('change', reap);
  const inFlight = d.inflight.total;
  log.info({ in_flight: inFlight, timeout_s: d.drainTimeoutMs / 1000 }, `draining (${reason})`);
  // A second signal ends the wait: the drain counts as not complete.
  const drained = await untilAborted(d.inflight.waitIdle(d.drainTimeoutMs), hurry).catch(() => false);
  d.metrics.drains.inc({ outcome: drained ? 'complete' : 'deadline' });
  if (drained) log.info({ ms: Date.now() - t0, finished: inFlight }, 'drain complete');
  else {
    const left = d.inflight.total;
    log.warn({ ms: Date.now() - t0, still_running: left }, hurry.aborted ? 'second signal: ending requests now' : 'drain deadline reached: ending the requests still running');
    d.forwarder.abortAll(hurry.aborted ? 'the gateway is shutting down (a second signal ended the drain)' : 'the gateway is shutting down (DRAIN_TIMEOUT_SECONDS reached)');
    // Let the SSE error events and 503s flush before sockets go; even a hurried stop allows a moment,
    // so no client is left with a silently truncated answer.
    await d.inflight.waitIdle(hurry.aborted ? 300 : 1000);
  }
  d.inflight.off('change', reap);
  d.server.close();
  // What is still open now are event streams (/events): they see the last transition, then end.
  d.server.closeIdleConnections();

  const t1 = Date.now();
  // Each phase is logged as it starts, so that a platform cutting the shutdown short shows where.
  if (d.engineStopTimeoutMs !== undefined) {
    log.info({ timeout_s: d.engineStopTimeoutMs / 1000 }, hurry.aborted ? 'stopping vLLM: SIGKILL to its process group now (second signal)' : 'stopping vLLM: SIGTERM to its process group, SIGKILL after ENGINE_STOP_TIMEOUT_SECONDS');
  }
  const report = await d.lifecycle.stopEngine(hurry);
  d.server.closeAllConnections();
  let code = 0;
  if (report) {
    if (report.killed.length && hurry.aborted) log.warn({ killed: report.killed, ms: report.durationMs }, 'second signal: vLLM killed with SIGKILL without waiting');
    else if (report.killed.length) log.warn({ killed: report.killed, ms: report.durationMs }, 'vLLM processes did not stop in time: killed with SIGKILL');
    else log.info({ ms: report.durationMs }, 'vLLM stopped');
    if (report.survivors.length) {
      log.error({ survivors: report.survivors }, 'vLLM processes survived SIGKILL');
      code = 1;
    }
  } else {
    log.info('attach mode: the external vLLM is left running');
  }
  d.forwarder.close();
  log.info({ total_ms: Date.now() - t0, engine_ms: Date.now() - t1, exit_code: code }, 'shutdown complete');
  return code;
}
