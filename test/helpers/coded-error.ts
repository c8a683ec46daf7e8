import assert from 'node:assert/strict';
import { CodedError } from '../../src/shared/errors.js';

/** For `assert.rejects`/`assert.throws`: a CodedError with this code whose message matches. */
export function expectCoded(code: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof CodedError, `expected a CodedError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}
