// `vllm-sim serve MODEL ...`: a stand-in for `vllm serve` that behaves as docs/vllm.md describes.
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { SimEngine } from './engine.ts';
import { createVllmLog } from './log.ts';
import { createSimMetrics } from './metrics.ts';
import { parseOptions, UsageError, versionAtLeast, type SimOptions } from './options.ts';
import { createSimServer } from './server.ts';

const log = createVllmLog('APIServer');

function portInUse(host: string, port: number): Promise<boolean> {
  // vLLM binds its socket before loading the engine, so a taken port fails at once (docs/vllm.md, Startup and readiness).
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'EADDRINUSE'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(false)));
  });
}

function spawnEngineCore(opts: SimOptions): ChildProcess {
  const script = fileURLToPath(new URL('./engine-core.ts', import.meta.url));
  // Same process group as the API server (no setsid), as vLLM's multiprocessing spawn does (docs/vllm.md, Process tree).
  return fork(script, [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      VLLM_SIM_ENGINE_CONFIG: JSON.stringify({
        model: opts.model,
        version: opts.version,
        loadMs: opts.loadMs,
        failLoad: opts.failLoad,
        gpuLockFile: opts.gpuLockFile,
        gpuMemoryFile: opts.gpuMemoryFile,
        gpuMemoryUtilization: opts.gpuMemoryUtilization,
        orphanTtlSeconds: opts.orphanTtlSeconds,
        shutdownTimeoutSeconds: opts.shutdownTimeoutSeconds,
      }),
    },
  });
}

function initFailed(): never {
  process.stderr.write(
    [
      'Traceback (most recent call last):',
      '  File "vllm/entrypoints/openai/api_server.py", line 1908, in run_server_worker',
      '  File "vllm/v1/engine/utils.py", line 1091, in wait_for_engine_startup',
      'RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

async function main(): Promise<void> {
  let opts: SimOptions;
  try {
    opts = parseOptions(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`vllm serve: error: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  log('INFO', 'api_server.py:1839', `vLLM API server version ${opts.version}`);
  log('INFO', 'utils.py:253', `non-default args: {'model_tag': '${opts.model}', 'host': '${opts.host}', 'port': ${opts.port}, 'enable_sleep_mode': ${opts.enableSleepMode ? 'True' : 'False'}}`);
  if (opts.devMode) log('WARNING', '__init__.py:37', 'SECURITY WARNING: Development endpoints are enabled! This should NOT be used in production!');
  if (await portInUse(opts.host, opts.port)) {
    log('ERROR', 'api_server.py:1790', `OSError: [Errno 98] Address already in use (${opts.host}:${opts.port})`);
    process.exit(1);
  }

  const child = spawnEngineCore(opts);
  let phase: 'loading' | 'serving' | 'stopping' = 'loading';
  const onLoadSignal = () => {
    // setup_server installs a handler that raises KeyboardInterrupt("terminated") during model load (docs/vllm.md, Signals and shutdown).
    process.stderr.write('Traceback (most recent call last):\n  File "vllm/entrypoints/openai/api_server.py", line 1921, in run_server\nKeyboardInterrupt: terminated\n');
    child.kill('SIGTERM');
    process.exit(1);
  };
  process.once('SIGTERM', onLoadSignal);
  process.once('SIGINT', onLoadSignal);

  const ready = await new Promise<boolean>((resolve) => {
    child.once('message', (m: { type?: string }) => resolve(m?.type === 'ready'));
    child.once('exit', () => resolve(false));
  });
  if (!ready) initFailed();
  process.off('SIGTERM', onLoadSignal);
  process.off('SIGINT', onLoadSignal);

  const engine = new SimEngine(
    {
      ttftMs: opts.ttftMs,
      tokenMs: opts.tokenMs,
      outputTokens: opts.outputTokens,
      sleepMs: opts.sleepMs,
      wakeMs: opts.wakeMs,
      crashAfterRequests: opts.crashAfterRequests,
      queueOnSleep: versionAtLeast(opts.version, '0.17.0'),
      pausedUntilFullyAwake: versionAtLeast(opts.version, '0.31.0'),
      fp8KvCache: opts.fp8KvCache,
      sleepFreedGiB: opts.sleepFreedGiB,
      sleepInUseGiB: opts.sleepInUseGiB,
    },
    log,
    (reason) => {
      log('ERROR', 'gpu_model_runner.py:2311', reason);
      child.kill('SIGKILL');
    },
  );
  const metrics = createSimMetrics(engine, opts.servedModelNames[0]!, opts.version);
  const { server, routeLines } = createSimServer({
    opts,
    engine,
    log,
    metrics,
    enginePid: () => child.pid,
    killEngine: () => child.kill('SIGKILL'),
  });

  // MPClientEngineMonitor: an EngineCore that exits outside shutdown means engine death (docs/vllm.md, Engine death).
  child.once('exit', () => {
    if (phase === 'stopping') return;
    log('ERROR', 'core_client.py:564', 'Engine core proc EngineCore_DP0 died unexpectedly, shutting down client.');
    engine.markDead();
    if (opts.keepAliveOnEngineDeath) return;
    // The launcher's watchdog polls every 5 s and then stops the server.
    setTimeout(() => {
      log('ERROR', 'launcher.py:146', 'Engine is dead and the server is shutting down. Exiting.');
      server.close();
      server.closeAllConnections();
      process.exit(0);
    }, 5000);
  });

  await new Promise<void>((resolve) => server.listen(opts.port, opts.host, resolve));
  log('INFO', 'api_server.py:1971', `Starting vLLM API server 0 on http://${opts.host}:${opts.port}`);
  log('INFO', 'launcher.py:37', 'Available routes are:');
  for (const line of routeLines) log('INFO', 'launcher.py:45', line);
  process.stdout.write(`INFO:     Started server process [${process.pid}]\nINFO:     Waiting for application startup.\nINFO:     Application startup complete.\n`);
  phase = 'serving';

  const shutdown = async (signal: string) => {
    if (phase === 'stopping') return; // further signals are ignored (v0.18+)
    phase = 'stopping';
    const t = opts.shutdownTimeoutSeconds;
    log('INFO', 'launcher.py:100', `[shutdown] API server: shutdown triggered (${signal})`);
    log('INFO', 'launcher.py:116', `[shutdown] API server: stopping engine client mode=${t === 0 ? 'abort' : 'drain'} timeout=${t}s`);
    await engine.shutdown(t);
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      if (child.connected) child.send({ type: 'shutdown' });
      const killer = setTimeout(() => child.kill('SIGKILL'), Math.max(t, 5) * 1000);
      await gone;
      clearTimeout(killer);
    }
    log('INFO', 'launcher.py:124', '[shutdown] API server: engine client stopped');
    log('INFO', 'launcher.py:126', '[shutdown] API server: signalling HTTP server shutdown');
    process.stdout.write('INFO:     Shutting down\nINFO:     Finished server process [' + process.pid + ']\n');
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

void main();
