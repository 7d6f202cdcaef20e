// Real processes for tests: each started as the leader of its own process group, so that cleanup can
// kill exactly what the test started (by pgid), never by name.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { waitFor } from './poll.ts';

export interface Proc {
  child: ChildProcess;
  pid: number;
  output(): string;
  waitOutput(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL the whole group this process leads (and anything of it left behind). */
  kill(): void;
}

const started = new Set<Proc>();

// If the test process itself is ended (a runner timeout, Ctrl-C), take its process groups with it.
process.once('exit', () => killAllStarted());
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killAllStarted();
    process.exit(130);
  });
}

export function startProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Proc {
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  if (process.env.TEST_VERBOSE) {
    child.stdout!.pipe(process.stderr);
    child.stderr!.pipe(process.stderr);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const pid = child.pid!;
  const p: Proc = {
    child,
    pid,
    output: () => out,
    waitOutput: (re, timeoutMs = 15_000) => waitFor(`output ${re}`, () => out.match(re), timeoutMs),
    exited,
    kill() {
      for (const member of groupMembers(pid)) killQuietly(member, 'SIGKILL');
      killQuietly(-pid, 'SIGKILL');
      started.delete(p);
    },
  };
  started.add(p);
  return p;
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/** Kills every process group a test started and has not cleaned up yet. */
export function killAllStarted(): void {
  for (const p of [...started]) p.kill();
}

/** Live (non-zombie) pids whose process group is `pgid`, read from /proc. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z' && Number(fields[2]) === pgid) out.push(Number(name));
    } catch {
      /* raced with exit */
    }
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '';
  }
}
