// Supervision: starting vLLM (or finding the attached one), waiting until it is ready, watching it, and
// restarting it with back-off after a failure (docs/contract.md, Engine states).
import type { EngineCore } from './lifecycle.ts';
import type { EngineChild, ExitInfo, StopReport } from './process.ts';
import { RestartPolicy } from './restart-policy.ts';
import { delay } from './timing.ts';

const READY_POLL_MS = 500;

/** A start that failed for a reason a restart cannot change: the message for the operator, else undefined. */
function permanentFailure(proc: EngineChild): string | undefined {
  const e = proc.spawnError;
  if (e?.code === 'ENOENT') return `vLLM could not be started: no executable "${e.path ?? 'vllm'}" (install vLLM, set VLLM_BIN to its path, or try \`npm run demo\`, which uses the bundled simulator)`;
  if (e?.code === 'EACCES') return `vLLM could not be started: "${e.path ?? 'vllm'}" is not executable (check VLLM_BIN)`;
  if (e) return `vLLM could not be started: ${e.message}`;
  const line = proc.outputTail(20).find((l) => l.includes('Address already in use'));
  if (line) return `vLLM's port is taken (${line.trim().slice(-120)}): choose another VLLM_PORT, or stop what holds it`;
  return undefined;
}
const PROGRESS_LOG_MS = 15_000;
const ATTACH_MONITOR_MS = 5_000;
const HEALTH_CALL_MS = 3000;
const REFERENCE_CALL_MS = 60_000;
const SLEEP_FREED = /Sleep mode freed ([\d.]+) GiB memory, ([\d.]+) GiB memory is still in use/;

