// A shared GPU for the simulators of one run (VLLM_SIM_GPU_MEMORY_FILE): each engine claims its
// --gpu-memory-utilization share when it loads and when it wakes, and gives it back but for a small
// residue when it sleeps (CUDA graphs and the allocator stay: docs/vllm.md, Sleep mode). A claim that would
// take the GPU past 100 % fails the way vLLM does. Claims are keyed by the EngineCore's pid, so an
// orphaned EngineCore still holds its memory; dead holders are dropped.
import fs from 'node:fs';

/** What a sleeping engine keeps of its share. */
export const SLEEP_RESIDUE = 0.02;

export interface Ledger {
  /** EngineCore pid → share of the GPU it holds now (0–1). */
  claims: Record<string, number>;
  /** The most the GPU ever held at once, and how many engines held a full share then: for tests. */
  peak: number;
  peakAwake: number;
}

const LOCK_WAIT_MS = 5000;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Whether `pid` still holds GPU memory. A zombie has already released it (the driver frees a context when
 * the process exits, not when it is reaped), and an orphan is reaped by PID 1 only when PID 1 gets round
 * to it: seconds later under some container inits.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return !fs.existsSync('/proc/self');
  }
}

/** Runs `change` on the ledger under a lock file (several simulator processes share it), then saves it. */
export function updateLedger<T>(file: string, change: (l: Ledger) => T): T {
  const lock = `${file}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx'));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (Date.now() > deadline) fs.rmSync(lock, { force: true }); // a holder that died mid-update
      Atomics.wait(sleeper, 0, 0, 5);
    }
  }
  try {
    let ledger: Ledger = { claims: {}, peak: 0, peakAwake: 0 };
    try {
      ledger = { ...ledger, ...(JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Ledger>) };
    } catch {
      /* new, or unreadable: start empty */
    }
    for (const pid of Object.keys(ledger.claims)) if (!alive(Number(pid))) delete ledger.claims[pid];
    const result = change(ledger);
    const shares = Object.values(ledger.claims);
    const held = shares.reduce((a, b) => a + b, 0);
    ledger.peak = Math.max(ledger.peak, held);
    ledger.peakAwake = Math.max(ledger.peakAwake, shares.filter((s) => s > SLEEP_RESIDUE * 1.5).length);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(ledger));
    fs.renameSync(tmp, file);
    return result;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/**
 * Sets `pid`'s claim to `share` if the GPU has room: true, or false (nothing changed) when the others'
 * claims plus `share` would pass 100 %.
 */
export function claim(file: string, pid: number, share: number): { ok: boolean; free: number } {
  return updateLedger(file, (l) => {
    const others = Object.entries(l.claims).reduce((sum, [p, s]) => (p === String(pid) ? sum : sum + s), 0);
    const free = Math.max(0, 1 - others);
    if (share > free + 1e-9) return { ok: false, free };
    l.claims[String(pid)] = share;
    return { ok: true, free };
  });
}

export function release(file: string, pid: number): void {
  updateLedger(file, (l) => void delete l.claims[String(pid)]);
}
