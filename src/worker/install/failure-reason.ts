import { UpdateError, type ReasonCode } from '../../protocol/reason-codes.js';
import { isNoSpace } from '../../shared/errors.js';
import { StateFileError } from './state.js';

/** The error and the errors it wraps (`cause`), outermost first; a cycle ends the walk. */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let current: unknown = err; current !== undefined && current !== null && !chain.includes(current); ) {
    chain.push(current);
    current = current instanceof Error ? current.cause : undefined;
  }
  return chain;
}

/**
 * The reason code a failed update attempt ends with (docs/protocol.md, section 5), whatever
 * step failed and however the error was wrapped:
 * - no space left anywhere on the path (download, staging, a pointer or state.json) is
 *   `disk_full`, even under an UpdateError that named the step;
 * - an UpdateError's own code otherwise;
 * - state.json unreadable or corrupt is `state_corrupt`;
 * - anything else unexpected on the worker's side is `install_failed` (the caller logs the cause).
 */
export function failureReasonOf(err: unknown): ReasonCode {
  const chain = causeChain(err);
  if (chain.some(isNoSpace)) return 'disk_full';
  if (err instanceof UpdateError) return err.code;
  if (chain.some((link) => link instanceof StateFileError)) return 'state_corrupt';
  return 'install_failed';
}
