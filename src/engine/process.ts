// The vLLM child process: spawned as the leader of its own process group, its output re-logged line by
// line, stopped as a group (SIGTERM, then SIGKILL) so that no EngineCore outlives it (docs/vllm.md, Process tree).
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import readline from 'node:readline';
import type { Logger } from '../logger.ts';
import { groupExists, groupMembers, signalGroup, waitGroupGone, type GroupMember } from './process-group.ts';

const TAIL_LINES = 80;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopReport {
  /** Processes still alive after SIGTERM and the grace period, killed with SIGKILL. */
  killed: GroupMember[];
  /** Processes that survived even SIGKILL (should never happen). */
  survivors: GroupMember[];
  durationMs: number;
}

/** The vLLM child as the lifecycle sees it (EngineProcess; tests give it a fake). */
export interface EngineChild {
  readonly pid: number;
  readonly running: boolean;
  /** Why the executable could not be started at all (ENOENT, EACCES), if so. */
  readonly spawnError: NodeJS.ErrnoException | undefined;
  readonly exited: Promise<ExitInfo>;
  outputTail(n?: number): string[];
  /** Every line vLLM prints, as it prints it. */
  onLine(cb: (line: string) => void): void;
  stop(graceMs: number, skipGrace?: AbortSignal): Promise<StopReport>;
  kill(): Promise<StopReport>;
  killNow(): boolean;
}

export class EngineProcess extends EventEmitter implements EngineChild {
  readonly child: ChildProcess;
  readonly pid: number;
  private readonly tail: string[] = [];
  private exitInfo: ExitInfo | undefined;
  spawnError: NodeJS.ErrnoException | undefined;
  readonly exited: Promise<ExitInfo>;

  constructor(bin: string, argv: string[], env: Record<string, string>, private readonly log: Logger) {
    super();
    this.child = spawn(bin, argv, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
        this.emit('exit', this.exitInfo);
      });
      // spawn failures (ENOENT, EACCES) come as 'error' without 'exit'
      this.child.once('error', (err: NodeJS.ErrnoException) => {
        this.spawnError = err;
        this.remember(`spawn error: ${err.message}`);
        if (!this.exitInfo) {
          this.exitInfo = { code: 127, signal: null };
          resolve(this.exitInfo);
          this.emit('exit', this.exitInfo);
        }
      });
    });
    this.pid = this.child.pid ?? -1;
    this.pipeLines(this.child.stdout!, 'stdout');
    this.pipeLines(this.child.stderr!, 'stderr');
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The last lines vLLM printed: its root cause comes before a ~40-line traceback (docs/vllm.md, Startup and readiness). */
  outputTail(n = 60): string[] {
    return this.tail.slice(-n);
  }

  onLine(cb: (line: string) => void): void {
    this.on('line', cb);
  }

  private remember(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  private pipeLines(stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): void {
    const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (line) => {
      this.remember(line);
      this.emit('line', line);
      // vLLM lists every route at start (one line each): detail for debugging, not news.
      const level = / ERROR |Traceback|Error:/.test(line) ? 'error' : / WARNING /.test(line) ? 'warn' : /\] Route: /.test(line) ? 'debug' : 'info';
      this.log[level]({ stream: name }, line);
    });
  }

  /** SIGTERM the group, wait up to `graceMs` for every member, then SIGKILL what is left and verify. */
  async stop(graceMs: number, skipGrace?: AbortSignal): Promise<StopReport> {
    const t0 = Date.now();
    if (this.pid <= 0) return { killed: [], survivors: [], durationMs: 0 };
    let gone = !groupExists(this.pid);
    if (!gone && !skipGrace?.aborted) {
      signalGroup(this.pid, 'SIGTERM');
      gone = await waitGroupGone(this.pid, graceMs, skipGrace);
    }
    return this.finish(t0, gone);
  }

  /**
   * SIGKILL the group now, synchronously: the last resort when the gateway itself is going down without a
   * shutdown (a bug it did not catch), so that no EngineCore outlives it holding the GPU.
   */
  killNow(): boolean {
    return this.pid > 0 && groupExists(this.pid) && signalGroup(this.pid, 'SIGKILL');
  }

  /** SIGKILL whatever is left of the group at once (an orphaned EngineCore before a restart). */
  async kill(): Promise<StopReport> {
    return this.finish(Date.now(), !groupExists(this.pid));
  }

  private async finish(t0: number, gone: boolean): Promise<StopReport> {
    let killed: GroupMember[] = [];
    if (!gone) {
      killed = groupMembers(this.pid);
      signalGroup(this.pid, 'SIGKILL');
      await waitGroupGone(this.pid, 5000);
    }
    const survivors = groupMembers(this.pid);
    if (this.running) await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))]);
    return { killed, survivors, durationMs: Date.now() - t0 };
  }
}
