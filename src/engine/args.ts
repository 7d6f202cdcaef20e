// The vLLM command line and environment the gateway launches it with (docs/contract.md, Configuration). Pure.

/** Variables the child must not see: the gateway's own secrets. */
const GATEWAY_SECRETS = ['API_KEYS', 'ADMIN_TOKEN'] as const;

export function vllmArgv(model: string, port: number, extra: readonly string[]): string[] {
  return ['serve', model, '--host', '127.0.0.1', '--port', String(port), '--enable-sleep-mode', ...extra];
}

export function vllmEnv(parent: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parent)) if (v !== undefined) env[k] = v;
  for (const k of GATEWAY_SECRETS) delete env[k];
  env.VLLM_SERVER_DEV_MODE = '1';
  return env;
}
