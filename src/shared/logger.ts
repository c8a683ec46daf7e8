import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that may hold a secret. pino replaces them before a line is written, so a token or a
 * key never reaches a log file, whichever module logs the object.
 */
export const REDACTED_PATHS = [
  'authorization',
  'token',
  'password',
  'secret',
  'private_key',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'request.headers.authorization',
  '*.authorization',
  '*.token',
  '*.password',
  '*.private_key',
];

/**
 * Asynchronous, buffered writing to stdout, for a process that logs a line per request: lines are
 * gathered until `minLengthBytes` are waiting and written in one system call, off the request
 * path. A timer writes whatever is waiting every `flushIntervalMs`, so a quiet process's lines
 * still appear promptly. Call `flushLogger` before exiting; on an exit without it, pino writes
 * the buffer synchronously from its exit hook.
 */
export interface BufferedLogOptions {
  minLengthBytes?: number;
  flushIntervalMs?: number;
}

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Where lines go; default stdout, written synchronously unless `buffered` is given. */
  destination?: DestinationStream;
  /** Write stdout asynchronously in batches (ignored when `destination` is given). */
  buffered?: BufferedLogOptions;
}

export const DEFAULT_LOG_BUFFER_BYTES = 4096;
export const DEFAULT_LOG_FLUSH_INTERVAL_MS = 250;

/** JSON lines, one object a line, with the secret-bearing fields redacted. */
export function createLogger(options: LoggerOptions): Logger {
  const buffered = options.destination ? undefined : options.buffered;
  const stdout = buffered
    ? pino.destination({ fd: 1, sync: false, minLength: buffered.minLengthBytes ?? DEFAULT_LOG_BUFFER_BYTES })
    : undefined;
  const logger = pino(
    {
      name: options.name,
      level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? stdout ?? pino.destination({ fd: 1, sync: true }),
  );
  if (stdout && buffered) {
    // The stream's own flush without a callback writes without an fsync (pino's flush always
    // asks for one). Unref'd: the timer never keeps an otherwise finished process alive.
    setInterval(() => {
      try {
        stdout.flush();
      } catch {
        // The stream was destroyed (stdout closed): there is nowhere left to write to.
      }
    }, buffered.flushIntervalMs ?? DEFAULT_LOG_FLUSH_INTERVAL_MS).unref();
  }
  return logger;
}

/**
 * Resolves once every line logged so far has been handed to the operating system (and, for a
 * buffered destination, the write in flight has finished). A process calls it before it exits.
 */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      // A stream that cannot flush (a pipe that refuses fsync, a closed fd) still resolves:
      // flushing is best effort at exit and must never keep the process from stopping.
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
