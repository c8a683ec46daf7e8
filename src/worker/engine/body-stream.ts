import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

/** The first value of a response header, or undefined when the response has none. */
export function headerValue(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Stop reading a response; undici reports the abort as an 'error' event, which is expected here. */
export function discardBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/**
 * Feed a response body's chunks to `onChunk` in order, pausing the body while a promise
 * `onChunk` returned is pending (back-pressure). Resolves after the last chunk was taken; rejects
 * with the body's error or with what `onChunk` threw, after which no chunk reaches it.
 * 'data' events rather than `for await`: an async iterator costs a promise and a microtask per
 * 64 KiB read; receiving 512 MiB took 0.41-0.48 s of CPU this way against 0.59-0.78 s.
 */
export function pumpBody(body: Readable, onChunk: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let pending: Promise<void> | undefined;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onData = (chunk: Buffer): void => {
      if (settled) return;
      try {
        pending = onChunk(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      if (pending) {
        body.pause();
        pending.then(() => {
          pending = undefined;
          if (!settled) body.resume();
        }, fail);
      }
    };
    body.on('data', onData);
    body.once('error', fail);
    body.once('end', () => {
      void Promise.resolve(pending).then(() => {
        if (settled) return;
        settled = true;
        resolve();
      }, fail);
    });
    // Destroyed without an error and before its end: nothing more will come.
    body.once('close', () => {
      if (!body.readableEnded) fail(new Error('the response body closed before its end'));
    });
  });
}
