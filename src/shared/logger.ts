import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths that may hold a secret. They are replaced (redactSecrets, below) before a line is
 * written, so a token or a key never reaches a log file, whichever module logs the object.
 */
export const REDACTED_PATHS = [
  'authorization',
  'token',
  'password',
  'secret',
  'private_key',
  // A worker's credential and an enrollment token, as the enroll and claim bodies and answers name them.
  'credential',
  'enrollment_token',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'request.headers.authorization',
  '*.authorization',
  '*.token',
  '*.password',
  '*.private_key',
  '*.credential',
  '*.enrollment_token',
];

export const REDACTION_CENSOR = '[redacted]';

/**
 * REDACTED_PATHS, compiled once: names replaced at the top level, names replaced one level down
 * under any key (`*.name`), and longer exact paths. pino's own `redact` option does the same but
 * clones the object and walks every wildcard on every line, which cost more than writing the
 * line itself on the server's per-request log; this copies only an object that holds a secret.
 */
const topLevelNames = new Set(REDACTED_PATHS.filter((path) => !path.includes('.')));
const anyChildNames = new Set(REDACTED_PATHS.filter((path) => path.startsWith('*.')).map((path) => path.slice(2)));
const exactPaths = REDACTED_PATHS.filter((path) => path.includes('.') && !path.startsWith('*.')).map((path) => path.split('.'));

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** `object` with the value at `path` censored, copying only the objects along the path. */
function censorPath(object: Record<string, unknown>, path: readonly string[]): Record<string, unknown> {
  const [head, ...rest] = path;
  if (head === undefined || !Object.hasOwn(object, head)) return object;
  const value = object[head];
  if (rest.length === 0) return value === undefined ? object : { ...object, [head]: REDACTION_CENSOR };
  if (!isPlainObject(value)) return object;
  const replaced = censorPath(value, rest);
  return replaced === value ? object : { ...object, [head]: replaced };
}

/**
 * A log object with every secret-bearing field (REDACTED_PATHS) replaced by `[redacted]`. The
 * object given is never modified; it is returned as is when it holds no such field.
 */
export function redactSecrets(object: Record<string, unknown>): Record<string, unknown> {
  let result = object;
  for (const key of Object.keys(object)) {
    const value = object[key];
    if (value === undefined) continue;
    if (topLevelNames.has(key)) {
      if (result === object) result = { ...object };
      result[key] = REDACTION_CENSOR;
      continue;
    }
    if (!isPlainObject(value)) continue;
    let child = value;
    for (const name of anyChildNames) {
      if (Object.hasOwn(child, name) && child[name] !== undefined) {
        if (child === value) child = { ...value };
        child[name] = REDACTION_CENSOR;
      }
    }
    if (child !== value) {
      if (result === object) result = { ...object };
      result[key] = child;
    }
  }
  for (const path of exactPaths) result = censorPath(result, path);
  return result;
}

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
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), bindings: redactSecrets, log: redactSecrets },
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
