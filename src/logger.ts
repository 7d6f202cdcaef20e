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
  // Asynchronous writes: under load lines are batched instead of one write(2) per request; pino flushes
  // synchronously when the process exits, so the last lines (the shutdown report) are not lost.
  return pino(base, pino.destination({ dest: 1, sync: false }));
}
