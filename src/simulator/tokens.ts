// A toy tokenizer and text generator: deterministic, so tests can assert on counts and text.
// One token = one whitespace-delimited word with its leading space (what BPE roughly does for English).

const WORDS = (
  'Sure here is a short answer from the simulated vLLM engine . It streams one token at a time , ' +
  'honours max_tokens and stop strings , and counts usage the way vLLM does . The quick brown fox ' +
  'jumps over the lazy dog while the GPU sleeps and wakes again in about a second .'
).split(' ');

// What a model produces when its weights were discarded (level-2 sleep) and never reloaded.
const GARBAGE = ['\u00bf', 'zq', '\u2587\u2587', 'xx#', '<unk>', '\u00e6\u00f8', '%%', '\u0416'];

export function tokenize(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

export function tokenId(piece: string): number {
  let h = 2166136261;
  for (let i = 0; i < piece.length; i++) {
    h ^= piece.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 151_000;
}

export interface ChatMessage {
  role: string;
  content: unknown;
}

/** Text of a message's content: a string, or the text parts of an array of content parts. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : ''))
      .join(' ');
  }
  return '';
}

/** Prompt tokens of a chat: each message costs its words plus 4 template tokens, plus 3 for the generation prompt. */
export function chatPromptTokens(messages: ChatMessage[]): number {
  let n = 3;
  for (const m of messages) n += 4 + tokenize(contentText(m.content)).length;
  return n;
}

export function seedOf(text: string): number {
  return tokenId(text);
}

/** The i-th generated piece for a given seed; garbage when the weights are not valid. */
export function pieceAt(seed: number, i: number, garbage: boolean): string {
  if (garbage) return ' ' + GARBAGE[(seed + i * 7) % GARBAGE.length];
  const w = WORDS[(seed + i) % WORDS.length] ?? '.';
  return i === 0 ? w : ' ' + w;
}
