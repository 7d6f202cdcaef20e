// Every environment variable of the gateway (docs/contract.md, Configuration), parsed once. A bad value
// names its variable.
import { split as shellSplit } from 'shlex';
import { z } from 'zod';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

const bool = (dflt: boolean) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return dflt;
      const s = v.trim().toLowerCase();
      if (TRUE.has(s)) return true;
      if (FALSE.has(s)) return false;
      ctx.addIssue({ code: 'custom', message: `expected true or false, got "${v}"` });
      return z.NEVER;
    });

const int = (dflt: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return dflt;
      const s = v.trim();
      const n = Number(s);
      if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n)) {
        ctx.addIssue({ code: 'custom', message: `expected a whole number, got "${v}"` });
        return z.NEVER;
      }
      if (n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `expected a number from ${min} to ${max}, got ${n}` });
        return z.NEVER;
      }
      return n;
    });

const seconds = (dflt: number, max = 86_400) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return dflt;
      const n = Number(v.trim());
      if (!Number.isFinite(n) || n < 0 || n > max) {
        ctx.addIssue({ code: 'custom', message: `expected seconds from 0 to ${max}, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v && v.trim() ? v.trim() : undefined));

// A bearer token the gateway sends to vLLM: RFC 6750's token characters are visible ASCII, and anything
// else either ends the header line or reaches vLLM as bytes other than those configured.
const bearerToken = optionalString.refine((v) => v === undefined || /^[\x21-\x7e]+$/.test(v), 'must be visible ASCII (no spaces, control characters or non-ASCII)');

const schema = z.object({
  PORT: int(7860, 0, 65535),
  HOST: z.string().optional().transform((v) => (v && v.trim() ? v.trim() : '0.0.0.0')),
  VLLM_MODEL: optionalString,
  VLLM_BIN: z.string().optional().transform((v) => (v && v.trim() ? v.trim() : 'vllm')),
  VLLM_ARGS: z
    .string()
    .optional()
    .transform((v, ctx) => {
      try {
        return v ? shellSplit(v) : [];
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: `cannot split into arguments: ${(e as Error).message}` });
        return z.NEVER;
      }
    }),
  VLLM_PORT: int(8000, 1, 65535),
  VLLM_URL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return undefined;
      let u: URL;
      try {
        u = new URL(v.trim());
      } catch {
        ctx.addIssue({ code: 'custom', message: `not a URL: "${v}"` });
        return z.NEVER;
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        ctx.addIssue({ code: 'custom', message: `expected an http:// or https:// URL, got "${v}"` });
        return z.NEVER;
      }
      return u.origin + u.pathname.replace(/\/+$/, '');
    }),
  VLLM_API_KEY: bearerToken,
  API_KEYS: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const keys = (v ?? '').split(',').map((k) => k.trim()).filter(Boolean);
      // A value with no key in it would leave /v1 open while the operator believes it is locked.
      if (v !== undefined && v.trim() !== '' && keys.length === 0) ctx.addIssue({ code: 'custom', message: `no key in "${v}" (comma-separated keys; leave it unset for no keys)` });
      return keys;
    }),
  ADMIN_TOKEN: optionalString,
  SLEEP_LEVEL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = (v ?? '').trim() || '1';
      if (s !== '1' && s !== '2') {
        ctx.addIssue({ code: 'custom', message: `expected 1 or 2, got "${v}"` });
        return z.NEVER;
      }
      return Number(s) as 1 | 2;
    }),
  IDLE_SLEEP_SECONDS: seconds(0),
  AUTO_WAKE: bool(true),
  WAKE_ON_START: bool(false),
  WARMUP_ON_WAKE: bool(true),
  WAKE_CHECK: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = (v ?? '').trim().toLowerCase() || 'restart';
      if (s !== 'restart' && s !== 'warn' && s !== 'off') {
        ctx.addIssue({ code: 'custom', message: `expected restart, warn or off, got "${v}"` });
        return z.NEVER;
      }
      return s as 'restart' | 'warn' | 'off';
    }),
  SLEEP_MIN_FREED_SHARE: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return 0.5;
      const n = Number(v.trim());
      if (!Number.isFinite(n) || n < 0 || n > 1) {
        ctx.addIssue({ code: 'custom', message: `expected a share from 0 to 1, got "${v}"` });
        return z.NEVER;
      }
      return n;
    }),
  SLEEP_DRAIN_TIMEOUT_SECONDS: seconds(30),
  QUEUE_TIMEOUT_SECONDS: seconds(30),
  DRAIN_TIMEOUT_SECONDS: seconds(20),
  ENGINE_STOP_TIMEOUT_SECONDS: seconds(8),
  STARTUP_TIMEOUT_SECONDS: seconds(1800, 7 * 86_400),
  MAX_BODY_BYTES: int(33_554_432, 1, 2 ** 31),
  MAX_CONCURRENT_REQUESTS: int(0, 0, 1_000_000),
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = (v ?? '').trim().toLowerCase() || 'info';
      if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(s)) {
        ctx.addIssue({ code: 'custom', message: `expected one of fatal, error, warn, info, debug, trace, silent, got "${v}"` });
        return z.NEVER;
      }
      return s;
    }),
  LOG_PRETTY: bool(false),
  CLIENT_TIMEOUT_SECONDS: seconds(120, 3600),
  UPSTREAM_TIMEOUT_SECONDS: seconds(3600),
  CLIENT_STALL_TIMEOUT_SECONDS: seconds(60, 86_400),
  ALLOW_FP8_KV_SLEEP_LEVEL_2: bool(false),
});

