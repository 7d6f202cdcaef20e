import type { HttpBindings } from '@hono/node-server';
import type { Config } from '../config.ts';
import type { EngineClient } from '../engine/client.ts';
import type { Inflight } from '../engine/inflight.ts';
import type { EngineLifecycle } from '../engine/lifecycle.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { Forwarder } from '../proxy/forward.ts';
import type { RequestScope } from './scope.ts';

export interface AppDeps {
  config: Readonly<Config>;
  log: Logger;
  lifecycle: EngineLifecycle;
  inflight: Inflight;
  forwarder: Forwarder;
  client: EngineClient;
  metrics: Metrics;
}

export type Env = {
  Bindings: HttpBindings;
  Variables: { scope: RequestScope };
};
