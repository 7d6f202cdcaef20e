// One request's scope, for every route and both entry points (the /v1 fast path and Hono): its id on the
// response, `Connection: close` while draining, and one access-log line plus metrics when it ends.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isStopping } from '../engine/states.ts';
import { requestRecorder, routeLabel } from '../metrics.ts';
import { requestIdOf } from '../proxy/headers.ts';
import type { RelayResult } from '../proxy/forward.ts';
import type { AppDeps } from './types.ts';

export interface RequestScope {
  readonly id: string;
  /** The canonical path (what routing saw). */
  readonly path: string;
  /** Filled in by the route, for the access log. */
  model?: string;
  relay?: RelayResult;
}

export type OpenScope = (req: IncomingMessage, res: ServerResponse, path: string) => RequestScope;

export function scopeOpener(d: AppDeps): OpenScope {
  const record = requestRecorder(d.metrics);
  return function openScope(req, res, path) {
    const t0 = performance.now();
    // Bytes are read off the socket counter at the end: no per-chunk work on the relay.
    const sock = res.socket;
    const sent0 = sock?.bytesWritten ?? 0;
    const scope: RequestScope = { id: requestIdOf(req.headers['x-request-id']), path };
    res.setHeader('x-request-id', scope.id);
    if (isStopping(d.lifecycle.state)) res.setHeader('connection', 'close');
    res.on('close', () => { // emitted once: `on` spares `once`'s wrapper
      const ms = performance.now() - t0;
      const route = routeLabel(path);
      const relay = scope.relay;
      const clientGone = !res.writableFinished;
      const status = clientGone && !res.headersSent ? 499 : res.statusCode;
      const method = req.method ?? 'GET';
      record.done(route, method, status, ms / 1000);
      if (relay?.ttfbMs != null) record.ttfb(route, relay.ttfbMs / 1000);
      if (relay?.error === 'client_stalled') d.metrics.clientStalls.inc();
      else if (relay?.error && relay.error !== 'client_gone') d.metrics.upstreamErrors.inc({ kind: relay.error });
      const bytes = sock ? sock.bytesWritten - sent0 : undefined;
      if (relay && bytes) record.relayed(route, bytes);
      d.log.info(
        {
          request_id: scope.id,
          method,
          path,
          status,
          duration_ms: Math.round(ms * 10) / 10,
          ttfb_ms: relay?.ttfbMs == null ? undefined : Math.round(relay.ttfbMs * 10) / 10,
          streamed: relay?.streamed,
          model: scope.model,
          bytes,
          client_gone: clientGone || undefined,
          upstream_error: relay?.error,
        },
        'request',
      );
    });
    return scope;
  };
}
