import type { Logger } from 'pino';
import { setTimeout } from 'node:timers/promises';
import { request } from 'undici';
import { errorMessage } from '../../shared/errors.js';

export interface WebhookOptions {
  url: string;
  logger: Logger;
  /** Delays before each retry; the default tries four times over about 30 s. */
  retryDelaysMs?: readonly number[];
  timeoutMs?: number;
  /** Aborted when the server stops: a delivery still retrying gives up at once. */
  signal?: AbortSignal;
}

const DEFAULT_RETRY_DELAYS_MS = [1000, 5000, 25_000];

/**
 * A JSON POST to the operator's webhook (a chat or paging bridge) when a rollout halts. It runs
 * beside the halt, never before it: the halt is recorded first, and a webhook that fails, hangs
 * or answers an error is retried a few times, logged, and given up on. It never throws.
 */
export async function postWebhook(options: WebhookOptions, body: Record<string, unknown>): Promise<boolean> {
  const delays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  const stopped = options.signal ?? new AbortController().signal;
  const target = new URL(options.url);
  let attempts = 0;
  for (let attempt = 0; attempt <= delays.length && !stopped.aborted; attempt += 1) {
    attempts += 1;
    try {
      const response = await request(options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.any([stopped, AbortSignal.timeout(options.timeoutMs ?? 5000)]),
      });
      await response.body.dump();
      if (response.statusCode >= 200 && response.statusCode < 300) {
        options.logger.info({ event: 'rollout_webhook_delivered', webhook: target.origin, status: response.statusCode, attempt: attempt + 1 }, 'webhook delivered');
        return true;
      }
      options.logger.warn({ event: 'rollout_webhook_failed', webhook: target.origin, status: response.statusCode, attempt: attempt + 1 }, 'webhook answered an error');
    } catch (err) {
      options.logger.warn({ event: 'rollout_webhook_failed', webhook: target.origin, err: errorMessage(err), attempt: attempt + 1 }, 'webhook not reached');
    }
    const delay = delays[attempt];
    if (delay !== undefined) await setTimeout(delay, undefined, { signal: stopped }).catch(() => undefined);
  }
  options.logger.error({ event: 'rollout_webhook_gave_up', webhook: target.origin, attempts, stopped: stopped.aborted }, 'gave up on the webhook; the halt stands');
  return false;
}
