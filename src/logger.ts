// pino to stdout: JSON lines by default; LOG_PRETTY=true uses pino-pretty where it is installed.
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level: string; pretty: boolean }): Logger {
  const base = { level: opts.level, base: { service: 'vllm-gateway' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (opts.pretty) {
    try {
      createRequire(import.meta.url).resolve('pino-pretty');
      return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'service' } } });
    } catch {
      /* not installed (production image): JSON it is */
    }
  }
  // One write(2) per event-loop turn, not one per line: lines collect in the buffer (written at once past
  // 8 KiB) and the end of the turn writes the rest, so no line waits for a later turn. Synchronous writes:
  // an asynchronous write's hand-off to the thread pool cost about 5 % of the CPU per relayed request
  // (profiled under load), a blocking write of one turn's lines far less. flush(), not flushSync(): the
  // latter fsyncs.
  const dest = pino.destination({ dest: 1, sync: true, minLength: 8192 });
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
