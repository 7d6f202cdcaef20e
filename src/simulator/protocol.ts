// Response and error shapes of vLLM's OpenAI server (docs/vllm.md, HTTP details). Pure builders.
import { randomUUID } from 'node:crypto';

export interface Usage {
  prompt_tokens: number;
  total_tokens: number;
  completion_tokens: number;
}

export const usage = (prompt: number, completion: number): Usage => ({
  prompt_tokens: prompt,
  total_tokens: prompt + completion,
  completion_tokens: completion,
});

export const randomId = (): string => randomUUID().replaceAll('-', '');
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** ≥ v0.10.1 nested body, `code` the integer status; legacy builds used a flat `{"object":"error",...}`. */
export function errorBody(status: number, message: string, type: string, legacy: boolean, param: string | null = null) {
  if (legacy) return { object: 'error', message, type, param, code: status };
  return { error: { message, type, param, code: status } };
}

export function modelList(names: string[], root: string, maxModelLen: number) {
  const created = nowSeconds();
  return {
    object: 'list',
    data: names.map((id) => ({
      id,
      object: 'model',
      created,
      owned_by: 'vllm',
      root,
      parent: null,
      max_model_len: maxModelLen,
      permission: [
        {
          id: `modelperm-${randomId()}`,
          object: 'model_permission',
          created,
          allow_create_engine: false,
          allow_sampling: true,
          allow_logprobs: true,
          allow_search_indices: false,
          allow_view: true,
          allow_fine_tuning: false,
          organization: '*',
          group: null,
          is_blocking: false,
        },
      ],
    })),
  };
}

export function chatCompletion(id: string, model: string, text: string, finish: string, stopReason: string | null, u: Usage) {
  return {
    id,
    object: 'chat.completion',
    created: nowSeconds(),
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text,
          refusal: null,
          annotations: null,
          audio: null,
          function_call: null,
          tool_calls: [],
          reasoning: null,
        },
        logprobs: null,
        finish_reason: finish,
        stop_reason: stopReason,
        token_ids: null,
      },
    ],
    service_tier: null,
    system_fingerprint: null,
    usage: { ...u, prompt_tokens_details: null },
    prompt_logprobs: null,
    prompt_token_ids: null,
    kv_transfer_params: null,
  };
}

export function textCompletion(id: string, model: string, text: string, finish: string, stopReason: string | null, u: Usage) {
  return {
    id,
    object: 'text_completion',
    created: nowSeconds(),
    model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish, stop_reason: stopReason, prompt_logprobs: null }],
    usage: u,
    kv_transfer_params: null,
  };
}

/** Streaming chunks are dumped with exclude_unset: only fields set explicitly appear. */
export function chatChunk(id: string, created: number, model: string, delta: Record<string, unknown>, finish: string | null, stopReason?: string | null) {
  const choice: Record<string, unknown> = { index: 0, delta, logprobs: null, finish_reason: finish };
  if (finish !== null) choice.stop_reason = stopReason ?? null;
  return { id, object: 'chat.completion.chunk', created, model, choices: [choice] };
}

export function textChunk(id: string, created: number, model: string, text: string, finish: string | null, stopReason?: string | null) {
  const choice: Record<string, unknown> = { index: 0, text, logprobs: null, finish_reason: finish };
  if (finish !== null) choice.stop_reason = stopReason ?? null;
  return { id, object: 'text_completion', created, model, choices: [choice] };
}

export function usageChunk(id: string, created: number, model: string, object: string, u: Usage) {
  return { id, object, created, model, choices: [], usage: u };
}

export const sse = (obj: unknown): string => `data: ${JSON.stringify(obj)}\n\n`;
export const SSE_DONE = 'data: [DONE]\n\n';
