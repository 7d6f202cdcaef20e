// Command line and environment of the simulator: `serve MODEL [vLLM flags]`, knobs from VLLM_SIM_* variables.
import { z } from 'zod';

export interface SimOptions {
  model: string;
  servedModelNames: string[];
  host: string;
  port: number;
  enableSleepMode: boolean;
  devMode: boolean;
  /** --disable-fastapi-docs: no /openapi.json, /docs, /redoc. */
  disableDocs: boolean;
  shutdownTimeoutSeconds: number;
  maxModelLen: number;
  apiKey: string | undefined;
  enableRequestIdHeaders: boolean;
  forceIncludeUsage: boolean;
  keepAliveSeconds: number;
  keepAliveOnEngineDeath: boolean;
  // knobs
  version: string;
  loadMs: number;
  failLoad: string | undefined;
  ttftMs: number;
  tokenMs: number;
  outputTokens: number;
  sleepMs: number;
  wakeMs: number;
  crashAfterRequests: number;
  sleepFailStatus: number;
  shutdownReject: 'abort' | '500' | '503';
  gpuLockFile: string | undefined;
  /** A GPU shared with other simulators: the ledger file, and this engine's share of it. */
  gpuMemoryFile: string | undefined;
  gpuMemoryUtilization: number;
  orphanTtlSeconds: number;
  legacyErrors: boolean;
  /** --kv-cache-dtype fp8…: a level-2 wake leaves the engine answering garbage, reload or not (vLLM #48310). */
  fp8KvCache: boolean;
  /** What a sleep frees and leaves in use, as vLLM's worker logs it. */
  sleepFreedGiB: number;
  sleepInUseGiB: number;
  /** [UNMERGED] PR #51488: a request while paused or asleep is rejected instead of parked. */
  rejectWhileAsleep: boolean;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const VALUE_FLAGS = new Set(['--host', '--port', '--shutdown-timeout', '--max-model-len', '--api-key', '--model', '--kv-cache-dtype', '--gpu-memory-utilization']);
const BOOL_FLAGS = new Set([
  '--enable-sleep-mode',
  '--enable-request-id-headers',
  '--disable-uvicorn-access-log',
  '--enable-force-include-usage',
  '--enable-prompt-tokens-details',
]);

const num = (min: number) => z.coerce.number().finite().min(min);

const knobs = z.object({
  VLLM_SIM_VERSION: z.string().regex(/^\d+\.\d+(\.\d+)?/).default('0.31.0'),
  VLLM_SIM_LOAD_SECONDS: num(0).default(3),
  VLLM_SIM_FAIL_LOAD: z.string().optional(),
  VLLM_SIM_TTFT_MS: num(0).default(40),
  VLLM_SIM_TOKEN_MS: num(0).default(25),
  VLLM_SIM_OUTPUT_TOKENS: num(1).default(16),
  VLLM_SIM_SLEEP_MS: num(0).default(300),
  VLLM_SIM_WAKE_MS: num(0).default(1000),
  VLLM_SIM_CRASH_AFTER_REQUESTS: num(0).default(0),
  VLLM_SIM_SLEEP_FAIL_STATUS: num(0).default(0),
  VLLM_SIM_SHUTDOWN_REJECT: z.enum(['abort', '500', '503']).default('abort'),
  VLLM_SIM_GPU_LOCK_FILE: z.string().optional(),
  VLLM_SIM_GPU_MEMORY_FILE: z.string().optional(),
  VLLM_SIM_ORPHAN_TTL_SECONDS: num(1).default(600),
  VLLM_SIM_LEGACY_ERRORS: z.enum(['0', '1']).default('0'),
  VLLM_SIM_SLEEP_FREED_GIB: num(0).default(1.12),
  VLLM_SIM_SLEEP_IN_USE_GIB: num(0).default(0.41),
  VLLM_SIM_REJECT_WHILE_ASLEEP: z.enum(['0', '1']).default('0'),
  VLLM_HTTP_TIMEOUT_KEEP_ALIVE: num(0).default(5),
  VLLM_KEEP_ALIVE_ON_ENGINE_DEATH: z.enum(['0', '1']).default('0'),
  VLLM_SERVER_DEV_MODE: z.enum(['0', '1']).default('0'),
  VLLM_API_KEY: z.string().optional(),
});

/** vLLM's --gpu-memory-utilization: a fraction of the GPU, 0.9 by default. */
function share(raw: string | undefined): number {
  if (raw === undefined) return 0.9;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new UsageError(`argument --gpu-memory-utilization: invalid value '${raw}' (0 < x <= 1)`);
  return n;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): SimOptions {
  const [cmd, ...rest] = argv;
  if (cmd !== 'serve') throw new UsageError(`usage: vllm-sim serve MODEL [--host H] [--port P] [--enable-sleep-mode] ... (got ${cmd ?? 'nothing'})`);
  const flags = new Map<string, string>();
  const bools = new Set<string>();
  const served: string[] = [];
  let model: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (!arg.startsWith('--')) {
      if (model === undefined) model = arg;
      continue; // a value of an unknown flag
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    if (name === '--served-model-name') {
      if (inline !== undefined) served.push(inline);
      while (rest[i + 1] !== undefined && !rest[i + 1]!.startsWith('--')) served.push(rest[++i]!);
    } else if (VALUE_FLAGS.has(name)) {
      const value = inline ?? rest[++i];
      if (value === undefined) throw new UsageError(`argument ${name}: expected one argument`);
      flags.set(name, value);
    } else if (BOOL_FLAGS.has(name)) {
      bools.add(name);
    } else if (inline === undefined && rest[i + 1] !== undefined && !rest[i + 1]!.startsWith('--')) {
      i++; // an unknown vLLM flag with its value, e.g. --gpu-memory-utilization 0.9
    }
  }
  model = flags.get('--model') ?? model;
  if (!model) throw new UsageError('the following arguments are required: model_tag');
  const k = knobs.safeParse(env);
  if (!k.success) {
    const issue = k.error.issues[0]!;
    throw new UsageError(`invalid ${String(issue.path[0])}: ${issue.message}`);
  }
  const e = k.data;
  const intFlag = (name: string, dflt: number): number => {
    const raw = flags.get(name);
    if (raw === undefined) return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`argument ${name}: invalid int value: '${raw}'`);
    return n;
  };
  return {
    model,
    servedModelNames: served.length ? served : [model],
    host: flags.get('--host') ?? '0.0.0.0',
    port: intFlag('--port', 8000),
    enableSleepMode: bools.has('--enable-sleep-mode'),
    devMode: e.VLLM_SERVER_DEV_MODE === '1',
    disableDocs: bools.has('--disable-fastapi-docs'),
    shutdownTimeoutSeconds: intFlag('--shutdown-timeout', 0),
    maxModelLen: intFlag('--max-model-len', 4096),
    apiKey: flags.get('--api-key') ?? e.VLLM_API_KEY,
    enableRequestIdHeaders: bools.has('--enable-request-id-headers'),
    forceIncludeUsage: bools.has('--enable-force-include-usage'),
    keepAliveSeconds: e.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
    keepAliveOnEngineDeath: e.VLLM_KEEP_ALIVE_ON_ENGINE_DEATH === '1',
    version: e.VLLM_SIM_VERSION,
    loadMs: e.VLLM_SIM_LOAD_SECONDS * 1000,
    failLoad: e.VLLM_SIM_FAIL_LOAD || undefined,
    ttftMs: e.VLLM_SIM_TTFT_MS,
    tokenMs: e.VLLM_SIM_TOKEN_MS,
    outputTokens: Math.floor(e.VLLM_SIM_OUTPUT_TOKENS),
    sleepMs: e.VLLM_SIM_SLEEP_MS,
    wakeMs: e.VLLM_SIM_WAKE_MS,
    crashAfterRequests: Math.floor(e.VLLM_SIM_CRASH_AFTER_REQUESTS),
    sleepFailStatus: e.VLLM_SIM_SLEEP_FAIL_STATUS,
    shutdownReject: e.VLLM_SIM_SHUTDOWN_REJECT,
    gpuLockFile: e.VLLM_SIM_GPU_LOCK_FILE || undefined,
    gpuMemoryFile: e.VLLM_SIM_GPU_MEMORY_FILE || undefined,
    gpuMemoryUtilization: share(flags.get('--gpu-memory-utilization')),
    orphanTtlSeconds: e.VLLM_SIM_ORPHAN_TTL_SECONDS,
    legacyErrors: e.VLLM_SIM_LEGACY_ERRORS === '1',
    fp8KvCache: flags.get('--kv-cache-dtype')?.startsWith('fp8') ?? false,
    sleepFreedGiB: e.VLLM_SIM_SLEEP_FREED_GIB,
    sleepInUseGiB: e.VLLM_SIM_SLEEP_IN_USE_GIB,
    rejectWhileAsleep: e.VLLM_SIM_REJECT_WHILE_ASLEEP === '1',
  };
}

export { versionAtLeast } from '../version.ts';