export class Supervisor {
  private proc: EngineChild | null = null;
  private readonly policy = new RestartPolicy();
  private restartTimer: NodeJS.Timeout | undefined;
  private monitorTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly core: EngineCore,
    /** Wakes the engine (WAKE_ON_START in attach mode). */
    private readonly wake: (reason: string) => Promise<unknown>,
  ) {}

  get child(): EngineChild | null {
    return this.proc;
  }

  private get log() {
    return this.core.deps.log;
  }

  start(): void {
    void this.boot('gateway start');
  }

  private async boot(reason: string): Promise<void> {
    if (this.core.stopping || !this.core.transition('starting', reason)) return;
    const { opts, spawnEngine } = this.core.deps;
    let proc: EngineChild | null = null;
    if (opts.mode === 'launch' && spawnEngine) {
      proc = spawnEngine();
      this.proc = proc;
      if (proc.pid > 0) this.log.info({ child_pid: proc.pid }, 'vLLM started; waiting for it to load the model');
      proc.onLine((line) => this.readLine(line));
      void proc.exited.then((info) => this.onExit(proc!, info));
    }
    if (!(await this.waitReady(proc))) return;
    await this.onUp();
  }

  private async waitReady(proc: EngineChild | null): Promise<boolean> {
    const { client, opts } = this.core.deps;
    const t0 = Date.now();
    const deadline = t0 + opts.startupTimeoutMs;
    let nextLog = t0 + PROGRESS_LOG_MS;
    let last = 'not contacted yet';
    for (;;) {
      if (this.core.stopping || this.core.state !== 'starting' || (proc && (!proc.running || proc !== this.proc))) return false;
      try {
        const status = await client.health(HEALTH_CALL_MS);
        if (status === 200) return this.core.state === 'starting' && !this.core.stopping;
        last = `GET /health answered ${status}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) {
        await this.fail(`vLLM was not ready after ${Math.round((Date.now() - t0) / 1000)} s (STARTUP_TIMEOUT_SECONDS)`, { last });
        return false;
      }
      if (Date.now() >= nextLog) {
        nextLog += PROGRESS_LOG_MS;
        this.log.info({ elapsed_s: Math.round((Date.now() - t0) / 1000), last, last_output: proc?.outputTail(1)[0] }, 'still waiting for vLLM to become ready');
      }
      await Promise.race([delay(READY_POLL_MS), proc?.exited]);
    }
  }

  private async onUp(): Promise<void> {
    const { client, opts } = this.core.deps;
    const facts = this.core.facts;
    facts.version = await client.version();
    facts.servedModel = (await client.models().catch(() => []))[0] ?? opts.model;
    facts.routes = await client.routes();
    if (this.core.stopping || this.core.state !== 'starting') return;
    const asleep = opts.mode === 'attach' && (await client.isSleeping().catch(() => false));
    // The wake check's reference is asked while the gate is still closed, so no other request shares the batch.
    facts.reference = undefined;
    if (!asleep && opts.wakeCheck !== 'off') {
      try {
        facts.reference = await client.probe(facts.servedModel, REFERENCE_CALL_MS);
        this.log.info({ answer: facts.reference.slice(0, 200) }, 'wake check: recorded the reference answer');
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'wake check: no reference answer; wakes will not be checked');
      }
      if (this.core.stopping || this.core.state !== 'starting') return;
    }
    this.policy.onReady(Date.now());
    if (asleep) {
      const level = await client.reportedSleepLevel();
      this.core.transition('sleeping', 'attached to a vLLM that is asleep', level);
      if (opts.wakeOnStart) this.wake('WAKE_ON_START').catch((e) => this.log.error({ err: (e as Error).message }, 'wake on start failed'));
    } else {
      this.core.transition('ready', `vLLM ${facts.version ?? '(version unknown)'} is serving ${facts.servedModel ?? 'its model'}`);
    }
    if (opts.mode === 'attach') this.monitorAttached();
  }

  /** vLLM's worker logs what a sleep freed (docs/vllm.md, Sleep mode): recorded, and a poor share warned about. */
  private readLine(line: string): void {
    const m = SLEEP_FREED.exec(line);
    if (!m) return;
    const freed = { freedGiB: Number(m[1]), inUseGiB: Number(m[2]), at: new Date().toISOString() };
    this.core.facts.sleepFreed = freed;
    this.core.emit('sleep-freed', freed);
    const share = freed.freedGiB / (freed.freedGiB + freed.inUseGiB || 1);
    const min = this.core.deps.opts.sleepMinFreedShare;
    if (share < min) {
      this.log.warn({ freed_gib: freed.freedGiB, in_use_gib: freed.inUseGiB, share: Math.round(share * 100) / 100, min }, `sleep freed only ${Math.round(share * 100)} % of the engine's GPU memory (SLEEP_MIN_FREED_SHARE ${min})`);
    }
  }

  /** Attach mode has no child to watch: poll the server's health instead. */
  private monitorAttached(): void {
    clearInterval(this.monitorTimer);
    let misses = 0;
    this.monitorTimer = setInterval(async () => {
      const s = this.core.state;
      if (this.core.stopping || s === 'starting' || s === 'failed') return;
      const ok = (await this.core.deps.client.health(HEALTH_CALL_MS).catch(() => 0)) === 200;
      misses = ok ? 0 : misses + 1;
      if (misses >= 2) {
        clearInterval(this.monitorTimer);
        await this.fail('the attached vLLM stopped answering /health', {});
      }
    }, ATTACH_MONITOR_MS);
    this.monitorTimer.unref();
  }

  private async onExit(proc: EngineChild, info: ExitInfo): Promise<void> {
    if (proc !== this.proc || this.core.stopping) return;
    // What no restart can mend stops the gateway at once, with what to do about it.
    const permanent = permanentFailure(proc);
    if (permanent) {
      this.core.emit('misconfigured', permanent);
      return;
    }
    // Any exit we did not ask for is a failure, whatever the code: vLLM may exit 0 after its engine died.
    const reason = this.core.state === 'starting' ? 'vLLM exited before it was ready' : 'vLLM exited unexpectedly';
    await this.fail(reason, { exit_code: info.code, signal: info.signal, output_tail: proc.outputTail(60).join('\n') });
  }

  /** The engine failed: clean up what is left of it, then restart after back-off, or give up (fatal). */
  async fail(reason: string, details: Record<string, unknown>): Promise<void> {
    if (this.core.stopping || this.core.state === 'failed') return;
    clearInterval(this.monitorTimer);
    this.core.transition('failed', reason);
    this.log.error(details, reason);
    // vLLM's EngineCore survives its API server (docs/vllm.md, Process tree): nothing of the old group may
    // hold the GPU when the next one starts.
    if (this.proc) {
      const report = await this.proc.kill();
      if (report.killed.length) this.log.warn({ killed: report.killed }, 'killed leftover vLLM processes');
      if (report.survivors.length) this.log.error({ survivors: report.survivors }, 'vLLM processes survived SIGKILL');
    }
    if (this.core.stopping) return;
    const launch = this.core.deps.opts.mode === 'launch';
    const wait = this.policy.onFailure(Date.now());
    if (wait === null && launch) {
      this.core.emit('fatal', `vLLM failed ${this.policy.recentFailures} times within 10 minutes`);
      return;
    }
    const ms = wait ?? 5000;
    this.log.info({ in_s: ms / 1000, recent_failures: this.policy.recentFailures }, launch ? 'restarting vLLM' : 'polling the attached vLLM again');
    this.restartTimer = setTimeout(() => {
      this.core.facts.restarts++;
      this.core.emit('restart');
      void this.boot(`restart after failure: ${reason}`);
    }, ms);
  }

  stopTimers(): void {
    clearTimeout(this.restartTimer);
    clearInterval(this.monitorTimer);
  }

  async stop(graceMs: number, skipGrace?: AbortSignal): Promise<StopReport | null> {
    return this.proc ? this.proc.stop(graceMs, skipGrace) : null;
  }

  killNow(): boolean {
    return !!this.proc?.killNow();
  }
}
