import { CodedError } from '../shared/errors.js';

/**
 * An error that becomes an HTTP response: `{"error": {"code", "message"}}` with `statusCode`
 * (docs/protocol.md, section 3). Codes are snake_case and stable; clients branch on them.
 */
export class HttpError extends CodedError<string> {
  readonly statusCode: number;

  constructor(statusCode: number, code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.statusCode = statusCode;
  }
}

export const SNAKE_CASE_CODE = /^[a-z][a-z0-9_]*$/;
