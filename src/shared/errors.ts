/**
 * One error type with a stable string `code` (after sigstore-js's error.ts). The code is what
 * programs branch on, what reports carry and what metrics are labelled with; the message is for
 * people. `cause` keeps the underlying error for logs.
 */
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * `err instanceof CodedError` narrows to `CodedError<any>` (the class is generic); this guard
 * keeps the code a string for the type checker.
 */
export function isCodedError(err: unknown): err is CodedError<string> {
  return err instanceof CodedError;
}

/** A command-line or configuration mistake: the programs exit with code 2 for these. */
export class UsageError extends CodedError<'usage'> {
  constructor(message: string, options?: { cause?: unknown }) {
    super('usage', message, options);
  }
}

/** True when `err` is a Node system error with the given errno code (ENOENT, ENOSPC, ...). */
export function isErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** No room to write: a full disk (ENOSPC) or the user's quota (EDQUOT). Both are `disk_full`. */
export function isNoSpace(err: unknown): boolean {
  return isErrnoCode(err, 'ENOSPC') || isErrnoCode(err, 'EDQUOT');
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
