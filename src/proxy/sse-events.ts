// Where Server-Sent Events end in a byte stream (an empty line ends an event), so that a stream cut short by
// vLLM can be ended on an event boundary: the error event the gateway adds then parses on its own instead of
// being glued to half an event. Pure.

const LF = 10;
const CR = 13;

/**
 * Just past the last empty line in `chunk` (`\n\n` or `\n\r\n`, which covers `\r\n\r\n`), or -1 when there
 * is none. `prev1` and `prev2` are the last two bytes before `chunk` (-1 when none): an empty line may start
 * in the previous chunk.
 */
export function lastEventEnd(chunk: Uint8Array, prev1: number, prev2: number): number {
  for (let i = chunk.length - 1; i >= 0; i--) {
    if (chunk[i] !== LF) continue;
    const b1 = i >= 1 ? chunk[i - 1]! : prev1;
    if (b1 === LF) return i + 1;
    if (b1 === CR && (i >= 2 ? chunk[i - 2]! : i === 1 ? prev1 : prev2) === LF) return i + 1;
  }
  return -1;
}

/**
 * Holds the bytes of an unfinished event, so that only whole events are let through. Past `limit` held
 * bytes it gives up and lets everything through (an event that large is passed on as it comes).
 */
export class EventBoundary {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private prev1 = -1;
  private prev2 = -1;
  private passAll = false;

  constructor(private readonly limit: number) {}

  /** The bytes that may go out now (whole events), or null when everything is held. */
  push(chunk: Buffer): Buffer | null {
    const n = chunk.length;
    if (n === 0) return null;
    const end = this.passAll ? n : lastEventEnd(chunk, this.prev1, this.prev2);
    this.prev2 = n >= 2 ? chunk[n - 2]! : this.prev1;
    this.prev1 = chunk[n - 1]!;
    if (end < 0) {
      this.held.push(chunk);
      this.heldBytes += n;
      if (this.heldBytes <= this.limit) return null;
      this.passAll = true;
      return this.take(chunk.subarray(0, 0), null);
    }
    return this.take(end === n ? chunk : chunk.subarray(0, end), end === n ? null : chunk.subarray(end));
  }

  /** What is still held (an unfinished last event), released as it is. */
  flush(): Buffer | null {
    return this.heldBytes ? this.take(Buffer.alloc(0), null) : null;
  }

  private take(out: Buffer, rest: Buffer | null): Buffer {
    if (this.heldBytes === 0 && rest === null) return out;
    let result = out;
    if (this.heldBytes) result = Buffer.concat([...this.held, out], this.heldBytes + out.length);
    this.held = rest ? [rest] : [];
    this.heldBytes = rest ? rest.length : 0;
    return result;
  }
}
