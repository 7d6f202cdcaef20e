// pino to stdout: JSON lines by default; LOG_PRETTY=true uses pino-pretty where it is installed.
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level: string; pretty: boolean }): Logger {
  const base = { level: opts.level, base: { service: 'vllm-gateway' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (opts.pretty) {
    try {
      createRequire(import.meta.url).resolve('pino-pretty');
      // One line per event, for people: vLLM's lines keep their own prefix, without the stream tag.
      return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'service,pid,hostname,stream', singleLine: true } } });
    } catch {
      /* not installed (production image): JSON it is */
    }
  }
  // One write(2) per event-loop turn, not one per line: lines collect in the buffer (written at once past
  // 8 KiB) and the end of the turn writes the rest, so no line waits for a later turn. Synchronous writes:
  // an asynchronous write's hand-off to the thread pool cost about 5 % of the CPU per relayed request
  // (profiled under load), a blocking write of one turn's lines far less. flush(), not flushSync(): the
  // latter fsyncs.
  //
  // Logging must never keep the gateway from stopping vLLM. A reader that went away (EPIPE) makes
  // sonic-boom throw from flushSync() since 5.0 (4.x retried forever, and the gateway never exited; hence
  // the override in package.json); a write to a stdout that stays full is retried for 2 s at most (20 ×
  // 100 ms), not forever, and tried again at the next turn's flush.
  const dest = pino.destination({ dest: 1, sync: true, minLength: 8192, maxWriteRetries: 20 });
  let failed = false;
  // After an EPIPE pino stops writing by itself; any other failure would be re-emitted with no listener
  // and crash the process. Either is said once on stderr, which may still be read.
  dest.on('error', (err: NodeJS.ErrnoException) => {
    if (failed) return;
    failed = true;
    try {
      // A synchronous write: a failing process.stderr would emit an error of its own, unhandled.
      writeSync(2, `vllm-gateway: writing the log to stdout failed (${err.code ?? err.message}); log lines may be lost\n`);
    } catch {
      /* stderr is gone too */
    }
  });
  // pino registers its exit flush for asynchronous destinations only: without this, lines logged in the
  // last turn (the shutdown report) would be lost on process.exit().
  process.on('exit', () => {
    try {
      dest.flushSync();
    } catch {
      /* stdout is gone: nothing left to save */
    }
  });
  let flushQueued = false;
  const flush = () => {
    flushQueued = false;
    dest.flush();
  };
  return pino(
    {
      ...base,
      hooks: {
        streamWrite(line) {
          if (!flushQueued) {
            flushQueued = true;
            setImmediate(flush);
          }
          return line;
        },
      },
    },
    dest,
  );
}
