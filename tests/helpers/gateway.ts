// Starts the gateway as a real process (with the simulator as its real child, or attached to one).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import OpenAI from 'openai';
import { freePort, raw } from './net.ts';
import { waitFor } from './poll.ts';
import { killAllStarted, killQuietly, startProcess, type Proc } from './procs.ts';
import { FAST_SIM_ENV, ROOT, SIM_BIN } from './sim.ts';

export const GATEWAY_MAIN = path.join(ROOT, 'src/main.ts');
/** tsx by its absolute URL: a gateway started in another directory still finds it. */
const TSX = import.meta.resolve('tsx');

export interface Gateway {
  proc: Proc;
  port: number;
  vllmPort: number;
  url: string;
  simUrl: string;
  client(opts?: { apiKey?: string }): OpenAI;
  health(): Promise<{ status: number; body: any }>;
  backend(): Promise<any>;
  simStats(): Promise<any>;
  waitState(state: string, timeoutMs?: number): Promise<void>;
  /** Every process group this gateway started (its children), remembered for cleanup. */
  childGroups: Set<number>;
  kill(): void;
}

/** Pids whose parent chain leads to `root`, read from /proc. */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [pid, pp] of parent) if (pp === p) (out.push(pid), walk(pid));
  };
  walk(root);
  return out;
}

export function pgidOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

export function tempFile(name: string): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vllm-gw-test-')), name);
}

export async function startGateway(
  opts: { env?: Record<string, string>; waitReady?: boolean; attachTo?: string; nodeArgs?: string[]; cwd?: string } = {},
): Promise<Gateway> {
  const port = await freePort();
  const vllmPort = await freePort();
  const env: Record<string, string> = {
    ...FAST_SIM_ENV,
    PORT: String(port),
    HOST: '127.0.0.1',
    VLLM_PORT: String(vllmPort),
    VLLM_MODEL: 'sim/test-model',
    VLLM_BIN: SIM_BIN,
    LOG_LEVEL: 'info',
    WARMUP_ON_WAKE: 'true',
    ...(opts.attachTo ? { VLLM_URL: opts.attachTo } : {}),
    ...opts.env,
  };
  const proc = startProcess(process.execPath, ['--import', TSX, ...(opts.nodeArgs ?? []), GATEWAY_MAIN], env, opts.cwd ?? ROOT);
  const url = `http://127.0.0.1:${port}`;
  const childGroups = new Set<number>();
  const remember = () => {
    for (const pid of descendants(proc.pid)) {
      const g = pgidOf(pid);
      if (g && g !== proc.pid) childGroups.add(g);
    }
  };
  const gw: Gateway = {
    proc,
    port,
    vllmPort,
    url,
    simUrl: opts.attachTo ?? `http://127.0.0.1:${vllmPort}`,
    childGroups,
    client: (o = {}) => new OpenAI({ baseURL: `${url}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 0, timeout: 60_000 }),
    health: async () => {
      const r = await raw(`${url}/health`);
      return { status: r.status, body: JSON.parse(r.body) };
    },
    backend: async () => {
      remember();
      return JSON.parse((await raw(`${url}/backend`)).body);
    },
    simStats: async () => JSON.parse((await raw(`${gw.simUrl}/_sim/stats`)).body),
    waitState: async (state, timeoutMs = 20_000) => {
      await waitFor(`gateway state ${state}`, async () => {
        remember();
        return (await gw.health()).body.status === state;
      }, timeoutMs);
    },
    kill() {
      remember();
      proc.kill();
      for (const g of childGroups) killQuietly(-g, 'SIGKILL');
    },
  };
  await waitFor('gateway listening', async () => (await raw(`${url}/`)).status === 200, 20_000);
  remember();
  if (opts.waitReady !== false) await gw.waitState('ready');
  return gw;
}

/** A test file's gateway factory: every gateway it started (and its vLLM groups) is killed after the file. */
export function gatewayFactory(): (opts?: Parameters<typeof startGateway>[0]) => Promise<Gateway> {
  const started: Gateway[] = [];
  after(() => {
    for (const g of started) g.kill();
    killAllStarted();
  });
  return async (opts = {}) => {
    const g = await startGateway(opts);
    started.push(g);
    return g;
  };
}

/** Reads a stream for `n` chunks, then aborts it the way a client that goes away does. */
export async function abortAfterChunks(stream: AsyncIterable<unknown>, ac: AbortController, n: number): Promise<number> {
  let seen = 0;
  // The SDK ends the iteration quietly when its own signal aborts.
  for await (const _ of stream) {
    if (++seen === n) {
      ac.abort();
      break;
    }
  }
  return seen;
}
