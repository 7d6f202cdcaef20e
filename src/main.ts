// Composition root: the only module that reads process.env, installs signal handlers or exits.
import fs from 'node:fs';
import { requestListener } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { vllmArgv, vllmEnv } from './engine/args.ts';
import { EngineClient } from './engine/client.ts';
import { IdleSleeper } from './engine/idle.ts';
import { Inflight } from './engine/inflight.ts';
import { EngineLifecycle, type OpEvent } from './engine/lifecycle.ts';
import { EngineProcess } from './engine/process.ts';
import { ENGINE_STATES } from './engine/states.ts';
import { createLogger } from './logger.ts';
import { createMetrics } from './metrics.ts';
import { Forwarder } from './proxy/forward.ts';
import { createServer, limitsFor, listen } from './server.ts';
import { shutdown } from './shutdown.ts';

/** `.env` in the working directory, when there is one; variables already in the environment win. */
function loadDotEnv(): void {
  let isFile: boolean;
  try {
    isFile = fs.statSync('.env').isFile();
  } catch {
    return; // none
  }
  try {
    if (!isFile) throw new Error('it is not a file');
    process.loadEnvFile('.env');
  } catch (e) {
    process.stderr.write(`vllm-gateway: cannot read .env: ${(e as Error).message}\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  loadDotEnv();
  let config;
  try {
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`vllm-gateway: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger({ level: config.logLevel, pretty: config.logPretty });
  if (!config.apiKeys.length) log.warn('API_KEYS is not set: /v1/* and /inference are open to anyone who can reach this port');
  if (!config.adminToken && !config.apiKeys.length) log.warn('neither ADMIN_TOKEN nor API_KEYS is set: /sleep, /wake and /events are open');

  const inflight = new Inflight();
  const client = new EngineClient({ baseUrl: config.vllmUrl, apiKey: config.vllmApiKey });
  const vllmLog = log.child({ component: 'vllm' });
  const lifecycle = new EngineLifecycle({
    opts: config,
    client,
    inflight,
    log: log.child({ component: 'engine' }),
    spawnEngine:
      config.mode === 'launch'
        ? () => {
            const argv = vllmArgv(config.model!, config.vllmPort, config.vllmArgs);
            log.info({ bin: config.vllmBin, argv }, 'starting vLLM');
            return new EngineProcess(config.vllmBin, argv, vllmEnv(process.env), vllmLog);
          }
        : undefined,
  });
  const metrics = createMetrics({ states: ENGINE_STATES, state: () => lifecycle.state, inFlight: () => inflight.total });
  lifecycle.on('sleep', (e: OpEvent) => {
    metrics.sleeps.inc({ level: String(e.level), outcome: e.outcome });
    if (e.outcome === 'ok' || e.outcome === 'aborted') metrics.sleepDuration.observe({ level: String(e.level) }, e.durationMs / 1000);
  });
  lifecycle.on('wake', (e: OpEvent) => {
    metrics.wakes.inc({ level: String(e.level), outcome: e.outcome });
    if (e.outcome === 'ok') metrics.wakeDuration.observe({ level: String(e.level) }, e.durationMs / 1000);
  });
  lifecycle.on('restart', () => metrics.restarts.inc());
  lifecycle.on('wake-check', (ok: boolean) => {
    if (!ok) metrics.wakeCheckFailures.inc();
  });
  lifecycle.on('sleep-freed', (f: { freedGiB: number; inUseGiB: number }) => {
    metrics.sleepFreed.set(f.freedGiB * 2 ** 30);
    metrics.sleepInUse.set(f.inUseGiB * 2 ** 30);
  });

  const forwarder = new Forwarder({ baseUrl: config.vllmUrl, vllmApiKey: config.vllmApiKey, upstreamTimeoutMs: config.upstreamTimeoutMs, clientStallMs: config.clientStallMs });
  const server = createServer(requestListener({ config, log, lifecycle, inflight, forwarder, client, metrics }), limitsFor(config.clientTimeoutMs));
  const idle = new IdleSleeper(lifecycle, inflight, config.idleSleepMs, config.sleepLevel, log.child({ component: 'idle' }));

  let stopping: Promise<number> | undefined;
  const hurry = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: skipping the remaining waits');
      hurry.abort();
      return;
    }
    log.info({ signal }, 'shutting down');
    stopping = shutdown(
      { server, lifecycle, inflight, forwarder, idle, metrics, log, drainTimeoutMs: config.drainTimeoutMs, ...(config.mode === 'launch' ? { engineStopTimeoutMs: config.engineStopTimeoutMs } : {}) },
      signal,
      hurry.signal,
    );
    stopping.then(
      (code) => process.exit(code),
      (e) => {
        log.fatal({ err: (e as Error).stack }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The terminal closing (a workstation run): Node's default would end the gateway at once, and vLLM, in a
  // session of its own, would not get the hang-up and would keep the GPU.
  process.on('SIGHUP', onSignal);

  // A bug that escapes every handler must not leave vLLM holding the GPU (it runs in its own process group,
  // so nothing else takes it down outside a container): log it, stop the engine the usual way within its
  // stop timeout, exit 1 so that the platform restarts the gateway. A second error on the way exits at once.
  let crashed = false;
  const onCrash = (err: unknown, kind: string) => {
    log.fatal({ err: err instanceof Error ? err.stack : String(err), kind }, 'unexpected error: stopping vLLM and exiting');
    if (crashed) process.exit(1);
    crashed = true;
    lifecycle.beginDrain('crash'); // vLLM's exit is expected from now on: no restart
    server.close();
    server.closeAllConnections();
    setTimeout(() => process.exit(1), config.engineStopTimeoutMs + 2000);
    lifecycle.stopEngine(hurry.signal).finally(() => process.exit(1));
  };
  process.on('uncaughtException', (err) => onCrash(err, 'uncaughtException'));
  process.on('unhandledRejection', (reason) => onCrash(reason, 'unhandledRejection'));
  // Whatever way the process ends (process.exit anywhere, the crash deadline above), the group goes with it.
  process.on('exit', () => {
    if (!lifecycle.killEngineNow()) return;
    log.error('vLLM was still running at exit: its process group was killed');
    log.flush(); // the logger's own exit flush has already run
  });

  lifecycle.on('misconfigured', async (reason: string) => {
    log.fatal({ reason }, reason);
    process.stderr.write(`vllm-gateway: ${reason}\n`);
    lifecycle.beginDrain(reason);
    server.close();
    server.closeAllConnections();
    await lifecycle.stopEngine(AbortSignal.abort());
    process.exit(2);
  });
  lifecycle.on('fatal', async (reason: string) => {
    log.fatal({ reason }, 'giving up: exiting so that the platform restarts the gateway');
    lifecycle.beginDrain(reason);
    server.close();
    server.closeAllConnections();
    await lifecycle.stopEngine(AbortSignal.abort());
    process.exit(1);
  });

  let address;
  try {
    address = await listen(server, config.port, config.host);
  } catch (e) {
    log.fatal({ err: (e as Error).message, port: config.port, host: config.host }, 'cannot listen');
    process.exit(1);
  }
  log.info({ host: address.address, port: address.port, mode: config.mode, vllm: config.vllmUrl, node: process.version }, `vllm-gateway listening on http://${config.host}:${address.port}`);
  lifecycle.start();
  idle.start();
}

void main();
