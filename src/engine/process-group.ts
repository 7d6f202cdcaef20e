// A process group seen from outside: who is in it (from /proc), and killing it whole.
import fs from 'node:fs';

export interface GroupMember {
  pid: number;
  name: string;
}

/** Live members of process group `pgid` (zombies excluded). Empty where /proc is missing: see groupExists. */
export function groupMembers(pgid: number): GroupMember[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const out: GroupMember[] = [];
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      if (fields[0] === 'Z' || Number(fields[2]) !== pgid) continue;
      let title = stat.slice(stat.indexOf('(') + 1, close);
      try {
        title = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 120) || title;
      } catch {
        /* keep comm */
      }
      out.push({ pid: Number(name), name: title });
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** True while any process of the group exists (portable: kill with signal 0). */
export function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // kill(2) also counts zombies; /proc tells them apart where it exists.
  return fs.existsSync('/proc/self') ? groupMembers(pgid).length > 0 : true;
}

export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Resolves true once the group is empty, false at the deadline. */
export async function waitGroupGone(pgid: number, timeoutMs: number, signal?: AbortSignal, pollMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (groupExists(pgid)) {
    if (Date.now() >= deadline || signal?.aborted) return false;
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return true;
}
