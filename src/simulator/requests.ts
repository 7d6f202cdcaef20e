// Request bodies the simulator accepts, validated the way vLLM's pydantic models do (400, not 422).
import { z } from 'zod';

const stop = z.union([z.string(), z.array(z.string())]).nullish();
const common = {
  model: z.string().nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).nullish(),
  top_p: z.number().nullish(),
  n: z.number().int().min(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).nullish(),
  stop,
  ignore_eos: z.boolean().nullish(),
  min_tokens: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
};

export const chatRequest = z.looseObject({
  ...common,
  messages: z.array(z.looseObject({ role: z.string(), content: z.unknown() })).min(1),
});

export const completionRequest = z.looseObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1)]),
});

export const tokenizeRequest = z.union([
  z.looseObject({ model: z.string().nullish(), prompt: z.string(), add_special_tokens: z.boolean().nullish() }),
  z.looseObject({ model: z.string().nullish(), messages: z.array(z.looseObject({ role: z.string(), content: z.unknown() })) }),
]);

export const detokenizeRequest = z.looseObject({ model: z.string().nullish(), tokens: z.array(z.number().int()) });

export const rpcRequest = z.looseObject({
  method: z.string().optional(),
  args: z.array(z.unknown()).optional(),
  kwargs: z.record(z.string(), z.unknown()).optional(),
  timeout: z.number().nullish(),
});

/** pydantic-like text: `1 validation error for ChatCompletionRequest\nmessages\n  Field required`. */
export function validationMessage(model: string, err: z.ZodError): string {
  const n = err.issues.length;
  const lines = err.issues.map((i) => `${i.path.join('.') || '(body)'}\n  ${i.message}`);
  return `${n} validation error${n === 1 ? '' : 's'} for ${model}\n${lines.join('\n')}`;
}
