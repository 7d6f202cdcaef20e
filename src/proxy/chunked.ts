// HTTP/1.1 chunked framing (RFC 9112 §7.1), scanned incrementally. The relay passes vLLM's chunked bytes
// to the client as they are, so all it needs from the framing is where each chunk ends and where the body
// ends; the payloads are only extracted when the body must be decoded (error bodies, HTTP/1.0 clients).

export class ChunkedFramingError extends Error {
  readonly code = 'UPSTREAM_BAD_CHUNKING';
}

const enum S {
  Size,
  /** Skipping the rest of a line (a chunk extension or a trailer field) up to its CR. */
  Line,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLf,
  EndLf,
  Done,
}

const MAX_SIZE_DIGITS = 12; // 2^48 bytes: no chunk vLLM sends comes near; more digits would lose precision
const MAX_LINE = 8192; // extensions and trailers, which uvicorn never sends

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

export class ChunkedScanner {
  private s = S.Size;
  private size = 0;
  private digits = 0;
  private line = 0;
  /** Where a skipped line goes once its CR is seen. */
  private afterLine: S.SizeLf | S.TrailerLf = S.SizeLf;
  private remaining = 0;

  /** The terminating chunk and its trailers have been seen: the body is complete. */
  get done(): boolean {
    return this.s === S.Done;
  }

  reset(): void {
    this.s = S.Size;
    this.size = 0;
    this.digits = 0;
    this.line = 0;
    this.remaining = 0;
  }

  private skipLine(then: S.SizeLf | S.TrailerLf): void {
    this.s = S.Line;
    this.line = 0;
    this.afterLine = then;
  }

  /**
   * Scans `buf` from `start` and returns the offset just past the last complete chunk in it (or past the
   * body's end, after which the scanner is done and stops reading). `onPayload`, when given, receives each
   * piece of chunk data as a view of `buf`. Throws ChunkedFramingError on bytes that are not chunked framing.
   */
  scan(buf: Buffer, start = 0, onPayload?: (data: Buffer) => void): number {
    let boundary = start;
    let i = start;
    const n = buf.length;
    while (i < n) {
      switch (this.s) {
        case S.Size: {
          const c = buf[i]!;
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) throw new ChunkedFramingError('chunk size too large');
            this.size = this.size * 16 + v;
            i++;
          } else if (this.digits === 0) {
            throw new ChunkedFramingError('chunk size expected');
          } else if (c === 13) {
            this.s = S.SizeLf;
            i++;
          } else if (c === 59 || c === 32 || c === 9) {
            this.skipLine(S.SizeLf); // chunk extensions (and the whitespace some servers put before them) are ignored
            i++;
          } else throw new ChunkedFramingError('bad character in chunk size');
          break;
        }
        case S.Line:
          if (buf[i] === 13) this.s = this.afterLine;
          else if (++this.line > MAX_LINE) throw new ChunkedFramingError('chunk extension or trailer line too long');
          i++;
          break;
        case S.SizeLf:
          if (buf[i] !== 10) throw new ChunkedFramingError('LF expected after chunk size');
          i++;
          if (this.size === 0) {
            this.s = S.TrailerStart;
          } else {
            this.remaining = this.size;
            this.s = S.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case S.Data: {
          const take = Math.min(this.remaining, n - i);
          if (onPayload) onPayload(buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.s = S.DataCr;
          break;
        }
        case S.DataCr:
          if (buf[i] !== 13) throw new ChunkedFramingError('CRLF expected after chunk data');
          this.s = S.DataLf;
          i++;
          break;
        case S.DataLf:
          if (buf[i] !== 10) throw new ChunkedFramingError('CRLF expected after chunk data');
          this.s = S.Size;
          boundary = ++i;
          break;
        case S.TrailerStart:
          if (buf[i] === 13) this.s = S.EndLf;
          else this.skipLine(S.TrailerLf);
          i++;
          break;
        case S.TrailerLf:
          if (buf[i] !== 10) throw new ChunkedFramingError('LF expected after trailer');
          this.s = S.TrailerStart;
          i++;
          break;
        case S.EndLf:
          if (buf[i] !== 10) throw new ChunkedFramingError('LF expected at the end of the body');
          this.s = S.Done;
          return i + 1;
        case S.Done:
          return i;
      }
    }
    return boundary;
  }
}

/** One chunk of chunked framing around `payload`, for what the gateway itself adds to a relayed stream. */
export function frameChunk(payload: string): string {
  return `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`;
}

export const LAST_CHUNK = '0\r\n\r\n';