export type Env = z.output<typeof schema>;

export interface Config {
  port: number;
  host: string;
  mode: 'launch' | 'attach';
  model: string | undefined;
  vllmBin: string;
  vllmArgs: string[];
  vllmPort: number;
  /** Base URL of vLLM: the child on loopback, or VLLM_URL in attach mode. */
  vllmUrl: string;
  vllmApiKey: string | undefined;
  apiKeys: string[];
  adminToken: string | undefined;
  sleepLevel: 1 | 2;
  idleSleepMs: number;
  autoWake: boolean;
  wakeOnStart: boolean;
  warmupOnWake: boolean;
  /** After a wake, compare a greedy answer with the one recorded at first ready. */
  wakeCheck: 'restart' | 'warn' | 'off';
  /** Warn when a sleep freed less than this share of what the engine held (vLLM logs both). */
  sleepMinFreedShare: number;
  sleepDrainTimeoutMs: number;
  queueTimeoutMs: number;
  drainTimeoutMs: number;
  engineStopTimeoutMs: number;
  startupTimeoutMs: number;
  maxBodyBytes: number;
  maxConcurrentRequests: number;
  logLevel: string;
  logPretty: boolean;
  /** A client must send its whole request (headers and body) within this; a trickler cannot hold a slot. */
  clientTimeoutMs: number;
  /** Longest silence from vLLM within a request; 0 = none. */
  upstreamTimeoutMs: number;
  /** How long a client may read nothing while its stream waits (vLLM's stream is paused meanwhile); 0 = forever. */
  clientStallMs: number;
  /** vLLM runs with an FP8 KV cache: a level-2 sleep is refused unless allowed. */
  fp8KvCache: boolean;
  allowFp8KvLevel2: boolean;
}

/** The value of `--flag N` or `--flag=N` in vLLM's arguments. */
function argValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i]!.startsWith(`${flag}=`)) return args[i]!.slice(flag.length + 1);
  }
  return undefined;
}

