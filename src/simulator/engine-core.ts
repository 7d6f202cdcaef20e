// The child process that plays vLLM's EngineCore_DP0. It lives in the API server's process group and,
// like the real one, does not notice when the API server is SIGKILLed: it stays, "holding the GPU"
// (docs/vllm.md, Process tree). With VLLM_SIM_GPU_LOCK_FILE set, a second engine that finds the lock
// held by a live process fails to load with CUDA OOM, as the next vLLM does when an orphan holds memory.
import fs from 'node:fs';
import { alive, claim, release } from './gpu-ledger.ts';
import { createVllmLog } from './log.ts';

interface EngineCoreConfig {
  model: string;
  version: string;
  loadMs: number;
  failLoad?: string;
  gpuLockFile?: string;
  gpuMemoryFile?: string;
  gpuMemoryUtilization: number;
  orphanTtlSeconds: number;
  shutdownTimeoutSeconds: number;
}

process.title = 'VLLM::EngineCore';
const log = createVllmLog('EngineCore_DP0');
const cfg = JSON.parse(process.env.VLLM_SIM_ENGINE_CONFIG ?? '{}') as EngineCoreConfig;
const hold = setInterval(() => {}, 1 << 30);


function releaseLock(): void {
  if (!cfg.gpuLockFile) return;
  try {
    if (fs.readFileSync(cfg.gpuLockFile, 'utf8').trim() === String(process.pid)) fs.unlinkSync(cfg.gpuLockFile);
  } catch {
    /* not ours or gone */
  }
}

function exit(code: number): void {
  releaseLock();
  if (cfg.gpuMemoryFile) release(cfg.gpuMemoryFile, process.pid);
  clearInterval(hold);
  process.exit(code);
}

function fail(rootCause: string): never {
  log('ERROR', 'core.py:718', 'EngineCore failed to start.');
  process.stderr.write('Traceback (most recent call last):\n  File "vllm/v1/engine/core.py", line 709, in run_engine_core\n');
  process.stderr.write(`${rootCause}\n`);
  exit(1);
  throw new Error('unreachable');
}

if (cfg.gpuLockFile) {
  let holder = 0;
  try {
    holder = Number(fs.readFileSync(cfg.gpuLockFile, 'utf8').trim());
  } catch {
    /* free */
  }
  if (holder && holder !== process.pid && alive(holder)) {
    fail(
      `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 44.39 GiB of which 0 bytes is free. Process ${holder} has 40.12 GiB memory in use.`,
    );
  }
  fs.writeFileSync(cfg.gpuLockFile, String(process.pid));
}

// A GPU shared with other engines: its share is claimed at load, or the load fails as vLLM's does.
if (cfg.gpuMemoryFile) {
  const c = claim(cfg.gpuMemoryFile, process.pid, cfg.gpuMemoryUtilization);
  if (!c.ok) {
    const total = 44.39;
    fail(
      `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate ${(cfg.gpuMemoryUtilization * total).toFixed(2)} GiB. GPU 0 has a total capacity of ${total} GiB of which ${(c.free * total).toFixed(2)} GiB is free.`,
    );
  }
}

log('INFO', 'core.py:93', `Initializing a V1 LLM engine (v${cfg.version}) with config: model='${cfg.model}', enable_sleep_mode=True`);
setTimeout(() => log('INFO', 'gpu_model_runner.py:2007', `Loading weights took ${(cfg.loadMs / 2000).toFixed(2)} seconds`), cfg.loadMs / 2);
setTimeout(() => {
  if (cfg.failLoad) fail(cfg.failLoad);
  log('INFO', 'gpu_model_runner.py:2780', 'Graph capturing finished in 1 secs, took 0.10 GiB');
  process.send?.({ type: 'ready' });
}, cfg.loadMs);

let stopping = false;
function stop(signal: string): void {
  if (stopping) return;
  stopping = true;
  log('INFO', 'core.py', `[shutdown] EngineCore: trigger received signal=${signal}`);
  // The API server drives the shutdown; if it is gone (or never answers) leave on our own.
  setTimeout(() => exit(0), (cfg.shutdownTimeoutSeconds + 2) * 1000).unref();
  if (!process.connected) exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('message', (m: { type?: string }) => {
  if (m?.type === 'shutdown') {
    log('INFO', 'core.py', '[shutdown] EngineCore: exiting busy loop');
    exit(0);
  }
});
process.on('disconnect', () => {
  // vLLM's EngineCore has no death check for the API server (docs/vllm.md, Process tree): it stays and keeps the GPU.
  if (stopping) exit(0);
  setTimeout(() => exit(0), cfg.orphanTtlSeconds * 1000).unref();
});