/** Settings that are each valid but wrong together. */
function checkCombinations(e: Env): void {
  if (!e.VLLM_URL && e.VLLM_PORT === e.PORT) throw new ConfigError(`invalid VLLM_PORT: ${e.VLLM_PORT} is the gateway's own PORT; give vLLM another port`);
  // vLLM drains for --shutdown-timeout, then waits at least 5 s for its children: a shorter stop timeout
  // SIGKILLs it in the middle of its own drain (docs/vllm.md, Signals and shutdown).
  const drain = argValue(e.VLLM_ARGS, '--shutdown-timeout');
  if (drain !== undefined) {
    const need = (Number(drain) || 0) + 5;
    if (e.ENGINE_STOP_TIMEOUT_SECONDS < need) {
      throw new ConfigError(`invalid ENGINE_STOP_TIMEOUT_SECONDS: ${e.ENGINE_STOP_TIMEOUT_SECONDS} s is shorter than vLLM's --shutdown-timeout ${drain} plus the 5 s it waits for its children; set it to at least ${need}`);
    }
  }
  // Level 2 with an FP8 KV cache answers garbage after a wake (docs/vllm.md, Sleep mode).
  const kv = argValue(e.VLLM_ARGS, '--kv-cache-dtype');
  if (e.SLEEP_LEVEL === 2 && kv?.startsWith('fp8') && !e.ALLOW_FP8_KV_SLEEP_LEVEL_2) {
    throw new ConfigError(`invalid SLEEP_LEVEL: level 2 with --kv-cache-dtype ${kv} serves garbage after a wake in vLLM (#48310); use level 1, or set ALLOW_FP8_KV_SLEEP_LEVEL_2=true to take the risk`);
  }
}

/** Parses the environment; throws ConfigError with one line naming the variable. */
export function loadConfig(env: Record<string, string | undefined>): Readonly<Config> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`invalid ${String(issue.path[0])}: ${issue.message}`);
  }
  const e = parsed.data;
  if (!e.VLLM_URL && !e.VLLM_MODEL) throw new ConfigError('invalid VLLM_MODEL: required (the model to serve) unless VLLM_URL is set');
  checkCombinations(e);
  const ms = (s: number) => Math.round(s * 1000);
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    mode: e.VLLM_URL ? 'attach' : 'launch',
    model: e.VLLM_MODEL,
    vllmBin: e.VLLM_BIN,
    vllmArgs: e.VLLM_ARGS,
    vllmPort: e.VLLM_PORT,
    vllmUrl: e.VLLM_URL ?? `http://127.0.0.1:${e.VLLM_PORT}`,
    vllmApiKey: e.VLLM_API_KEY,
    apiKeys: e.API_KEYS,
    adminToken: e.ADMIN_TOKEN,
    sleepLevel: e.SLEEP_LEVEL,
    idleSleepMs: ms(e.IDLE_SLEEP_SECONDS),
    autoWake: e.AUTO_WAKE,
    wakeOnStart: e.WAKE_ON_START,
    warmupOnWake: e.WARMUP_ON_WAKE,
    wakeCheck: e.WAKE_CHECK,
    sleepMinFreedShare: e.SLEEP_MIN_FREED_SHARE,
    sleepDrainTimeoutMs: ms(e.SLEEP_DRAIN_TIMEOUT_SECONDS),
    queueTimeoutMs: ms(e.QUEUE_TIMEOUT_SECONDS),
    drainTimeoutMs: ms(e.DRAIN_TIMEOUT_SECONDS),
    engineStopTimeoutMs: ms(e.ENGINE_STOP_TIMEOUT_SECONDS),
    startupTimeoutMs: ms(e.STARTUP_TIMEOUT_SECONDS),
    maxBodyBytes: e.MAX_BODY_BYTES,
    maxConcurrentRequests: e.MAX_CONCURRENT_REQUESTS,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
    clientTimeoutMs: ms(e.CLIENT_TIMEOUT_SECONDS),
    upstreamTimeoutMs: ms(e.UPSTREAM_TIMEOUT_SECONDS),
    clientStallMs: ms(e.CLIENT_STALL_TIMEOUT_SECONDS),
    fp8KvCache: argValue(e.VLLM_ARGS, '--kv-cache-dtype')?.startsWith('fp8') ?? false,
    allowFp8KvLevel2: e.ALLOW_FP8_KV_SLEEP_LEVEL_2,
  } satisfies Config);
}
